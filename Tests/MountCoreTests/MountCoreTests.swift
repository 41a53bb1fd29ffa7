import FUSE
import Foundation
import Glibc
import Testing
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRTesting
@testable import TSRMount

/// The mount's rules, exercised on `MountCore` with no kernel: writes and their commit, renames
/// over open files, which close commits, passthrough admission, lazy reads and interrupts, and
/// the change log. The real-mount suites (IntegrationTests, ScenarioTests) check the same
/// through /dev/fuse.
@Suite struct MountCoreTests {
    /// A file written through a folder view is shown as being written, becomes its content's
    /// alias at close(2) (flush), and only then.
    @Test func aWriteIsShownWhileWrittenAndNamedAtClose() throws {
        try TempDirectory.with { dir in
            let mount = try CoreHarness(home: dir.path + "/home")
            let loras = try mount.inode("loras")
            let created = try mount.core.create(parent: loras, name: "new.safetensors")
            let handle = created.options.handle
            #expect(created.options.directIO, "writes go around the page cache")
            let bytes = testBytes(100_000)
            let written = try bytes.withUnsafeBytes { try mount.core.write(handle, bytes: $0, offset: 0, lockOwner: 7) }
            #expect(written == bytes.count)
            #expect(try mount.core.getxattr(created.entry.attributes.inode, name: "user.tsr.state") == Array("writing".utf8))
            #expect(try mount.library.registry.alias(folder: "loras", path: "new.safetensors") == nil, "nothing is named before close")
            #expect(try mount.core.getattr(created.entry.attributes.inode, handle: nil).attributes.size == Int64(bytes.count), "the size follows the write")

            let items = try mount.core.flush(handle, lockOwner: 7)
            let alias = try #require(try mount.library.registry.alias(folder: "loras", path: "new.safetensors"))
            #expect(alias.sha256 == (try SHA256Hasher.digest(bytes)))
            #expect(items.contains(.entry(loras, "new.safetensors")), "the kernel's entry is dropped so the next open finds the committed file")
            #expect(mount.core.release(created.entry.attributes.inode, handle: handle, backingId: 0).isEmpty, "nothing more to commit at release")
            #expect(mount.library.store.contains(alias.sha256))
        }
    }

    /// A close by a process that did not write (a child that inherited the descriptor) does not
    /// commit the half its parent has written; the writer's close does.
    @Test func onlyTheWritersCloseCommits() throws {
        try TempDirectory.with { dir in
            let mount = try CoreHarness(home: dir.path + "/home")
            let created = try mount.core.create(parent: try mount.inode("loras"), name: "half.bin")
            let handle = created.options.handle
            _ = try Array("first half".utf8).withUnsafeBytes { try mount.core.write(handle, bytes: $0, offset: 0, lockOwner: 1) }
            _ = try mount.core.flush(handle, lockOwner: 2)
            #expect(try mount.library.registry.alias(folder: "loras", path: "half.bin") == nil, "another owner's close commits nothing")
            _ = try mount.core.flush(handle, lockOwner: 1)
            let alias = try #require(try mount.library.registry.alias(folder: "loras", path: "half.bin"))
            #expect(alias.sha256 == (try SHA256Hasher.digest(Array("first half".utf8))))
            _ = mount.core.release(created.entry.attributes.inode, handle: handle, backingId: 0)
        }
    }

    /// Renaming a file over a name another process has open: that reader keeps reading the old
    /// content, and the name leads to the new one under another inode (§7).
    @Test func aRenameOverAnOpenFileLeavesItsReaderTheOldContent() throws {
        try TempDirectory.with { dir in
            var settings = MountSettings()
            settings.passthrough = false
            let mount = try CoreHarness(home: dir.path + "/home", settings: settings)
            let (old, new) = (testBytes(5000, seed: 1), testBytes(7000, seed: 2))
            try mount.add("target.safetensors", old)
            try mount.add("incoming.safetensors", new)
            let loras = try mount.inode("loras")
            let target = try mount.inode("loras/target.safetensors")
            let reader = try mount.core.open(target, flags: O_RDONLY)
            #expect(reader.keepCache, "blob content never changes under a handle")

            try mount.core.rename(parent: loras, name: "incoming.safetensors", newParent: loras, newName: "target.safetensors", flags: 0)
            #expect(try mount.read(reader.handle, 5000) == old, "the open file still reads the old content")
            let renamed = try #require(try mount.core.lookup(parent: loras, name: "target.safetensors"))
            #expect(renamed.inode != target && renamed.file?.size == 7000)
            #expect(try mount.core.lookup(parent: loras, name: "incoming.safetensors") == nil)
            let fresh = try mount.core.open(renamed.inode, flags: O_RDONLY)
            #expect(try mount.read(fresh.handle, 7000) == new)
            #expect(throws: Errno.fileExists) {
                try mount.core.rename(parent: loras, name: "target.safetensors", newParent: loras, newName: "target.safetensors", flags: RenameFlags.noReplace)
            }
        }
    }

    /// Passthrough admission mirrors the kernel's per-inode rules: every open of a complete blob
    /// shares one backing file, a write waits for them and is refused (ETXTBSY) while they stay,
    /// and the backing file is given back with the last of them.
    @Test func passthroughOpensShareOneBackingFileAndKeepWritersOut() throws {
        try TempDirectory.with { dir in
            var settings = MountSettings()
            settings.passthroughMinimumSize = 1
            let mount = try CoreHarness(home: dir.path + "/home", settings: settings)
            try mount.add("model.safetensors", testBytes(4096))
            let inode = try mount.inode("loras/model.safetensors")
            #expect(mount.core.readPath == .passthrough)
            let first = try mount.core.open(inode, flags: O_RDONLY)
            let second = try mount.core.open(inode, flags: O_RDONLY)
            let backing = try #require(first.backingId)
            #expect(second.backingId == backing && mount.kernel.backings == [backing], "one backing file per inode")

            #expect(throws: Errno.textFileBusy) { try mount.core.open(inode, flags: O_WRONLY) }
            _ = mount.core.release(inode, handle: first.handle, backingId: backing)
            #expect(mount.kernel.backings == [backing], "kept while an open uses it")
            _ = mount.core.release(inode, handle: second.handle, backingId: backing)
            #expect(mount.kernel.backings.isEmpty, "given back with the last passthrough open")

            let writer = try mount.core.open(inode, flags: O_WRONLY)
            #expect(writer.backingId == nil && writer.directIO)
            let reader = try mount.core.open(inode, flags: O_RDONLY)
            #expect(reader.backingId == nil, "no backing file while the inode is open for writing")
            _ = mount.core.release(inode, handle: reader.handle, backingId: 0)
            _ = mount.core.release(inode, handle: writer.handle, backingId: 0)
        }
    }

    /// Names another process adds are found by the next poll, which drops the negative entry the
    /// kernel cached for them.
    @Test func thePollDropsNegativeEntriesOfNamesAddedElsewhere() throws {
        try TempDirectory.with { dir in
            let mount = try CoreHarness(home: dir.path + "/home")
            let loras = try mount.inode("loras")
            #expect(try mount.core.lookup(parent: loras, name: "later.safetensors") == nil)
            let other = try Library(home: dir.path + "/home")
            try other.record(try other.store.put(testBytes(10)), folder: "loras", path: "later.safetensors")
            mount.core.poll()
            #expect(mount.kernel.sent.contains(.entry(loras, "later.safetensors")), "\(mount.kernel.sent)")
            #expect(mount.kernel.sent.contains(.inode(loras, data: false)), "the folder's attributes are refreshed")
            #expect(try mount.core.lookup(parent: loras, name: "later.safetensors") != nil)
        }
    }
}

