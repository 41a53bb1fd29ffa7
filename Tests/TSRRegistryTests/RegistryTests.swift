import Foundation
import GRDB
import Testing
import TSRStore
import TSRTesting
@testable import TSRRegistry

@Suite struct RegistryTests {
    static func digest(_ n: Int) -> Digest {
        // Deterministic, distinct digests for rows that need no bytes.
        try! SHA256Hasher.digest(Array("blob-\(n)".utf8))
    }

    static func withRegistry(_ body: (Registry, TempDirectory) throws -> Void) throws {
        try TempDirectory.with { dir in try body(try Registry(path: dir.path + "/models.db"), dir) }
    }

    /// A failed download waits 1 min, 2, 4 … up to an hour before the mount tries again; a new
    /// source, the bytes arriving, or a restart end the wait (issue 17).
    @Test func aFailedDownloadBacksOffAndANewSourceOrTheBlobArrivingEndsTheWait() throws {
        try Self.withRegistry { registry, _ in
            let digest = Self.digest(7)
            try registry.upsertBlob(BlobRecord(sha256: digest, size: 10, state: .remote))
            let start = Date(timeIntervalSince1970: 1_000_000)
            var waits: [TimeInterval] = []
            for attempt in 1...8 {
                let failure = try registry.recordFetchFailure(digest, reason: "HTTP 503", now: start)
                #expect(failure.attempts == attempt)
                waits.append(failure.nextTryAt.timeIntervalSince(start))
            }
            #expect(waits == [60, 120, 240, 480, 960, 1920, 3600, 3600])
            #expect(try registry.fetchFailure(digest)?.summary.hasPrefix("failed: HTTP 503, next try at 1970-01-12T") == true)
            try registry.retryFetchFailuresNow(start)
            #expect(try registry.fetchFailure(digest)?.nextTryAt == start, "a restart tries at once")
            #expect(try registry.fetchFailure(digest)?.attempts == 8, "and keeps the count")
            try registry.addSource(digest, url: "https://example.org/a", kind: "url")
            #expect(try registry.fetchFailure(digest) == nil, "a new source tries at once")
            try registry.recordFetchFailure(digest, reason: "wrong bytes")
            try registry.addSource(digest, url: "https://example.org/a", kind: "url")
            #expect(try registry.fetchFailure(digest) != nil, "the same source again is no change")
            try registry.setState(digest, .present)
            #expect(try registry.fetchFailures().isEmpty, "the bytes arrived")
        }
    }

    /// SQLite's codes keep their meaning (issue 25: a full disk became a generic failure, EIO
    /// through the mount).
    @Test func sqliteErrorsKeepTheirMeaning() {
        #expect(Registry.wrap(DatabaseError(resultCode: .SQLITE_FULL, message: "database or disk is full")) == .full("database or disk is full"))
        #expect(Registry.wrap(DatabaseError(resultCode: .SQLITE_BUSY, message: "database is locked")) == .busy("database is locked"))
        #expect(Registry.wrap(DatabaseError(resultCode: .SQLITE_IOERR, message: "disk I/O error"), path: "/nonexistent-dir/models.db") == .database("disk I/O error"))
        #expect(RegistryError.full("x").description.contains("no space left"))
    }

    /// The bounded cache's rows: eviction candidates in least-recently-used order, a page at a
    /// time, without pinned or source-less blobs; an eviction marks the blob remote, keeps a header
    /// region and is logged; counters add up.
    @Test func evictionCandidatesComeInLastUseOrderAPageAtATime() throws {
        try Self.withRegistry { registry, _ in
            let now = Date()
            for index in 1...5 {
                try registry.upsertBlob(BlobRecord(sha256: Self.digest(index), size: Int64(index), state: .present))
                if index != 4 { try registry.addSource(Self.digest(index), url: "https://example.org/\(index)", kind: "url") }
            }
            try registry.recordAccess([Self.digest(1): now, Self.digest(2): now.addingTimeInterval(-30), Self.digest(3): now.addingTimeInterval(-20), Self.digest(5): now.addingTimeInterval(-10)])
            try registry.recordAccess([Self.digest(1): now.addingTimeInterval(-100)])
            try registry.pin([Self.digest(5)])
            let first = try registry.evictionCandidates(limit: 2)
            #expect(first.map(\.sha256) == [Self.digest(2), Self.digest(3)], "oldest first; an earlier access never moves a blob back")
            let rest = try registry.evictionCandidates(after: first.last?.lastUseKey, limit: 2)
            #expect(rest.map(\.sha256) == [Self.digest(1)], "pinned (5) and source-less (4) never come")
            #expect(try registry.presentBytes() == 15)
            let totals = try registry.cacheTotals()
            #expect(totals.size == 15 && totals.blobs == 5 && totals.pinned == 5 && totals.sourceless == 4)
            try registry.markEvicted(Self.digest(2), prefix: [1, 2, 3])
            #expect(try registry.blob(Self.digest(2))?.state == .remote && (try registry.prefix(Self.digest(2))) == [1, 2, 3])
            #expect(try registry.recentEvictions().map(\.sha256) == [Self.digest(2)])
            #expect(throws: RegistryError.self) { try registry.markEvicted(Self.digest(2), prefix: nil) }
            try registry.addToCounters(["mount_hits": 3])
            try registry.addToCounters(["mount_hits": 2, "mount_misses": 1])
            #expect(try registry.counter("mount_hits") == 5 && registry.counter("mount_misses") == 1)
        }
    }

