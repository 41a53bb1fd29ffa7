import Foundation
import SystemPackage
import Testing
import TSRRegistry
import TSRStore
import TSRTesting
@testable import TSRLibrary

/// The bounded cache at the library level: what may be evicted, in which order, and what an
/// evicted name keeps.
@Suite struct CacheTests {
    /// Stores `bytes` under loras/`name`, with a source unless `sourced` is false.
    @discardableResult
    static func add(_ library: Library, _ name: String, _ bytes: [UInt8], sourced: Bool = true) throws -> Digest {
        let committed = try library.store.put(bytes)
        try library.record(committed, folder: "loras", path: name)
        if sourced { try library.registry.addSource(committed.digest, url: "https://huggingface.co/o/r/resolve/main/\(name)", kind: "huggingface") }
        return committed.digest
    }

    @Test func sizesAndLimitsParse() {
        #expect(Cache.parseSize("200G") == 200 << 30)
        #expect(Cache.parseSize("512MiB") == 512 << 20)
        #expect(Cache.parseSize("1.5T") == Int64(1.5 * Double(1 << 40)))
        #expect(Cache.parseSize("4096") == 4096 && Cache.parseSize("2kb") == 2048)
        #expect(Cache.parseSize("G") == nil && Cache.parseSize("-1G") == nil && Cache.parseSize("lots") == nil)
        #expect(Cache.parseLimit("none") == .unlimited && Cache.parseLimit("0") == .unlimited)
        #expect(Cache.parseLimit("10M") == .bytes(10 << 20) && Cache.parseLimit("ten") == nil)
    }

    @Test func theLimitComesFromTheEnvironmentOrTheHome() throws {
        try TempDirectory.with { dir in
            let cache = Cache(library: try Library(home: dir.path + "/home"))
            #expect(try cache.limit(environment: [:]).bytes == nil)
            try cache.setLimit(5 << 30)
            #expect(try cache.limit(environment: [:]) == (5 << 30, "home"))
            #expect(try cache.limit(environment: ["TSR_CACHE_LIMIT": "1G"]) == (1 << 30, "TSR_CACHE_LIMIT"))
            #expect(try cache.limit(environment: ["TSR_CACHE_LIMIT": "none"]).bytes == nil)
            #expect(throws: LibraryError.self) { try cache.limit(environment: ["TSR_CACHE_LIMIT": "huge"]) }
            try cache.setLimit(nil)
            #expect(try cache.limit(environment: [:]).bytes == nil)
        }
    }

    /// Least recently used first; pinned blobs, blobs nothing could fetch again and blobs a
    /// reader holds stay; an evicted blob is `remote` with its names and a header region, and
    /// its file is gone.
    @Test func evictionTakesTheLeastRecentlyUsedThatCanComeBack() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            let cache = Cache(library: library)
            let old = try Self.add(library, "old.safetensors", SafetensorsBuilder(tensors: [("w", "U8", [600_000])], fill: 1).bytes())
            let recent = try Self.add(library, "recent.bin", testBytes(100_000, seed: 2))
            let pinned = try Self.add(library, "pinned.bin", testBytes(100_000, seed: 3))
            let local = try Self.add(library, "local.bin", testBytes(100_000, seed: 4), sourced: false)
            let held = try Self.add(library, "held.bin", testBytes(100_000, seed: 5))
            let now = Date()
            try library.registry.recordAccess([
                old: now.addingTimeInterval(-500), local: now.addingTimeInterval(-400), pinned: now.addingTimeInterval(-300),
                held: now.addingTimeInterval(-200), recent: now.addingTimeInterval(-100),
            ])
            try cache.pin([pinned])
            let status = try cache.status(environment: [:])
            #expect(status.blobs == 5 && status.pinned == 100_000 && status.unevictable == 100_000)
            #expect(status.evictable == status.size - 200_000)

            let reader = try SystemCalls.openForReading(library.layout.blobPath(held))
            SystemCalls.markInUse(reader)
            defer { try? reader.close() }
            let dry = try cache.evict(downTo: 0, dryRun: true)
            #expect(dry.evicted.map(\.sha256) == [old.rawValue, recent.rawValue] && library.store.contains(old), "a dry run evicts nothing")

