import FUSE
import Foundation
import GRDB
import Logging
import Testing
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRTesting
@testable import TSRMount

/// What the mount keeps per inode is what the kernel holds, and a registry change refreshes
/// exactly that (docs/ARCHITECTURE.md, "Large registries"; SEMANTICS §4).
@Suite struct KnownInodesTests {
    static func file(_ inode: UInt64, _ name: String) -> Node {
        Node(inode: Inode(inode), parent: .root, name: name, kind: .file(FileNode(sha256: nil, size: 1, state: .present, mtimeNs: 0, alias: nil, writable: false, pending: false)))
    }

    /// Names `content` (a remote blob) as loras/`path`.
    static func add(_ path: String, _ content: String, to registry: Registry) throws {
        let digest = try SHA256Hasher.digest(Array(content.utf8))
        try registry.upsertBlob(BlobRecord(sha256: digest, size: Int64(content.utf8.count), state: .remote))
        _ = try registry.addAlias(folder: "loras", path: path, sha256: digest, replace: true)
    }

    static var root: Node { Node(inode: .root, parent: .root, name: "", kind: .directory(DirectoryNode(names: [], children: [:], mtimeNs: 0))) }

    @Test func lookupsAreCountedAndForgottenAtZero() {
        var known = KnownInodes(root: Self.root)
        known.remember(Self.file(10, "a"), at: "loras/a")
        known.remember(Self.file(10, "a"), at: "loras/a")
        known.forget(Inode(10), 1)
        #expect(known[Inode(10)]?.lookups == 1, "one reference left")
        known.forget(Inode(10), 1)
        #expect(known[Inode(10)] == nil && known.inodes(at: "loras/a").isEmpty, "dropped at zero")
        known.forget(.root, 100)
        #expect(known[.root] != nil, "the root is never forgotten")
        known.forget(Inode(99), 1)
        #expect(known.count == 1, "forgetting an unknown inode changes nothing")
    }

    @Test func aRenameMovesEveryInodeBelowAndTheyFollow() {
        var known = KnownInodes(root: Self.root)
        known.remember(Self.file(10, "d"), at: "loras/d")
        known.remember(Self.file(11, "x"), at: "loras/d/x")
        known.remember(Self.file(12, "dx"), at: "loras/dx")
        known.move(from: "loras/d", to: "loras/e")
        #expect(known[Inode(10)]?.path == "loras/e" && known[Inode(10)]?.follows == true)
        #expect(known[Inode(11)]?.path == "loras/e/x")
        #expect(known[Inode(12)]?.path == "loras/dx", "a sibling sharing the prefix stays")
        #expect(known.inodes(at: "loras/d").isEmpty && known.inodes(at: "loras/e") == [Inode(10)])
    }

    /// A change made by another process (the registry's change log) refreshes the inodes the
    /// kernel holds, and names what its caches must drop: a new name under a held directory (it
    /// may be cached as missing), a removed name, a name that now leads to other content, and
    /// the attributes of the directories on the way. An inode the kernel does not hold costs
    /// nothing.
    @Test func aRegistryChangeRefreshesWhatTheKernelHolds() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            let registry = library.registry
            func add(_ path: String, _ content: String) throws { try Self.add(path, content, to: registry) }
            try add("style/kept.safetensors", "kept")
            try add("style/removed.safetensors", "removed")
            try add("style/rewritten.safetensors", "old")
            try add("elsewhere/unheld.safetensors", "unheld")
            let fs = try MountCore(library: library, settings: MountSettings(), logger: Logger(label: "test"))
            var held: [String: Inode] = [:]
            for path in ["loras", "loras/style", "loras/style/kept.safetensors", "loras/style/removed.safetensors", "loras/style/rewritten.safetensors"] {
                held[path] = try #require(try fs.resolveForKernel(path)).inode
            }
            let styleBefore = try #require(fs.resolve(held["loras/style"]!))
            #expect(fs.names.withLock { $0.invalidations.isEmpty })

            Thread.sleep(forTimeInterval: 0.01)  // a later mtime
            try add("style/new.safetensors", "new")
            _ = try registry.removeAlias(folder: "loras", path: "style/removed.safetensors")
            try add("style/rewritten.safetensors", "new content")
            try add("elsewhere/other.safetensors", "other")
            try fs.rebuild()