    @Test func migrationsCreateEveryTableAndViewOnce() throws {
        try Self.withRegistry { registry, dir in
            #expect(try registry.appliedMigrations() == ["v1-store-registry-civitai-cache", "v2-mount-change-tracking", "v3-blob-prefixes", "v4-partial-downloads", "v5-workflows", "v6-civitai-lookups-and-search", "v7-mount-change-log", "v8-directory-newest", "v9-fetch-failures", "v10-workflow-auth-provider", "v11-bounded-cache"])
            let tables = Set(try registry.tableCounts().keys)
            for table in [
                "blobs", "aliases", "local_files", "safetensor_metadata", "sources", "creators", "models", "model_versions",
                "trained_words", "version_files", "file_hashes", "tags", "model_tags", "version_images",
                "image_generation_params", "image_resources", "partial_downloads", "workflows", "workflow_entries", "civitai_lookups", "models_fts",
                "fetch_failures", "pins", "settings", "evictions",
            ] {
                #expect(tables.contains(table), "missing table \(table)")
            }
            #expect(try registry.viewNames() == ["v_local_files_full", "v_models_with_latest"])
            // Reopening applies nothing again and keeps the data.
            try registry.upsertBlob(BlobRecord(sha256: Self.digest(1), size: 1, state: .present))
            let again = try Registry(path: dir.path + "/models.db")
            #expect(try again.appliedMigrations().count == 11)
            #expect(try again.blob(Self.digest(1))?.size == 1)
        }
    }

    @Test func upsertMergesHeaderFactsAndKeepsPresent() throws {
        try Self.withRegistry { registry, _ in
            let d = Self.digest(2)
            try registry.upsertBlob(BlobRecord(sha256: d, size: 10, state: .present, tensorCount: 3, baseModel: "SD 1.5"))
            try registry.upsertBlob(BlobRecord(sha256: d, size: 10, state: .remote))
            let row = try #require(try registry.blob(d))
            #expect(row.state == .present, "registering a source never hides local bytes")
            #expect(row.tensorCount == 3 && row.baseModel == "SD 1.5")
            try registry.setState(d, .quarantined)
            try registry.upsertBlob(BlobRecord(sha256: d, size: 10, state: .present))
            #expect(try registry.blob(d)?.state == .present)
        }
    }

