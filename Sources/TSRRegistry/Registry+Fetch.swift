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
            if let prefix = item.prefix {
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

extension Registry {
    /// SQLite's `PRAGMA quick_check`: empty when the database is sound, else its complaints.
    public func quickCheck() throws(RegistryError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "PRAGMA quick_check").filter { $0 != "ok" } }
    }
}