            let invalidations = fs.names.withLock { $0.invalidations }
            var dropped = Set<String>()
            var refreshed = Set<Inode>()
            for item in invalidations {
                switch item {
                case let .entry(parent, name): dropped.insert((parent == held["loras/style"] ? "style/" : "\(parent)/") + name)
                case let .inode(inode), let .content(inode): refreshed.insert(inode)
                }
            }
            #expect(dropped.contains("style/new.safetensors"), "a new name: a cached negative entry is dropped")
            #expect(dropped.contains("style/removed.safetensors"), "a removed name")
            #expect(dropped.contains("style/rewritten.safetensors"), "a name that leads to other content")
            #expect(!dropped.contains("style/kept.safetensors"), "an unchanged name stays cached")
            #expect(refreshed.contains(held["loras/style"]!) && refreshed.contains(held["loras"]!), "directories on the way get new attributes")
            #expect(!refreshed.contains(held["loras/style/kept.safetensors"]!))
            let styleAfter = try #require(fs.resolve(held["loras/style"]!))
            #expect((styleAfter.directory?.mtimeNs ?? 0) > (styleBefore.directory?.mtimeNs ?? 0))
            #expect(fs.resolve(held["loras/style/rewritten.safetensors"]!)?.file?.size == 3, "the old inode keeps its content's size (readers of it keep it)")
            #expect(fs.names.withLock { $0.known.count } == 6, "only what the kernel was handed is kept (and the root)")

            fs.names.withLock { $0.invalidations.removeAll() }
            try fs.rebuild()
            #expect(fs.names.withLock { $0.invalidations.isEmpty }, "no change, nothing to drop")
        }
    }

    /// A refresh that cannot read the registry neither fails nor undoes the change that caused
    /// it: its paths are kept, and the next poll refreshes them once the registry reads again.
    @Test func aFailedRefreshIsRetriedByTheNextPoll() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            try Self.add("style/kept.safetensors", "kept", to: library.registry)
            let fs = try MountCore(library: library, settings: MountSettings(), logger: Logger(label: "test"))
            let loras = try #require(try fs.resolveForKernel("loras")).inode
            #expect(try fs.resolveForKernel("loras/made") == nil, "looked up before it exists (a negative entry)")
            func owed() -> (dropped: [String], owed: Bool) {
                fs.names.withLock { state in
                    let dropped = state.invalidations.compactMap { item -> String? in
                        if case let .entry(parent, name) = item, parent == loras { return name }
                        return nil
                    }
                    return (dropped, !state.unrefreshed.isEmpty)
                }
            }

            // Another connection hides the change log, so the refresh's first read fails.
            let other = try DatabaseQueue(path: library.layout.database)
            try other.write { try $0.execute(sql: "ALTER TABLE mount_changes RENAME TO mount_changes_hidden") }
            let made = AliasKey(folder: "loras", path: "made")
            try fs.rebuild { overlay in overlay.emptyDirectories[made] = MountCore.nowNs }
            #expect(fs.names.withLock { $0.overlay.emptyDirectories[made] } != nil, "the change is made")
            #expect(owed().dropped.isEmpty && owed().owed, "nothing refreshed yet; the refresh is owed")
            try fs.followChanges()
            #expect(owed().dropped.isEmpty && owed().owed, "still owed while the registry cannot be read")

            try other.write { try $0.execute(sql: "ALTER TABLE mount_changes_hidden RENAME TO mount_changes") }
            try fs.followChanges()
            #expect(owed().dropped.contains("made"), "the next poll drops the cached negative entry: \(owed().dropped)")
            #expect(!owed().owed)
        }
    }

    /// More changes than the log is read for one by one (a large import): everything the kernel
    /// holds is refreshed, and every name in a held directory is dropped, since any of them may
    /// be cached as missing.
    @Test func aLargeImportRefreshesEverythingHeld() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            let registry = library.registry
            func add(_ path: String, _ content: String) throws { try Self.add(path, content, to: registry) }
            try add("style/kept.safetensors", "kept")
            var settings = MountSettings()
            settings.changeLogBatch = 3
            let fs = try MountCore(library: library, settings: settings, logger: Logger(label: "test"))
            let style = try #require(try fs.resolveForKernel("loras/style")).inode
            #expect(try fs.resolveForKernel("loras/style/new-0.safetensors") == nil, "looked up before it exists (a negative entry)")
            for index in 0..<4 { try add("style/new-\(index).safetensors", "new \(index)") }
            try fs.rebuild()
            let dropped = Set(fs.names.withLock { $0.invalidations }.compactMap { item -> String? in
                if case let .entry(parent, name) = item, parent == style { return name }
                return nil
            })
            #expect(dropped.isSuperset(of: ["new-0.safetensors", "new-3.safetensors", "kept.safetensors"]), "\(dropped)")
            #expect(fs.names.withLock { $0.changeSeq } == (try registry.mountChangesStart().latest), "it caught up with the log")
        }
    }
}

/// What the kernel is told when the registry fails (issue 25: a full disk answered EIO).
@Suite struct ErrnoMappingTests {
    @Test func aFullRegistryIsNoSpaceAndABusyOneIsBusy() {
        #expect(ErrnoMapping.errno(for: RegistryError.full("database or disk is full")) == .noSpace)
        #expect(ErrnoMapping.errno(for: LibraryError.registry(.full("x"))) == .noSpace)
        #expect(ErrnoMapping.errno(for: RegistryError.busy("locked")) == .resourceBusy)
        #expect(ErrnoMapping.errno(for: RegistryError.database("other")) == .ioError)
    }
}
