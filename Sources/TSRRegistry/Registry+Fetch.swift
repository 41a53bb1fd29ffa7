import Foundation
import GRDB
import TSRStore

/// A row of `partial_downloads`: where a stopped download left off.
public struct PartialDownloadRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "partial_downloads"
    /// The resumable transaction's key (`tmp/partial-<key>`).
    public var key: String
    /// The URL the download started from, without secrets.
    public var url: String
    /// ETag or Last-Modified of the bytes held, for If-Range.
    public var validator: String?
    public var totalSize: Int64?
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case key, url, validator
        case totalSize = "total_size", updatedAt = "updated_at"
    }

    public init(key: String, url: String, validator: String?, totalSize: Int64?, updatedAt: Date = Date()) {
        self.key = key
        self.url = url
        self.validator = validator
        self.totalSize = totalSize
        self.updatedAt = updatedAt
    }
}

/// A file known by its source before its bytes are here (`tsr add`, a workflow dependency).
public struct RemoteRegistration: Sendable {
    public var blob: BlobRecord
    public var folder: String
    public var path: String
    /// Repoint the name when it names other content.
    public var replace: Bool
    /// Where the bytes can be fetched (no secrets in it) and what kind of source that is.
    public var url: String
    public var kind: String
    /// The first bytes (the safetensors header), for reads before the download.
    public var prefix: [UInt8]?

    public init(blob: BlobRecord, folder: String, path: String, replace: Bool, url: String, kind: String, prefix: [UInt8]?) {
        self.blob = blob
        self.folder = folder
        self.path = path
        self.replace = replace
        self.url = url
        self.kind = kind
        self.prefix = prefix
    }
}

extension Registry {
    // MARK: Sources

    /// Where a blob's bytes can be fetched from, oldest first.
    public func sources(of digest: Digest) throws(RegistryError) -> [SourceRecord] {
        try read { db in
            try SourceRecord.fetchAll(db, sql: "SELECT * FROM sources WHERE sha256 = ? ORDER BY id", arguments: [digest])
        }
    }

    /// The blob a source URL was recorded for, if any.
    public func blob(sourceURL url: String) throws(RegistryError) -> Digest? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT sha256 FROM sources WHERE url = ? ORDER BY id LIMIT 1", arguments: [url]).flatMap(Digest.init(rawValue:))
        }
    }

    /// Records a source of a registered blob (no-op when it is known already).
    public func addSource(_ digest: Digest, url: String, kind: String) throws(RegistryError) {
        try write { db in try Self.addSource(digest, url: url, kind: kind, db) }
    }

    static func addSource(_ digest: Digest, url: String, kind: String, _ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO sources (sha256, url, kind, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(sha256, url) DO NOTHING",
            arguments: [digest, url, kind, Date()])
    }

    /// Registers a remote file in one transaction: blob (state remote unless present already),
    /// its name, its source and its prefix. Returns what happened to the name; on `.conflict`
    /// nothing is changed.
    @discardableResult
    public func registerRemote(_ item: RemoteRegistration) throws(RegistryError) -> AliasChange {
        try write { db in
            if let existing = try AliasRecord.fetchOne(
                db, sql: "SELECT * FROM aliases WHERE folder = ? AND path = ?", arguments: [item.folder, item.path]),
                existing.sha256 != item.blob.sha256, !item.replace
            {
                return .conflict(existing: existing.sha256)
            }
            try Self.upsertBlob(item.blob, db)
            try Self.addSource(item.blob.sha256, url: item.url, kind: item.kind, db)
            if item.blob.state == .present {
                // Nothing to peek at before a download that is not needed.
                try db.execute(sql: "DELETE FROM blob_prefixes WHERE sha256 = ?", arguments: [item.blob.sha256])
            } else if let prefix = item.prefix {
                try db.execute(
                    sql: "INSERT INTO blob_prefixes (sha256, bytes) VALUES (?, ?) ON CONFLICT(sha256) DO UPDATE SET bytes = excluded.bytes",
                    arguments: [item.blob.sha256, Data(prefix)])
            }
            return try Self.addAlias(folder: item.folder, path: item.path, sha256: item.blob.sha256, replace: item.replace, db)
        }
    }

    /// Marks a downloaded blob present, filling in header facts read from its bytes.
    public func markDownloaded(_ record: BlobRecord) throws(RegistryError) {
        try write { db in
            try Self.upsertBlob(record, db)
            try db.execute(sql: "DELETE FROM blob_prefixes WHERE sha256 = ?", arguments: [record.sha256])
            try db.execute(sql: "DELETE FROM fetch_failures WHERE sha256 = ?", arguments: [record.sha256])
        }
    }

    // MARK: Partial downloads

    public func partialDownload(_ key: String) throws(RegistryError) -> PartialDownloadRecord? {
        try read { db in try PartialDownloadRecord.fetchOne(db, key: key) }
    }

    public func savePartialDownload(_ record: PartialDownloadRecord) throws(RegistryError) {
        try write { db in try record.save(db) }
    }

    public func removePartialDownload(_ key: String) throws(RegistryError) {
        try write { db in _ = try PartialDownloadRecord.deleteOne(db, key: key) }
    }
}

