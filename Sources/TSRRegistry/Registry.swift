import Foundation
import GRDB
import TSRStore

/// Everything that can go wrong in the registry.
public enum RegistryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// SQLite failed (message includes SQLite's own words).
    case database(String)
    /// The disk holding the registry is full (SQLITE_FULL): nothing was changed.
    case full(String)
    /// Another process held the registry longer than the busy timeout (SQLITE_BUSY, SQLITE_LOCKED).
    case busy(String)
    /// The alias exists and points at other content.
    case aliasExists(name: String, sha256: Digest)
    /// No alias by that name.
    case aliasMissing(String)
    /// No blob with this digest is registered.
    case blobUnknown(Digest)
    /// No workflow by that name.
    case workflowMissing(String)
    /// A workflow by that name exists already.
    case workflowExists(String)

    public var description: String {
        switch self {
        case let .database(message): return "registry: \(message)"
        case let .full(message): return "registry: no space left on the disk that holds it (\(message)); free space and try again — nothing was changed"
        case let .busy(message): return "registry: another tsr process kept it locked (\(message)); try again"
        case let .aliasExists(name, sha256): return "\(name) already exists (it is \(sha256.short)…); remove it first or pass --force"
        case let .aliasMissing(name): return "no alias \(name)"
        case let .blobUnknown(digest): return "no blob \(digest) in the registry"
        case let .workflowMissing(name): return "no workflow \(name) (see `tsr workflow list`)"
        case let .workflowExists(name): return "a workflow \(name) exists already; pass --force to replace it or --name to choose another name"
        }
    }
}

/// What happened to an alias when a name was registered.
public enum AliasChange: Sendable, Equatable {
    case created
    /// The alias already named this content.
    case unchanged
    /// The alias now names new content; `previous` was its old content.
    case replaced(previous: Digest)
    /// The alias names other content and replacing was not allowed.
    case conflict(existing: Digest)
}

/// One file's facts to record: its blob, optionally a name for it and the file it came from.
public struct FileRegistration: Sendable {
    /// The blob to record; nil for files registered in place (`tsr db scan`).
    public var blob: BlobRecord?
    public var alias: (folder: String, path: String)?
    /// Replace an alias that names other content (the imported file is newer truth).
    public var replaceAlias: Bool
    public var localFile: LocalFileRecord?
    /// Header metadata kept per local file (`safetensor_metadata`), as the seed's `db scan` did.
    public var localMetadata: [String: String]

    public init(blob: BlobRecord?, alias: (folder: String, path: String)? = nil, replaceAlias: Bool = true,
                localFile: LocalFileRecord? = nil, localMetadata: [String: String] = [:]) {
        self.blob = blob
        self.alias = alias
        self.replaceAlias = replaceAlias
        self.localFile = localFile
        self.localMetadata = localMetadata
    }
}

/// An alias with its blob's facts, as `tsr list` shows it.
public struct AliasListing: Sendable, Equatable, Codable, FetchableRecord {
    public var id: Int64
    public var folder: String
    public var path: String
    public var sha256: Digest
    public var size: Int64
    public var state: BlobState
    public var baseModel: String?
    /// Never evicted (tsr pin).
    public var pinned: Bool
    /// Not here because the bounded cache evicted it (fetched again on the next read).
    public var evicted: Bool

    enum CodingKeys: String, CodingKey {
        case id, folder, path, sha256, size, state, pinned, evicted
        case baseModel = "base_model"
    }
}

/// Totals for `tsr stats`.
public struct RegistryStats: Sendable, Equatable, Codable {
    public struct Folder: Sendable, Equatable, Codable {
        public var folder: String
        public var aliases: Int
        public var bytes: Int64
    }
    /// Blobs whose bytes are in the store.
    public var blobs: Int
    /// Blobs registered but not downloaded.
    public var remoteBlobs: Int
    public var quarantinedBlobs: Int
    public var aliases: Int
    /// Bytes of present blobs: what the store occupies.
    public var bytesStored: Int64
    /// Bytes all aliases of present blobs would take as separate files, minus bytes stored.
    public var bytesSaved: Int64
    public var folders: [Folder]

    enum CodingKeys: String, CodingKey {
        case blobs, aliases, folders
        case remoteBlobs = "remote_blobs", quarantinedBlobs = "quarantined_blobs"
        case bytesStored = "bytes_stored", bytesSaved = "bytes_saved"
    }
}

