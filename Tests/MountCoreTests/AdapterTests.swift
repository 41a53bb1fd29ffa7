import FUSE
import Foundation
import Glibc
import Testing
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRTesting
@testable import TSRMount

/// The FUSE adapter over the core, driven with recording requests: the replies the kernel gets,
/// and reads of files not here yet, parked until their download ends (§3).
@Suite struct AdapterTests {
    static func info(_ handle: UInt64, flags: Int32 = O_RDONLY) -> FileInfo { FileInfo(flags: flags, handle: handle) }

    /// Registers `bytes` as a remote file loras/`name` (no bytes in the store) and opens it.
    static func openRemote(_ mount: CoreHarness, _ name: String, _ bytes: [UInt8]) throws -> (inode: Inode, handle: UInt64) {
        let digest = try SHA256Hasher.digest(bytes)
        _ = try mount.library.registerRemote(
            digest: digest, size: Int64(bytes.count), folder: "loras", path: name, replace: false,
            url: "https://example.invalid/\(name)", kind: "url", prefix: nil)
        let inode = try mount.inode("loras/\(name)")
        let request = RecordingReplier()
        mount.adapter.open(request, inode: inode, file: info(0))
        guard case let .open(handle, _, _, _)? = request.answer else { throw Errno.ioError }
        return (inode, handle)
    }

    func read(_ mount: CoreHarness, _ handle: UInt64, size: Int = 4096, at offset: Int64 = 0) -> RecordingReplier {
        let request = RecordingReplier()
        mount.adapter.read(request, inode: .root, size: size, offset: offset, file: Self.info(handle))
        return request
    }

    @Test func namesAttributesAndErrorsBecomeTheirReplies() throws {
        try TempDirectory.with { dir in
            var settings = MountSettings()
            settings.negativeTimeout = 42
            let mount = try CoreHarness(home: dir.path + "/home", settings: settings)
            try mount.add("a.safetensors", testBytes(300))
            let loras = try mount.inode("loras")

            let missing = RecordingReplier()
            mount.adapter.lookup(missing, parent: loras, name: "nothing.safetensors")
            #expect(missing.answer == .noEntry(timeout: 42), "a negative entry, cached as long as the mount says")
            let found = RecordingReplier()
            mount.adapter.lookup(found, parent: loras, name: "a.safetensors")
            guard case let .entry(inode, _)? = found.answer else { Issue.record("\(String(describing: found.answer))"); return }
            let attributes = RecordingReplier()
            mount.adapter.getattr(attributes, inode: inode, file: nil)
            guard case let .attributes(attrs, _)? = attributes.answer else { Issue.record("no attributes"); return }
            #expect(attrs.size == 300 && attrs.permissions == 0o644)

            let unknown = RecordingReplier()
            mount.adapter.getattr(unknown, inode: Inode(999_999), file: nil)
            #expect(unknown.answer == .error(ENOENT))
            let readOnly = RecordingReplier()
            mount.adapter.create(readOnly, parent: try mount.inode("by-hash"), name: "x", mode: 0o644, file: Self.info(0))
            #expect(readOnly.answer == .error(EROFS), "views other than folders take no new files")
            let special = RecordingReplier()
            mount.adapter.makeSpecial(special, parent: loras, name: "link", kind: .symbolicLink)
            #expect(special.answer == .error(EPERM))

            let size = RecordingReplier()
            mount.adapter.getxattr(size, inode: inode, name: "user.tsr.sha256", size: 0)
            #expect(size.answer == .xattrSize(64), "asked with size 0: the value's size")
            let small = RecordingReplier()
            mount.adapter.getxattr(small, inode: inode, name: "user.tsr.sha256", size: 10)
            #expect(small.answer == .error(ERANGE))
            #expect(missing.replyCount == 1 && found.replyCount == 1, "exactly one reply per request")
        }
    }