/// Why the last download of a blob failed, and when the mount tries again.
public struct FetchFailure: Sendable, Equatable {
    public var reason: String
    public var attempts: Int
    public var failedAt: Date
    public var nextTryAt: Date

    /// "failed: <reason>, next try at <time>" (the time in UTC, to the second).
    public var summary: String {
        "failed: \(reason), next try at \(Self.format(nextTryAt))"
    }

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// How long to wait after `attempts` failures: `base` doubled per attempt, at most `cap`.
    public static func backoff(attempts: Int, base: TimeInterval, cap: TimeInterval) -> TimeInterval {
        min(cap, base * pow(2, Double(max(0, min(attempts - 1, 30)))))
    }
}

extension Registry {
    // MARK: Failed downloads

    /// Records a failed download of `digest`: one more attempt, the next try after the back-off.
    @discardableResult
    public func recordFetchFailure(
        _ digest: Digest, reason: String, now: Date = Date(), base: TimeInterval = 60, cap: TimeInterval = 3600
    ) throws(RegistryError) -> FetchFailure {
        try write { db in
            let attempts = (try Int.fetchOne(db, sql: "SELECT attempts FROM fetch_failures WHERE sha256 = ?", arguments: [digest]) ?? 0) + 1
            let next = now.addingTimeInterval(FetchFailure.backoff(attempts: attempts, base: base, cap: cap))
            try db.execute(
                sql: """
                    INSERT INTO fetch_failures (sha256, reason, attempts, failed_at, next_try_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(sha256) DO UPDATE SET reason = excluded.reason, attempts = excluded.attempts,
                        failed_at = excluded.failed_at, next_try_at = excluded.next_try_at
                    """,
                arguments: [digest, reason, attempts, now, next])
            return FetchFailure(reason: reason, attempts: attempts, failedAt: now, nextTryAt: next)
        }
    }

    /// The last failure of `digest`'s download, if it has not arrived since.
    public func fetchFailure(_ digest: Digest) throws(RegistryError) -> FetchFailure? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT reason, attempts, failed_at, next_try_at FROM fetch_failures WHERE sha256 = ?", arguments: [digest])
                .map { FetchFailure(reason: $0[0], attempts: $0[1], failedAt: $0[2], nextTryAt: $0[3]) }
        }
    }

    /// Every recorded failure, by digest.
    public func fetchFailures() throws(RegistryError) -> [Digest: FetchFailure] {
        try read { db in
            var all: [Digest: FetchFailure] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sha256, reason, attempts, failed_at, next_try_at FROM fetch_failures") {
                guard let digest = Digest(rawValue: row[0]) else { continue }
                all[digest] = FetchFailure(reason: row[1], attempts: row[2], failedAt: row[3], nextTryAt: row[4])
            }
            return all
        }
    }

    /// Tries again at once: `tsr pull` of the name forgets its failure.
    public func clearFetchFailure(_ digest: Digest) throws(RegistryError) {
        try write { db in try db.execute(sql: "DELETE FROM fetch_failures WHERE sha256 = ?", arguments: [digest]) }
    }

    /// Ends every wait (a mount starting tries each failed download again at its first read); the
    /// reasons and attempt counts stay.
    public func retryFetchFailuresNow(_ now: Date = Date()) throws(RegistryError) {
        try write { db in try db.execute(sql: "UPDATE fetch_failures SET next_try_at = ? WHERE next_try_at > ?", arguments: [now, now]) }
    }

    /// Drops the stored first bytes of a blob (its download failed verification: they may be
    /// wrong too; the next registration fetches and checks them again).
    public func dropPrefix(_ digest: Digest) throws(RegistryError) {
        try write { db in try db.execute(sql: "DELETE FROM blob_prefixes WHERE sha256 = ?", arguments: [digest]) }
    }
}

extension Registry {
    /// SQLite's `PRAGMA quick_check`: empty when the database is sound, else its complaints.
    public func quickCheck() throws(RegistryError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "PRAGMA quick_check").filter { $0 != "ok" } }
    }
}
