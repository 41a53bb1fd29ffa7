import Foundation
import GRDB
import TSRStore

/// A blob the bounded cache may evict (`Registry.evictionCandidates`).
public struct CacheEntry: Sendable, Equatable {
    public var sha256: Digest
    public var size: Int64
    /// Whether a header region is stored for it (kept when the blob is evicted).
    public var hasPrefix: Bool
    /// Where it is in least-recently-used order (pass to `evictionCandidates(after:)`).
    public var lastUseKey: String
}

extension Registry {
    static let cacheLimitKey = "cache_limit"

    /// The cache limit in bytes stored in the home (nil: none).
    public func cacheLimit() throws(RegistryError) -> Int64? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [Self.cacheLimitKey]).flatMap { Int64($0) } }
    }

    /// Stores the cache limit (nil removes it).
    public func setCacheLimit(_ bytes: Int64?) throws(RegistryError) {
        try write { db in
            if let bytes {
                try db.execute(
                    sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    arguments: [Self.cacheLimitKey, String(bytes)])
            } else {
                try db.execute(sql: "DELETE FROM settings WHERE key = ?", arguments: [Self.cacheLimitKey])
            }
        }
    }

    static let minFreeKey = "cache_min_free"

    /// The free-space floor stored in the home, as given (`10%`, `50G`), or nil.
    public func cacheMinFree() throws(RegistryError) -> String? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [Self.minFreeKey]) }
    }

    /// Stores the free-space floor (nil removes it).
    public func setCacheMinFree(_ text: String?) throws(RegistryError) {
        try write { db in
            if let text {
                try db.execute(
                    sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    arguments: [Self.minFreeKey, text])
            } else {
                try db.execute(sql: "DELETE FROM settings WHERE key = ?", arguments: [Self.minFreeKey])
            }
        }
    }

    /// Pins blobs (never evicted); returns how many were not pinned before.
    @discardableResult
    public func pin(_ digests: [Digest], at date: Date = Date()) throws(RegistryError) -> Int {
        try write { db in
            var added = 0
            for digest in digests {
                guard try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = ?)", arguments: [digest]) == true else {
                    throw RegistryError.blobUnknown(digest)
                }
                try db.execute(sql: "INSERT OR IGNORE INTO pins (sha256, created_at) VALUES (?, ?)", arguments: [digest, date])
                added += db.changesCount
            }
            return added
        }
    }

    /// Unpins blobs; returns how many were pinned.
    @discardableResult
    public func unpin(_ digests: [Digest]) throws(RegistryError) -> Int {
        try write { db in
            var removed = 0
            for digest in digests {
                try db.execute(sql: "DELETE FROM pins WHERE sha256 = ?", arguments: [digest])
                removed += db.changesCount
            }
            return removed
        }
    }

    public func isPinned(_ digest: Digest) throws(RegistryError) -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM pins WHERE sha256 = ?)", arguments: [digest]) ?? false }
    }

    /// Records reads (digest → when), in one transaction: callers batch them.
    public func recordAccess(_ accesses: [Digest: Date]) throws(RegistryError) {
        guard !accesses.isEmpty else { return }
        try write { db in
            let statement = try db.cachedStatement(sql: "UPDATE blobs SET last_access_at = ? WHERE sha256 = ? AND (last_access_at IS NULL OR last_access_at < ?)")
            for (digest, date) in accesses { try statement.execute(arguments: [date, digest, date]) }
        }
    }

    /// Bytes of every blob that is here (state present).
    public func presentBytes() throws(RegistryError) -> Int64 {
        try read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(sum(size), 0) FROM blobs WHERE state = 'present'") ?? 0 }
    }

    /// Blobs that are here and may be evicted (a source, not pinned), least recently used
    /// first, `limit` at a time: pass the last one's `lastUseKey` to get the next ones. Walks the
    /// `blobs_last_use` index, so the first few cost the same among a million blobs as among ten.
    public func evictionCandidates(after key: String? = nil, limit: Int = 256) throws(RegistryError) -> [CacheEntry] {
        try read { db in
            let keyed = key == nil ? "" : "AND (COALESCE(b.last_access_at, b.created_at), b.sha256) > (?, ?)"
            var arguments: StatementArguments = []
            if let key, let separator = key.lastIndex(of: " ") {
                arguments += [String(key[..<separator]), String(key[key.index(after: separator)...])]
            }
            arguments += [limit]
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT b.sha256, b.size, COALESCE(b.last_access_at, b.created_at) AS last_use,
                           EXISTS(SELECT 1 FROM blob_prefixes x WHERE x.sha256 = b.sha256)
                    FROM blobs b INDEXED BY blobs_last_use
                    WHERE b.state = 'present' \(keyed)
                      AND NOT EXISTS(SELECT 1 FROM pins p WHERE p.sha256 = b.sha256)
                      AND EXISTS(SELECT 1 FROM sources s WHERE s.sha256 = b.sha256)
                    ORDER BY COALESCE(b.last_access_at, b.created_at), b.sha256
                    LIMIT ?
                    """, arguments: arguments
            ).map { row in
                let lastUse: String = row[2]
                let digest: Digest = row[0]
                return CacheEntry(sha256: digest, size: row[1], hasPrefix: row[3], lastUseKey: lastUse + " " + digest.rawValue)
            }
        }
    }

    /// What is here (state present): bytes and blobs, and the bytes of those pinned and of those
    /// with no source (neither may be evicted; a pinned one counts as pinned only).
    public func cacheTotals() throws(RegistryError) -> (size: Int64, blobs: Int, pinned: Int64, sourceless: Int64) {
        try read { db in
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT COALESCE(sum(size), 0), count(*),
                           COALESCE(sum(CASE WHEN pinned THEN size END), 0),
                           COALESCE(sum(CASE WHEN NOT pinned AND NOT sourced THEN size END), 0)
                    FROM (SELECT b.size,
                                 EXISTS(SELECT 1 FROM pins p WHERE p.sha256 = b.sha256) AS pinned,
                                 EXISTS(SELECT 1 FROM sources s WHERE s.sha256 = b.sha256) AS sourced
                          FROM blobs b WHERE b.state = 'present')
                    """)
            return (row?[0] ?? 0, row?[1] ?? 0, row?[2] ?? 0, row?[3] ?? 0)
        }
    }

    /// Marks an evicted blob `remote` (its names stay, fetched again on the next read), storing
    /// `prefix` as its header region when it has none, in one transaction.
    public func markEvicted(_ digest: Digest, prefix: [UInt8]?, at date: Date = Date()) throws(RegistryError) {
        try write { db in
            if let prefix {
                try db.execute(sql: "INSERT OR IGNORE INTO blob_prefixes (sha256, bytes) VALUES (?, ?)", arguments: [digest, Data(prefix)])
            }
            try db.execute(sql: "UPDATE blobs SET state = 'remote', verified_at = NULL WHERE sha256 = ? AND state = 'present'", arguments: [digest])
            if db.changesCount == 0 { throw RegistryError.blobUnknown(digest) }
            try db.execute(
                sql: "INSERT INTO evictions (sha256, size, at) SELECT sha256, size, ? FROM blobs WHERE sha256 = ?", arguments: [date, digest])
            try db.execute(sql: "DELETE FROM evictions WHERE id <= (SELECT max(id) - 100 FROM evictions)")
        }
    }

    /// The latest evictions, newest first.
    public func recentEvictions(limit: Int = 10) throws(RegistryError) -> [(sha256: Digest, size: Int64, at: Date)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT sha256, size, at FROM evictions ORDER BY id DESC LIMIT ?", arguments: [limit]).map { ($0[0], $0[1], $0[2]) }
        }
    }

    /// Evictions recorded after row `id`, oldest first, with the newest row's id.
    public func evictions(after id: Int64) throws(RegistryError) -> (rows: [(sha256: Digest, size: Int64, at: Date)], latest: Int64) {
        try read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, sha256, size, at FROM evictions WHERE id > ? ORDER BY id LIMIT 1000", arguments: [id])
            let latest: Int64 = rows.last?[0] ?? id
            return (rows.map { ($0[1], $0[2], $0[3]) }, latest)
        }
    }

    /// The id of the newest eviction recorded (0: none).
    public func latestEvictionId() throws(RegistryError) -> Int64 {
        try read { db in try Int64.fetchOne(db, sql: "SELECT max(id) FROM evictions") ?? 0 }
    }

    /// Sets counters kept in `settings` (the mount's hits and misses start at 0).
    public func setCounters(_ values: [String: Int64]) throws(RegistryError) {
        try write { db in
            for (key, value) in values {
                try db.execute(
                    sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    arguments: [key, String(value)])
            }
        }
    }

    /// A number the mount keeps in `settings` (hits, misses), or 0.
    public func counter(_ key: String) throws(RegistryError) -> Int64 {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key]).flatMap { Int64($0) } ?? 0 }
    }

    /// Adds to counters kept in `settings`, in one transaction.
    public func addToCounters(_ amounts: [String: Int64]) throws(RegistryError) {
        guard amounts.values.contains(where: { $0 != 0 }) else { return }
        try write { db in
            for (key, amount) in amounts where amount != 0 {
                try db.execute(
                    sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT)",
                    arguments: [key, String(amount), amount])
            }
        }
    }
}