    /// READDIRPLUS entries the reply carried become inodes the kernel holds; those that did not
    /// fit do not.
    @Test func readdirPlusHandsOutOnlyTheEntriesSent() throws {
        try TempDirectory.with { dir in
            let mount = try CoreHarness(home: dir.path + "/home")
            for index in 0..<3 { try mount.add("m\(index).safetensors", testBytes(10, seed: UInt64(index))) }
            let loras = try mount.inode("loras")
            let opened = RecordingReplier()
            mount.adapter.opendir(opened, inode: loras, file: Self.info(0))
            guard case let .open(handle, _, _, _)? = opened.answer else { Issue.record("opendir"); return }
            let listing = RecordingReplier()
            listing.directoryRoom = 2
            mount.adapter.readdir(listing, inode: loras, offset: 0, size: 4096, file: Self.info(handle), plus: true)
            guard case let .directory(sent)? = listing.answer else { Issue.record("readdir"); return }
            #expect(sent.count == 2)
            let held = mount.core.names.withLock { known in sent.map { !known.known.inodes(at: "loras/" + $0).isEmpty } }
            #expect(held == [true, true])
            let rest = try mount.core.resolver().listing(at: "loras")!.map(\.name).filter { !sent.contains($0) }
            #expect(mount.core.names.withLock { known in rest.allSatisfy { known.known.inodes(at: "loras/" + $0).isEmpty } }, "not sent, not held")
            let released = RecordingReplier()
            mount.adapter.releasedir(released, inode: loras, file: Self.info(handle))
            let after = RecordingReplier()
            mount.adapter.readdir(after, inode: loras, offset: 0, size: 4096, file: Self.info(handle), plus: false)
            #expect(released.answer == .ok && after.answer == .error(EBADF))
        }
    }

    /// Reads of a file not here park without a worker; one download serves them all, and they
    /// are answered with the verified bytes when it ends.
    @Test func parkedReadsShareOneDownloadAndGetTheVerifiedBytes() throws {
        try TempDirectory.with { dir in
            let bytes = testBytes(300_000, seed: 3)
            let store = try Library(home: dir.path + "/home").store
            let fetcher = GatedFetcher(store: store, bytes: bytes)
            let mount = try CoreHarness(home: dir.path + "/home", fetcher: fetcher)
            let (inode, handle) = try Self.openRemote(mount, "lazy.safetensors", bytes)
            let first = read(mount, handle, at: 0)
            let second = read(mount, handle, at: 200_000)
            #expect(first.answer == nil && second.answer == nil, "parked until the download ends")
            #expect(try mount.core.getxattr(inode, name: "user.tsr.state") == Array("fetching".utf8))
            fetcher.release()
            #expect(first.wait() == .bytes(Array(bytes[0..<4096])))
            #expect(second.wait() == .bytes(Array(bytes[200_000..<204_096])))
            #expect(fetcher.fetches == 1, "one download for every reader")
            #expect(try mount.library.registry.blob(try SHA256Hasher.digest(bytes))?.state == .present)
            #expect(read(mount, handle, at: 299_000).answer == .bytes(Array(bytes[299_000...])), "the handle now reads the blob")
        }
    }

    /// An interrupted reader is answered EINTR at once; the download goes on for the next read.
    @Test func anInterruptedReadIsAnsweredAndTheDownloadGoesOn() throws {
        try TempDirectory.with { dir in
            let bytes = testBytes(50_000, seed: 4)
            let fetcher = GatedFetcher(store: try Library(home: dir.path + "/home").store, bytes: bytes)
            let mount = try CoreHarness(home: dir.path + "/home", fetcher: fetcher)
            let (_, handle) = try Self.openRemote(mount, "slow.safetensors", bytes)
            let waiting = read(mount, handle)
            waiting.interrupt()
            #expect(waiting.answer == .error(EINTR))
            let next = read(mount, handle, size: 100)
            fetcher.release()
            #expect(next.wait() == .bytes(Array(bytes[0..<100])))
            #expect(waiting.replyCount == 1, "the interrupted read is not answered twice")
            #expect(fetcher.fetches == 1)
        }
    }

    /// A failed download answers its parked reads EIO, and later reads EIO at once until the
    /// back-off has passed, without a new transfer per read.
    @Test func aFailedDownloadIsNotRetriedByEveryRead() throws {
        try TempDirectory.with { dir in
            let bytes = testBytes(20_000, seed: 5)
            let fetcher = GatedFetcher(store: try Library(home: dir.path + "/home").store, bytes: bytes, fails: true)
            let mount = try CoreHarness(home: dir.path + "/home", fetcher: fetcher)
            let (inode, handle) = try Self.openRemote(mount, "broken.safetensors", bytes)
            let parked = read(mount, handle)
            fetcher.release()
            #expect(parked.wait() == .error(EIO))
            for _ in 0..<5 { #expect(read(mount, handle).answer == .error(EIO)) }
            #expect(fetcher.fetches == 1, "the back-off holds further transfers")
            #expect(try mount.core.getxattr(inode, name: "user.tsr.state") == Array("failed".utf8))
            #expect((try? mount.core.getxattr(inode, name: "user.tsr.error")).map { !$0.isEmpty } == true)
        }
    }
}