    @Test func aliasesAddConflictReplaceMoveRemove() throws {
        try Self.withRegistry { registry, _ in
            let a = Self.digest(3), b = Self.digest(4)
            for d in [a, b] { try registry.upsertBlob(BlobRecord(sha256: d, size: 100, state: .present)) }
            #expect(try registry.addAlias(folder: "loras", path: "x.safetensors", sha256: a, replace: false) == .created)
            #expect(try registry.addAlias(folder: "loras", path: "x.safetensors", sha256: a, replace: false) == .unchanged)
            #expect(try registry.addAlias(folder: "loras", path: "x.safetensors", sha256: b, replace: false) == .conflict(existing: a))
            let id = try #require(try registry.alias(folder: "loras", path: "x.safetensors")?.id)
            #expect(try registry.addAlias(folder: "loras", path: "x.safetensors", sha256: b, replace: true) == .replaced(previous: a))
            #expect(throws: RegistryError.blobUnknown(Self.digest(99))) {
                try registry.addAlias(folder: "loras", path: "y", sha256: Self.digest(99), replace: false)
            }
            try registry.addAlias(folder: "loras", path: "z.safetensors", sha256: a, replace: false)
            #expect(throws: RegistryError.aliasExists(name: "loras/z.safetensors", sha256: a)) {
                try registry.moveAlias(from: ("loras", "x.safetensors"), to: ("loras", "z.safetensors"), replace: false)
            }
            try registry.moveAlias(from: ("loras", "x.safetensors"), to: ("checkpoints", "sub/x.safetensors"), replace: false)
            let moved = try #require(try registry.alias(folder: "checkpoints", path: "sub/x.safetensors"))
            #expect(moved.id == id, "a rename keeps the alias id (a stable inode later)")
            #expect(moved.sha256 == b)
            #expect(try registry.alias(folder: "loras", path: "x.safetensors") == nil)
            #expect(try registry.removeAlias(folder: "checkpoints", path: "sub/x.safetensors").sha256 == b)
            #expect(throws: RegistryError.aliasMissing("checkpoints/sub/x.safetensors")) {
                try registry.removeAlias(folder: "checkpoints", path: "sub/x.safetensors")
            }
            #expect(try registry.blob(b) != nil, "removing a name keeps the blob")
            #expect(try registry.unreferencedBlobs().map(\.sha256) == [b])
        }
    }

    @Test func aliasIdsAreNeverReused() throws {
        try Self.withRegistry { registry, _ in
            let a = Self.digest(5)
            try registry.upsertBlob(BlobRecord(sha256: a, size: 1, state: .present))
            try registry.addAlias(folder: "vae", path: "1", sha256: a, replace: false)
            let first = try #require(try registry.alias(folder: "vae", path: "1")?.id)
            try registry.removeAlias(folder: "vae", path: "1")
            try registry.addAlias(folder: "vae", path: "2", sha256: a, replace: false)
            #expect(try #require(try registry.alias(folder: "vae", path: "2")?.id) > first)
        }
    }

    @Test func statsCountBytesSavedByDedup() throws {
        try Self.withRegistry { registry, _ in
            let big = Self.digest(6), small = Self.digest(7), remote = Self.digest(8)
            try registry.upsertBlob(BlobRecord(sha256: big, size: 1000, state: .present, baseModel: "SDXL 1.0"))
            try registry.upsertBlob(BlobRecord(sha256: small, size: 10, state: .present))
            try registry.upsertBlob(BlobRecord(sha256: remote, size: 5000, state: .remote))
            try registry.addAlias(folder: "checkpoints", path: "a", sha256: big, replace: false)
            try registry.addAlias(folder: "checkpoints", path: "b", sha256: big, replace: false)
            try registry.addAlias(folder: "loras", path: "c", sha256: big, replace: false)
            try registry.addAlias(folder: "loras", path: "d", sha256: small, replace: false)
            try registry.addAlias(folder: "loras", path: "e", sha256: remote, replace: false)
            let stats = try registry.stats()
            #expect(stats.blobs == 2 && stats.remoteBlobs == 1 && stats.aliases == 5)
            #expect(stats.bytesStored == 1010)
            #expect(stats.bytesSaved == 2000, "two extra names of the 1000-byte blob")
            #expect(stats.folders.map(\.folder) == ["checkpoints", "loras"])
            #expect(stats.folders[1].aliases == 3 && stats.folders[1].bytes == 6010)
            #expect(try registry.listing(folder: "loras").map(\.path) == ["c", "d", "e"])
            #expect(try registry.listing(baseModel: "sdxl 1.0").count == 3)
            #expect(try registry.listing(baseModel: "unknown").map(\.path) == ["d", "e"])
        }
    }

    @Test func registerBatchStoresLocalFilesAndMetadata() throws {
        try Self.withRegistry { registry, dir in
            let path = try dir.write("m.safetensors", [1, 2, 3])
            let status = try SystemCalls.status(path)
            let d = Self.digest(9)
            let local = LocalFileRecord(path: path, sha256: d, status: status, headerSize: 8, tensorCount: 1)
            let changes = try registry.register([
                FileRegistration(blob: BlobRecord(sha256: d, size: 3, state: .present), alias: ("loras", "m.safetensors"), localFile: local, localMetadata: ["k": "v"]),
                FileRegistration(blob: nil, localFile: LocalFileRecord(path: dir.path + "/other", sha256: d, status: status)),
            ])
            #expect(changes == [.created, nil])
            let known = try registry.localFilesByPath()
            #expect(try #require(known[path]).matches(status))
            #expect(known.count == 2)
            #expect(try registry.localMetadata(path: path) == ["k": "v"])
            // Re-registering the same path replaces its row and metadata.
            _ = try registry.register([FileRegistration(blob: nil, localFile: local, localMetadata: ["k2": "v2"])])
            #expect(try registry.localMetadata(path: path) == ["k2": "v2"])
            try registry.deleteLocalFiles(paths: [path])
            #expect(try registry.localFilesByPath().count == 1)
            #expect(try registry.tableCounts()["safetensor_metadata"] == 0)
        }
    }

    @Test func digestColumnRejectsNonCanonicalValues() throws {
        try Self.withRegistry { registry, _ in
            #expect(throws: RegistryError.self) {
                try registry.write { db in
                    try db.execute(sql: "INSERT INTO blobs (sha256, size, state, created_at) VALUES ('ABC', 1, 'present', '2026-01-01')")
                }
            }
        }
    }
}