            let report = try cache.evict(downTo: status.size - 1)
            #expect(report.evicted.map(\.sha256) == [old.rawValue], "the least recently used goes first, and only as much as needed")
            #expect(!library.store.contains(old))
            #expect(try library.registry.blob(old)?.state == .remote, "the name stays; the bytes are fetched again on the next read")
            #expect(try library.registry.alias(folder: "loras", path: "old.safetensors")?.sha256 == old)
            let prefix = try #require(try library.registry.prefix(old))
            let original = SafetensorsBuilder(tensors: [("w", "U8", [600_000])], fill: 1).bytes()
            #expect(prefix.count < original.count && prefix == Array(original.prefix(prefix.count)), "the header region is kept for header peeks")

            let all = try cache.evict(downTo: 0)
            #expect(all.evicted.map(\.sha256) == [recent.rawValue])
            #expect(!all.reached && all.pinned == 100_000 && all.unevictable == 100_000 && all.inUse == 100_000)
            #expect(library.store.contains(pinned) && library.store.contains(local) && library.store.contains(held))
            try reader.close()
            #expect(try cache.evict(downTo: 0).evicted.map(\.sha256) == [held.rawValue], "evictable once its reader closed it")
            #expect(try cache.unpin([pinned]) == 1)
            #expect(try cache.evict(downTo: 0).evicted.map(\.sha256) == [pinned.rawValue])
            #expect(library.store.contains(local), "never the only copy")
        }
    }

    @Test func namesAndHashesResolveAndUnknownOnesAreNamed() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            let digest = try Self.add(library, "x.bin", testBytes(10))
            let cache = Cache(library: library)
            #expect(try cache.digests(for: ["loras/x.bin", String(digest.rawValue.prefix(12)), digest.rawValue]) == [digest, digest, digest])
            #expect(throws: LibraryError.self) { try cache.digests(for: ["loras/nothing.bin"]) }
            #expect(throws: LibraryError.self) { try cache.digests(for: ["nofolder"]) }
        }
    }

    /// A free-space floor bounds the cache like a limit: what is here plus what may still be
    /// written while keeping that much of the disk free.
    @Test func aFreeSpaceFloorEvictsToKeepTheDiskFree() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            let first = try Self.add(library, "first.bin", testBytes(100_000, seed: 7))
            let second = try Self.add(library, "second.bin", testBytes(100_000, seed: 8))
            try library.registry.recordAccess([first: Date().addingTimeInterval(-100), second: Date()])
            // A 10 MB disk with 150,000 bytes free; keep 10 % (1 MB) free.
            let disk = Cache(library: library, diskSpace: { (150_000, 10_000_000) })
            #expect(Cache.MinFree.parse("10%") == .percent(10) && Cache.MinFree.parse("50G") == .bytes(50 << 30) && Cache.MinFree.parse("lots") == nil)
            #expect(Cache.MinFree.parse("100%") == nil && Cache.MinFree.percent(10).bytes(ofDisk: 10_000_000) == 1_000_000)
            #expect(try disk.makeRoom(for: 10, environment: [:]) == nil, "no limit and no floor: nothing to do")
            try disk.setMinFree(.bytes(100_000))
            #expect(try disk.minFree(environment: [:]) == .bytes(100_000))
            // Here 200,000 + free 150,000 − floor 100,000: room for 250,000 in all.
            #expect(try disk.makeRoom(for: 50_000, environment: [:]) == nil, "fits above the floor")
            let report = try #require(try disk.makeRoom(for: 100_000, environment: [:]))
            #expect(report.evicted.map(\.sha256) == [first.rawValue], "the least recently used goes to keep the floor")
            #expect(try disk.minFree(environment: ["TSR_CACHE_MIN_FREE": "none"]) == nil)
            #expect(throws: LibraryError.self) { try disk.minFree(environment: ["TSR_CACHE_MIN_FREE": "most"]) }
            try disk.setMinFree(.percent(10))
            #expect(try disk.status(environment: [:]).minFree == "10%")
        }
    }
}