extension MountCoreTests {
    /// A write open waiting for passthrough readers to close goes in before readers that come
    /// after it (which then read through the page cache): a stream of readers cannot keep a
    /// writer out.
    @Test func aWaitingWriterGoesInBeforeLaterReaders() throws {
        try TempDirectory.with { dir in
            var settings = MountSettings()
            settings.passthroughMinimumSize = 1
            let mount = try CoreHarness(home: dir.path + "/home", settings: settings)
            try mount.add("busy.safetensors", testBytes(4096))
            let inode = try mount.inode("loras/busy.safetensors")
            let first = try mount.core.open(inode, flags: O_RDONLY)
            let backing = try #require(first.backingId)
            let core = mount.core
            let writer = Locked<Result<OpenOptions, Errno>?>(nil)
            let later = Locked<Result<OpenOptions, Errno>?>(nil)
            let threads = DispatchGroup()
            func start(_ flags: Int32, into slot: Locked<Result<OpenOptions, Errno>?>) {
                threads.enter()
                Thread {
                    defer { threads.leave() }
                    let result = Result { try core.open(inode, flags: flags) }.mapError { ErrnoMapping.errno(for: $0) }
                    slot.withLock { $0 = result }
                }.start()
            }
            start(O_WRONLY, into: writer)
            for _ in 0..<200 where core.handles.withLock({ $0.ioModes[inode]?.waitingWriters ?? 0 }) == 0 { usleep(2000) }
            #expect(core.handles.withLock { $0.ioModes[inode]?.waitingWriters } == 1, "the writer waits")
            start(O_RDONLY, into: later)
            usleep(50_000)
            #expect(later.withLock { $0 } == nil, "a reader that comes after a waiting writer waits too")
            _ = core.release(inode, handle: first.handle, backingId: backing)
            #expect(threads.wait(timeout: .now() + 5) == .success)
            let written = try #require(try writer.withLock { $0 }?.get())
            let read = try #require(try later.withLock { $0 }?.get())
            #expect(read.backingId == nil, "the later reader reads through the page cache beside the writer")
            _ = core.release(inode, handle: read.handle, backingId: 0)
            _ = core.release(inode, handle: written.handle, backingId: 0)
            #expect(core.handles.withLock { $0.ioModes[inode] } == nil, "nothing counted once all are closed")
        }
    }
}

extension MountCoreTests {
    /// A file renamed while it is being written (an editor's temp file moved into place before
    /// close) is committed under the name the rename left, and only there.
    @Test func aWriteRenamedBeforeCloseIsNamedWhereTheRenameLeftIt() throws {
        try TempDirectory.with { dir in
            let mount = try CoreHarness(home: dir.path + "/home")
            let loras = try mount.inode("loras")
            let created = try mount.core.create(parent: loras, name: "model.safetensors.tmp")
            let bytes = testBytes(2048, seed: 9)
            _ = try bytes.withUnsafeBytes { try mount.core.write(created.options.handle, bytes: $0, offset: 0, lockOwner: 3) }
            try mount.core.rename(parent: loras, name: "model.safetensors.tmp", newParent: loras, newName: "model.safetensors", flags: 0)
            _ = try mount.core.flush(created.options.handle, lockOwner: 3)
            _ = mount.core.release(created.entry.attributes.inode, handle: created.options.handle, backingId: 0)
            #expect(try mount.library.registry.alias(folder: "loras", path: "model.safetensors.tmp") == nil, "nothing under the old name")
            let alias = try #require(try mount.library.registry.alias(folder: "loras", path: "model.safetensors"))
            #expect(alias.sha256 == (try SHA256Hasher.digest(bytes)))
            #expect(try mount.core.lookup(parent: loras, name: "model.safetensors.tmp") == nil)
        }
    }
}