/// The SQLite registry of one home: blobs, their names, scanned files, sources and the CivitAI
/// cache. The only place SQL exists. One `DatabasePool` (WAL) per process; safe across processes.
public final class Registry: Sendable {
    /// A connection pool (WAL); or, on a disk too full to open the pool, one read-only
    /// connection that treats the file as unchanging (`Registry(readOnlyAt:)`).
    let pool: any DatabaseWriter
    /// The database file.
    public let path: String

    /// Opens (creating and migrating if needed) the registry at `path`.
    public init(path: String) throws(RegistryError) {
        self.path = path
        readOnly = false
        var config = Configuration()
        // Another tsr process (an import, a mount) may hold the write lock for a moment.
        config.busyMode = .timeout(30)
        config.label = "tensors-registry"
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try Migrations.migrator.migrate(pool)
        } catch {
            throw Self.wrap(error, path: path)
        }
    }

    /// Opens an existing registry for reading only, as an immutable file: for read-only work
    /// (`tsr verify`, `tsr list`) on a disk so full that SQLite cannot grow the WAL's shared
    /// memory file a normal open needs. Every write fails with `.full`.
    public init(readOnlyAt path: String) throws(RegistryError) {
        self.path = path
        var config = Configuration()
        config.readonly = true
        config.label = "tensors-registry-read-only"
        readOnly = true
        do {
            let escaped = path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path
            pool = try DatabaseQueue(path: "file:\(escaped)?immutable=1", configuration: config)
            _ = try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM blobs") }
        } catch {
            throw Self.wrap(error, path: path)
        }
    }

    /// True for a registry opened with `init(readOnlyAt:)`.
    public let readOnly: Bool

    /// Names of the migrations applied, in order.
    public func appliedMigrations() throws(RegistryError) -> [String] {
        try read { db in try Migrations.migrator.appliedMigrations(db) }
    }

    func read<T>(_ body: (Database) throws -> T) throws(RegistryError) -> T {
        do { return try pool.read(body) } catch { throw Self.wrap(error, path: path) }
    }

    func write<T>(_ body: (Database) throws -> T) throws(RegistryError) -> T {
        if readOnly { throw .full("the registry is open read-only because its disk is full") }
        do { return try pool.write(body) } catch { throw Self.wrap(error, path: path) }
    }

    /// SQLite's error as one a caller can act on: a full disk (SQLITE_FULL, or an I/O error while
    /// the filesystem holding `path` has no space left — SQLite reports a WAL or shared-memory file
    /// it cannot grow that way) and a lock held too long keep their meaning.
    static func wrap(_ error: any Error, path: String? = nil) -> RegistryError {
        if let error = error as? RegistryError { return error }
        guard let error = error as? DatabaseError else { return .database("\(error)") }
        let message = error.message ?? error.description
        switch error.resultCode {
        case .SQLITE_FULL: return .full(message)
        case .SQLITE_BUSY, .SQLITE_LOCKED: return .busy(message)
        case .SQLITE_IOERR where path.map(Self.isOutOfSpace) == true: return .full(message)
        case .SQLITE_CANTOPEN where path.map(Self.isOutOfSpace) == true: return .full(message)
        default: return .database(message)
        }
    }

    /// True when the filesystem holding `path` has less than 64 KiB left for this user.
    static func isOutOfSpace(_ path: String) -> Bool {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        var space = statvfs()
        guard statvfs(directory.isEmpty ? "." : directory, &space) == 0 else { return false }
        return UInt64(space.f_bavail) * UInt64(space.f_frsize) < 64 << 10
    }

    // MARK: Blobs

    /// The blob row, if registered.
    public func blob(_ digest: Digest) throws(RegistryError) -> BlobRecord? {
        try read { db in try BlobRecord.fetchOne(db, key: digest.rawValue) }
    }

    /// Registered blobs whose SHA-256 starts with `prefix` (lower-case hex), at most `limit`.
    public func digests(startingWith prefix: String, limit: Int = 2) throws(RegistryError) -> [Digest] {
        try read { db in
            try Digest.fetchAll(
                db, sql: "SELECT sha256 FROM blobs WHERE sha256 >= ? AND sha256 < ? ORDER BY sha256 LIMIT ?",
                arguments: [prefix, prefix + "g", limit])
        }
    }

    /// All blobs, optionally only those in one state.
    public func blobs(state: BlobState? = nil) throws(RegistryError) -> [BlobRecord] {
        try read { db in
            if let state {
                return try BlobRecord.fetchAll(db, sql: "SELECT * FROM blobs WHERE state = ? ORDER BY sha256", arguments: [state])
            }
            return try BlobRecord.fetchAll(db, sql: "SELECT * FROM blobs ORDER BY sha256")
        }
    }

    /// Inserts a blob or, when it exists, merges: a present blob stays present, header facts fill in.
    public func upsertBlob(_ record: BlobRecord) throws(RegistryError) {
        try write { db in try Self.upsertBlob(record, db) }
    }

    static func upsertBlob(_ record: BlobRecord, _ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO blobs (sha256, size, state, verified_at, created_at, header_size, tensor_count, base_model, metadata_json)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(sha256) DO UPDATE SET
                    size = excluded.size,
                    state = CASE WHEN excluded.state = 'present' THEN 'present' ELSE blobs.state END,
                    verified_at = COALESCE(excluded.verified_at, blobs.verified_at),
                    header_size = COALESCE(excluded.header_size, blobs.header_size),
                    tensor_count = COALESCE(excluded.tensor_count, blobs.tensor_count),
                    base_model = COALESCE(excluded.base_model, blobs.base_model),
                    metadata_json = COALESCE(excluded.metadata_json, blobs.metadata_json)
                """,
            arguments: [
                record.sha256, record.size, record.state, record.verifiedAt, record.createdAt,
                record.headerSize, record.tensorCount, record.baseModel, record.metadataJSON,
            ])
    }

    /// Sets a blob's state.
    public func setState(_ digest: Digest, _ state: BlobState) throws(RegistryError) {
        try write { db in
            try db.execute(sql: "UPDATE blobs SET state = ? WHERE sha256 = ?", arguments: [state, digest])
            if db.changesCount == 0 { throw RegistryError.blobUnknown(digest) }
        }
    }

    /// Records a successful re-hash.
    public func markVerified(_ digest: Digest, at date: Date = Date()) throws(RegistryError) {
        try write { db in
            try db.execute(sql: "UPDATE blobs SET verified_at = ?, state = 'present' WHERE sha256 = ?", arguments: [date, digest])
        }
    }

    /// Blobs that no alias names.
    public func unreferencedBlobs() throws(RegistryError) -> [BlobRecord] {
        try read { db in
            try BlobRecord.fetchAll(
                db, sql: "SELECT * FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM aliases a WHERE a.sha256 = b.sha256) ORDER BY sha256")
        }
    }

    /// Deletes a blob row, unless an alias still names it (then false).
    @discardableResult
    public func deleteBlobIfUnreferenced(_ digest: Digest) throws(RegistryError) -> Bool {
        try write { db in
            try db.execute(
                sql: "DELETE FROM blobs WHERE sha256 = ? AND NOT EXISTS (SELECT 1 FROM aliases WHERE sha256 = ?)",
                arguments: [digest, digest])
            return db.changesCount > 0
        }
    }

    // MARK: Aliases

    /// The alias with this folder and path.
    public func alias(folder: String, path: String) throws(RegistryError) -> AliasRecord? {
        try read { db in
            try AliasRecord.fetchOne(db, sql: "SELECT * FROM aliases WHERE folder = ? AND path = ?", arguments: [folder, path])
        }
    }

    /// Every name of a blob.
    public func aliases(of digest: Digest) throws(RegistryError) -> [AliasRecord] {
        try read { db in
            try AliasRecord.fetchAll(db, sql: "SELECT * FROM aliases WHERE sha256 = ? ORDER BY folder, path", arguments: [digest])
        }
    }

    /// Names a registered blob. With `replace`, an alias naming other content is repointed.
    @discardableResult
    public func addAlias(folder: String, path: String, sha256: Digest, replace: Bool) throws(RegistryError) -> AliasChange {
        try write { db in
            guard try BlobRecord.exists(db, key: sha256.rawValue) else { throw RegistryError.blobUnknown(sha256) }
            return try Self.addAlias(folder: folder, path: path, sha256: sha256, replace: replace, db)
        }
    }

    static func addAlias(folder: String, path: String, sha256: Digest, replace: Bool, _ db: Database) throws -> AliasChange {
        let now = Date()
        if let existing = try AliasRecord.fetchOne(
            db, sql: "SELECT * FROM aliases WHERE folder = ? AND path = ?", arguments: [folder, path])
        {
            if existing.sha256 == sha256 { return .unchanged }
            guard replace else { return .conflict(existing: existing.sha256) }
            try db.execute(sql: "UPDATE aliases SET sha256 = ?, updated_at = ? WHERE id = ?", arguments: [sha256, now, existing.id])
            return .replaced(previous: existing.sha256)
        }
        var record = AliasRecord(folder: folder, path: path, sha256: sha256, createdAt: now, updatedAt: now)
        try record.insert(db)
        return .created
    }

    /// Removes an alias; the blob stays until `tsr gc`.
    @discardableResult
    public func removeAlias(folder: String, path: String) throws(RegistryError) -> AliasRecord {
        try write { db in
            guard let existing = try AliasRecord.fetchOne(
                db, sql: "SELECT * FROM aliases WHERE folder = ? AND path = ?", arguments: [folder, path])
            else { throw RegistryError.aliasMissing(folder + "/" + path) }
            try db.execute(sql: "DELETE FROM aliases WHERE id = ?", arguments: [existing.id])
            return existing
        }
    }

    /// Renames an alias, keeping its id. An existing target is replaced only with `replace`.
    public func moveAlias(from: (folder: String, path: String), to: (folder: String, path: String), replace: Bool) throws(RegistryError) {
        try write { db in
            guard let source = try AliasRecord.fetchOne(
                db, sql: "SELECT * FROM aliases WHERE folder = ? AND path = ?", arguments: [from.folder, from.path])
            else { throw RegistryError.aliasMissing(from.folder + "/" + from.path) }
            if from == to { return }
            if let target = try AliasRecord.fetchOne(
                db, sql: "SELECT * FROM aliases WHERE folder = ? AND path = ?", arguments: [to.folder, to.path])
            {
                guard replace else { throw RegistryError.aliasExists(name: target.name, sha256: target.sha256) }
                try db.execute(sql: "DELETE FROM aliases WHERE id = ?", arguments: [target.id])
            }
            try db.execute(
                sql: "UPDATE aliases SET folder = ?, path = ?, updated_at = ? WHERE id = ?",
                arguments: [to.folder, to.path, Date(), source.id])
        }
    }

    /// Aliases with their blob facts, ordered by folder and path.
    public func listing(folder: String? = nil, baseModel: String? = nil) throws(RegistryError) -> [AliasListing] {
        try read { db in
            var sql = """
                SELECT a.id, a.folder, a.path, a.sha256, b.size, b.state, b.base_model,
                       EXISTS(SELECT 1 FROM pins p WHERE p.sha256 = a.sha256) AS pinned,
                       (b.state = 'remote' AND EXISTS(SELECT 1 FROM evictions e WHERE e.sha256 = a.sha256)) AS evicted
                FROM aliases a JOIN blobs b ON b.sha256 = a.sha256
                """
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let folder {
                conditions.append("a.folder = ?")
                arguments += [folder]
            }
            if let baseModel {
                conditions.append("COALESCE(b.base_model, 'unknown') = ? COLLATE NOCASE")
                arguments += [baseModel]
            }
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY a.folder, a.path"
            return try AliasListing.fetchAll(db, sql: sql, arguments: arguments)
        }
    }

    // MARK: Local files and imports

    /// Every hashed file, keyed by path: the import and scan hash cache.
    public func localFilesByPath() throws(RegistryError) -> [String: LocalFileRecord] {
        try read { db in
            var out: [String: LocalFileRecord] = [:]
            for record in try LocalFileRecord.fetchAll(db) { out[record.filePath] = record }
            return out
        }
    }

    /// Forgets many files at once.
    public func deleteLocalFiles(paths: [String]) throws(RegistryError) {
        guard !paths.isEmpty else { return }
        try write { db in
            for path in paths { try db.execute(sql: "DELETE FROM local_files WHERE file_path = ?", arguments: [path]) }
        }
    }

    /// Records a batch of files in one transaction: blobs upserted, aliases created or repointed,
    /// local files and their metadata stored. Returns each item's alias change (nil without alias).
    public func register(_ items: [FileRegistration]) throws(RegistryError) -> [AliasChange?] {
        guard !items.isEmpty else { return [] }
        return try write { db in
            var changes: [AliasChange?] = []
            for item in items {
                if let blob = item.blob { try Self.upsertBlob(blob, db) }
                if let alias = item.alias, let blob = item.blob {
                    changes.append(try Self.addAlias(folder: alias.folder, path: alias.path, sha256: blob.sha256, replace: item.replaceAlias, db))
                } else {
                    changes.append(nil)
                }
                if var local = item.localFile {
                    try db.execute(sql: "DELETE FROM local_files WHERE file_path = ?", arguments: [local.filePath])
                    try local.insert(db)
                    for (key, value) in item.localMetadata {
                        try db.execute(
                            sql: "INSERT INTO safetensor_metadata (local_file_id, key, value) VALUES (?, ?, ?)",
                            arguments: [local.id, key, value])
                    }
                }
            }
            return changes
        }
    }

    /// Aliases, keyed by `folder/path`, with their digests (for import's unchanged check).
    public func aliasDigests() throws(RegistryError) -> [String: Digest] {
        try read { db in
            var out: [String: Digest] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT folder, path, sha256 FROM aliases")
            while let row = try rows.next() {
                let folder: String = row[0]
                let path: String = row[1]
                if let digest = Digest(rawValue: row[2]) { out[folder + "/" + path] = digest }
            }
            return out
        }
    }

    /// Digests of blobs in a state.
    public func digests(state: BlobState) throws(RegistryError) -> Set<Digest> {
        try read { db in
            Set(try String.fetchAll(db, sql: "SELECT sha256 FROM blobs WHERE state = ?", arguments: [state]).compactMap(Digest.init(rawValue:)))
        }
    }

    /// Header metadata stored for a scanned file.
    public func localMetadata(path: String) throws(RegistryError) -> [String: String] {
        try read { db in
            var out: [String: String] = [:]
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT m.key, m.value FROM safetensor_metadata m JOIN local_files f ON f.id = m.local_file_id WHERE f.file_path = ?",
                arguments: [path])
            for row in rows { out[row[0]] = row[1] }
            return out
        }
    }

    // MARK: Mount support

    /// Stores the first bytes of a blob (for reads before its download).
    public func setPrefix(_ digest: Digest, bytes: [UInt8]) throws(RegistryError) {
        try write { db in
            try db.execute(
                sql: "INSERT INTO blob_prefixes (sha256, bytes) VALUES (?, ?) ON CONFLICT(sha256) DO UPDATE SET bytes = excluded.bytes",
                arguments: [digest, Data(bytes)])
        }
    }

    /// The stored first bytes of a blob, if any.
    /// Whether a header region is stored for `digest` (without reading it).
    public func hasPrefix(_ digest: Digest) throws(RegistryError) -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM blob_prefixes WHERE sha256 = ?)", arguments: [digest]) ?? false }
    }

    public func prefix(_ digest: Digest) throws(RegistryError) -> [UInt8]? {
        try read { db in
            try Data.fetchOne(db, sql: "SELECT bytes FROM blob_prefixes WHERE sha256 = ?", arguments: [digest]).map { [UInt8]($0) }
        }
    }

    /// A counter every change to aliases or blobs bumps, whichever process makes it.
    public func generation() throws(RegistryError) -> Int64 {
        try read { db in try Int64.fetchOne(db, sql: "SELECT generation FROM registry_generation WHERE id = 1") ?? 0 }
    }

    /// Everything the mount shows, read in one transaction so it is consistent.
    public func mountSnapshot() throws(RegistryError) -> MountData {
        try read { db in
            let entries = try MountEntry.fetchAll(db, sql: "\(Self.mountEntryColumns) ORDER BY a.folder, a.path")
            let blobs = try MountBlob.fetchAll(db, sql: Self.mountBlobsSQL)
            let tombstones = try Row.fetchAll(db, sql: "SELECT folder, path, deleted_at FROM alias_tombstones").map {
                MountTombstone(folder: $0[0], path: $0[1], deletedAt: $0[2])
            }
            let workflowEntries = try MountWorkflowEntry.fetchAll(db, sql: Self.mountWorkflowEntriesSQL)
            let generation = try Int64.fetchOne(db, sql: "SELECT generation FROM registry_generation WHERE id = 1") ?? 0
            return MountData(generation: generation, entries: entries, blobs: blobs, tombstones: tombstones, workflowEntries: workflowEntries)
        }
    }

    /// A column of the CivitAI version an alias's SHA-256 belongs to (tsr db link / cache): an
    /// index lookup per alias (file_hashes(hash_type, hash_value)), so a large cache does not
    /// slow the mount's snapshots.
    static func linkedVersion(_ column: String, digest: String = "a.sha256") -> String {
        """
        SELECT \(column) FROM file_hashes fh JOIN version_files vf ON vf.id = fh.file_id JOIN model_versions mv ON mv.id = vf.version_id
        JOIN models m ON m.id = mv.model_id LEFT JOIN creators c ON c.id = m.creator_id
        WHERE fh.hash_type = 'SHA256' AND fh.hash_value = upper(\(digest))
        ORDER BY mv.version_index IS NULL, mv.version_index LIMIT 1
        """
    }

    /// Renames every alias under a directory of a folder view (a directory rename in the mount).
    /// Fails without changing anything when a target name exists and `replace` is false.
    public func moveAliases(fromFolder: String, prefix: String, toFolder: String, toPrefix: String, replace: Bool) throws(RegistryError) -> Int {
        try write { db in
            let sources = try AliasRecord.fetchAll(
                db, sql: "SELECT * FROM aliases WHERE folder = ? AND substr(path, 1, ?) = ?",
                arguments: [fromFolder, prefix.count + 1, prefix + "/"])
            for source in sources {
                let newPath = toPrefix + source.path.dropFirst(prefix.count)
                if let target = try AliasRecord.fetchOne(
                    db, sql: "SELECT * FROM aliases WHERE folder = ? AND path = ?", arguments: [toFolder, newPath]), target.id != source.id
                {
                    guard replace else { throw RegistryError.aliasExists(name: target.name, sha256: target.sha256) }
                    try db.execute(sql: "DELETE FROM aliases WHERE id = ?", arguments: [target.id])
                }
                try db.execute(
                    sql: "UPDATE aliases SET folder = ?, path = ?, updated_at = ? WHERE id = ?",
                    arguments: [toFolder, String(newPath), Date(), source.id])
            }
            return sources.count
        }
    }

    // MARK: Statistics

    /// Totals over blobs and aliases.
    public func stats() throws(RegistryError) -> RegistryStats {
        try read { db in
            let counts = try Row.fetchOne(
                db,
                sql: """
                    SELECT
                      (SELECT count(*) FROM blobs WHERE state = 'present'),
                      (SELECT count(*) FROM blobs WHERE state = 'remote'),
                      (SELECT count(*) FROM blobs WHERE state = 'quarantined'),
                      (SELECT count(*) FROM aliases),
                      (SELECT COALESCE(sum(size), 0) FROM blobs WHERE state = 'present'),
                      (SELECT COALESCE(sum(b.size), 0) FROM aliases a JOIN blobs b ON b.sha256 = a.sha256 WHERE b.state = 'present'),
                      (SELECT COALESCE(sum(size), 0) FROM blobs b WHERE state = 'present'
                         AND EXISTS (SELECT 1 FROM aliases a WHERE a.sha256 = b.sha256))
                    """)
            guard let counts else { throw RegistryError.database("statistics query returned no row") }
            let folders = try Row.fetchAll(
                db,
                sql: """
                    SELECT a.folder, count(*), COALESCE(sum(b.size), 0)
                    FROM aliases a JOIN blobs b ON b.sha256 = a.sha256
                    GROUP BY a.folder ORDER BY a.folder
                    """
            ).map { RegistryStats.Folder(folder: $0[0], aliases: $0[1], bytes: $0[2]) }
            let logical: Int64 = counts[5]
            let referenced: Int64 = counts[6]
            return RegistryStats(
                blobs: counts[0], remoteBlobs: counts[1], quarantinedBlobs: counts[2], aliases: counts[3],
                bytesStored: counts[4], bytesSaved: logical - referenced, folders: folders)
        }
    }

    /// Row counts of every table (for `tsr db stats` and tests).
    public func tableCounts() throws(RegistryError) -> [String: Int] {
        try read { db in
            let tables = try String.fetchAll(
                db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'grdb_%' ORDER BY name")
            var out: [String: Int] = [:]
            for table in tables {
                out[table] = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table.quotedDatabaseIdentifier)") ?? 0
            }
            return out
        }
    }

    /// Names of the views.
    public func viewNames() throws(RegistryError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name") }
    }
}
