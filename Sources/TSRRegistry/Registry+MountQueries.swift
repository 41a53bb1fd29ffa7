import Foundation
import GRDB
import TSRStore

/// What the mount asks the registry for one path or one directory at a time, instead of reading
/// everything into a snapshot (docs/ARCHITECTURE.md, "Large registries"). Every answer uses an
/// index: `aliases(folder, path)` for names and ranges of names under a directory.
public protocol MountQueries: Sendable {
    /// Names of `folder` (every folder when nil) at `prefix` or under `prefix/` ("" for all), in
    /// folder and path order.
    func mountEntries(folder: String?, under prefix: String) throws(RegistryError) -> [MountEntry]
    /// The name `path` of `folder`. Folder views show no base or creator: `baseModel` and
    /// `creator` are left nil.
    func mountEntry(folder: String, path: String) throws(RegistryError) -> MountEntry?
    /// What a directory of a folder view needs without listing it (names strictly under `prefix/`).
    func directoryFacts(folder: String, under prefix: String) throws(RegistryError) -> DirectoryFacts
    /// Whether any name lies strictly under `prefix/` (one index probe).
    func mountHasNames(folder: String, under prefix: String) throws(RegistryError) -> Bool
    /// The folders that hold at least one name.
    func mountFolders() throws(RegistryError) -> [String]
    /// Whether `folder` holds at least one name (one index probe, unlike `mountFolders`).
    func mountHasFolder(_ folder: String) throws(RegistryError) -> Bool
    /// Removals of names of `folder` (every folder when nil) at `prefix` or under `prefix/`.
    func mountTombstones(folder: String?, under prefix: String) throws(RegistryError) -> [MountTombstone]
    /// The blob of a digest, unless quarantined.
    func mountBlob(_ digest: Digest) throws(RegistryError) -> MountBlob?
    /// Every blob that is not quarantined, in digest order.
    func mountBlobs() throws(RegistryError) -> [MountBlob]
    /// Entries of every workflow whose blob is not quarantined.
    func mountWorkflowEntries() throws(RegistryError) -> [MountWorkflowEntry]
    /// The names directly in a directory of `folder` (not in its subdirectories), in path order;
    /// like `mountEntry`, without base or creator.
    func mountChildren(folder: String, under prefix: String) throws(RegistryError) -> [MountEntry]
    /// What the top directory of by-base/ (`creator` false) or by-creator/ needs: the bases (or
    /// creators) of every name, as stored (nil: unknown), and the newest change of any name.
    func viewFacts(creator: Bool) throws(RegistryError) -> ViewFacts
    /// The newest removal of any name (or workflow).
    func newestRemoval() throws(RegistryError) -> Date?
    /// Names whose base model (`creator` false) or creator is one of `values` (nil: unknown), of
    /// `folder` (every folder when nil) at `prefix` or under `prefix/`, in folder and path order;
    /// with base and creator.
    func mountViewEntries(creator: Bool, values: [String?], folder: String?, under prefix: String) throws(RegistryError) -> [MountEntry]
    /// The names of the workflows.
    func mountWorkflowNames() throws(RegistryError) -> [String]
    /// Entries of the workflows named, whose blob is not quarantined.
    func mountWorkflowEntries(named names: [String]) throws(RegistryError) -> [MountWorkflowEntry]
    /// When the newest blob that is not quarantined was first recorded.
    func newestBlob() throws(RegistryError) -> Date?
}

/// The top of by-base/ or by-creator/ without reading every name: the distinct values come from
/// the blobs that have names (a name's base and creator are its blob's).
public struct ViewFacts: Sendable, Equatable {
    public var values: [String?]
    public var newestUpdate: Date?
    public init(values: [String?], newestUpdate: Date?) {
        self.values = values
        self.newestUpdate = newestUpdate
    }
}

/// A row of the change log (`mount_changes`): a name that appeared, changed or left (folder and
/// path), a blob whose state or size changed (sha256 only), or neither: CivitAI data or workflows
/// changed, which the read-only views derive from.
public struct MountChange: Sendable, Equatable {
    public var seq: Int64
    public var folder: String?
    public var path: String?
    public var sha256: String?
    public init(seq: Int64, folder: String?, path: String?, sha256: String?) {
        self.seq = seq
        self.folder = folder
        self.path = path
        self.sha256 = sha256
    }
}

/// The change log after a given row, and whether it is complete (rows older than
/// `Registry.changeLogLifetime` are pruned: a reader that fell that far behind must refresh
/// everything it knows).
public struct MountChanges: Sendable {
    public var generation: Int64
    public var changes: [MountChange]
    /// The newest row's seq (the `after` given when there is none).
    public var latest: Int64
    public var complete: Bool
}

/// A directory of a folder view, from aggregate queries: whether names lie under it, the newest
/// change under it (a name's update or a removal), and the names of its subdirectories.
public struct DirectoryFacts: Sendable, Equatable {
    public var hasNames: Bool
    public var newestUpdate: Date?
    public var newestRemoval: Date?
    public var subdirectories: [String]

    public init(hasNames: Bool, newestUpdate: Date?, newestRemoval: Date?, subdirectories: [String]) {
        self.hasNames = hasNames
        self.newestUpdate = newestUpdate
        self.newestRemoval = newestRemoval
        self.subdirectories = subdirectories
    }
}

extension Registry: MountQueries {
    /// How long change-log rows are kept.
    public static let changeLogLifetime: TimeInterval = 3600

    /// The newest change-log row and the generation, for a mount starting to follow changes.
    public func mountChangesStart() throws(RegistryError) -> (generation: Int64, latest: Int64) {
        try read { db in
            let generation = try Int64.fetchOne(db, sql: "SELECT generation FROM registry_generation WHERE id = 1") ?? 0
            let latest = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'mount_changes'") ?? 0
            return (generation, latest)
        }
    }

    /// The change-log rows after `seq`, read in one transaction with the generation. More than
    /// `limit` rows (a large import) are not read: the answer is incomplete, and the reader
    /// refreshes everything it knows instead.
    public func mountChanges(after seq: Int64, limit: Int = 10_000) throws(RegistryError) -> MountChanges {
        try read { db in
            let generation = try Int64.fetchOne(db, sql: "SELECT generation FROM registry_generation WHERE id = 1") ?? 0
            let latest = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'mount_changes'") ?? 0
            if latest - seq > Int64(limit) {
                return MountChanges(generation: generation, changes: [], latest: latest, complete: false)
            }
            let changes = try Row.fetchAll(
                db, sql: "SELECT seq, folder, path, sha256 FROM mount_changes WHERE seq > ? ORDER BY seq", arguments: [seq]
            ).map { MountChange(seq: $0[0], folder: $0[1], path: $0[2], sha256: $0[3]) }
            // Seqs are never reused and have no gaps (AUTOINCREMENT, rolled-back rows included).
            let complete = Int64(changes.count) == max(latest - seq, 0)
            return MountChanges(generation: generation, changes: changes, latest: max(latest, seq), complete: complete)
        }
    }

    /// Drops change-log rows older than `changeLogLifetime`.
    public func pruneMountChanges() throws(RegistryError) {
        let cutoff = Date().addingTimeInterval(-Self.changeLogLifetime)
        try write { db in
            try db.execute(sql: "DELETE FROM mount_changes WHERE at < strftime('%Y-%m-%d %H:%M:%f', ?, 'unixepoch')", arguments: [cutoff.timeIntervalSince1970])
        }
    }

    /// The columns of a `MountEntry`, as `mountSnapshot` reads them.
    static let mountEntryColumns = """
        SELECT a.id, a.folder, a.path, a.sha256, a.updated_at, b.size, b.state,
               COALESCE((\(linkedVersion("mv.base_model"))), b.base_model) AS base_model,
               (\(linkedVersion("c.username"))) AS creator
        FROM aliases a JOIN blobs b ON b.sha256 = a.sha256
        """

    /// The same columns for the folder views, without the CivitAI subqueries they do not show;
    /// `aliases` may name the index to read it by.
    static func folderEntryColumns(aliases: String = "aliases a") -> String {
        """
        SELECT a.id, a.folder, a.path, a.sha256, a.updated_at, b.size, b.state, NULL AS base_model, NULL AS creator
        FROM \(aliases) JOIN blobs b ON b.sha256 = a.sha256
        """
    }

    static let mountBlobsSQL = "SELECT sha256, size, state, created_at FROM blobs WHERE state != 'quarantined' ORDER BY sha256"
    static let mountWorkflowEntriesSQL = workflowEntriesSQL(named: "")

    static func workflowEntriesSQL(named filter: String) -> String {
        """
        SELECT w.name AS workflow, e.folder, e.path, e.sha256, b.size, b.state, w.updated_at
        FROM workflow_entries e JOIN workflows w ON w.id = e.workflow_id JOIN blobs b ON b.sha256 = e.sha256
        WHERE b.state != 'quarantined'\(filter)
        ORDER BY w.name, e.folder, e.path
        """
    }

    /// A `WHERE` clause for `prefix` and everything under it, on an index of (folder, path):
    /// '0' is the byte after '/', so `path >= 'p/' AND path < 'p0'` is exactly the names under p/.
    /// With `strictly`, only names under `prefix/`, not `prefix` itself.
    static func under(_ folder: String?, _ prefix: String, table: String, strictly: Bool = false) -> (String, StatementArguments) {
        var clauses: [String] = []
        var arguments: StatementArguments = []
        if let folder {
            clauses.append("\(table).folder = ?")
            arguments += [folder]
        }
        if !prefix.isEmpty && strictly {
            clauses.append("\(table).path >= ? AND \(table).path < ?")
            arguments += [prefix + "/", prefix + "0"]
        } else if !prefix.isEmpty {
            clauses.append("(\(table).path = ? OR (\(table).path >= ? AND \(table).path < ?))")
            arguments += [prefix, prefix + "/", prefix + "0"]
        }
        return (clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND "), arguments)
    }

    public func mountEntries(folder: String?, under prefix: String) throws(RegistryError) -> [MountEntry] {
        let (clause, arguments) = Self.under(folder, prefix, table: "a")
        return try read { db in
            try MountEntry.fetchAll(db, sql: "\(Self.mountEntryColumns) \(clause) ORDER BY a.folder, a.path", arguments: arguments)
        }
    }

    public func mountEntry(folder: String, path: String) throws(RegistryError) -> MountEntry? {
        try read { db in
            try MountEntry.fetchOne(db.cachedStatement(sql: "\(Self.folderEntryColumns()) WHERE a.folder = ? AND a.path = ?"), arguments: [folder, path])
        }
    }

    /// The directory a name is in, with its trailing '/' ('' at the top): the expression of the
    /// `aliases_directory_updated` index, written exactly as there so that SQLite uses it.
    static let directoryOfPath = "rtrim(path, replace(path, '/', ''))"

    /// The directories names are in at or below a directory (bounds `?2` ≤ d < `?3`; without
    /// `?3` for a folder's top), each with its newest change: the index is walked from one
    /// directory to the next (a probe per directory, never a row per name), and a directory's
    /// newest change is the last entry of its range.
    static let directoriesBelowSQL = directoriesSQL(upper: " AND \(directoryOfPath) < ?3")
    static let directoriesOfFolderSQL = directoriesSQL(upper: "")

    private static func directoriesSQL(upper: String) -> String {
        let d = directoryOfPath
        return """
            WITH RECURSIVE dirs(dir) AS (
                SELECT (SELECT min(\(d)) FROM aliases WHERE folder = ?1 AND \(d) >= ?2\(upper))
                UNION ALL
                SELECT (SELECT min(\(d)) FROM aliases WHERE folder = ?1 AND \(d) > dirs.dir\(upper)) FROM dirs WHERE dirs.dir IS NOT NULL
            )
            SELECT dir, (SELECT max(updated_at) FROM aliases WHERE folder = ?1 AND \(d) = dirs.dir) FROM dirs WHERE dir IS NOT NULL
            """
    }

    public func directoryFacts(folder: String, under prefix: String) throws(RegistryError) -> DirectoryFacts {
        let (tombstoneClause, tombstoneArguments) = Self.under(folder, prefix, table: "t", strictly: true)
        let directories: (String, StatementArguments) = prefix.isEmpty
            ? (Self.directoriesOfFolderSQL, [folder, ""])
            : (Self.directoriesBelowSQL, [folder, prefix + "/", prefix + "0"])
        return try read { db in
            let skip = prefix.isEmpty ? 0 : prefix.count + 1
            var subdirectories = Set<String>()
            var newest: Date?
            var any = false
            for row in try Row.fetchAll(db.cachedStatement(sql: directories.0), arguments: directories.1) {
                any = true
                let directory: String = row[0]
                if let date: Date = row[1] { newest = max(newest ?? date, date) }
                if let first = directory.dropFirst(skip).split(separator: "/").first { subdirectories.insert(String(first)) }
            }
            let removal = try Date.fetchOne(
                db.cachedStatement(sql: "SELECT max(t.deleted_at) FROM alias_tombstones t \(tombstoneClause)"), arguments: tombstoneArguments)
            return DirectoryFacts(hasNames: any, newestUpdate: newest, newestRemoval: removal, subdirectories: subdirectories.sorted())
        }
    }

    public func mountHasNames(folder: String, under prefix: String) throws(RegistryError) -> Bool {
        let (clause, arguments) = Self.under(folder, prefix, table: "a", strictly: true)
        return try read { db in
            try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM aliases a \(clause))"), arguments: arguments) ?? false
        }
    }

    public func mountFolders() throws(RegistryError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT DISTINCT folder FROM aliases ORDER BY folder") }
    }

    public func mountHasFolder(_ folder: String) throws(RegistryError) -> Bool {
        try read { db in try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM aliases WHERE folder = ?)"), arguments: [folder]) ?? false }
    }

    public func mountTombstones(folder: String?, under prefix: String) throws(RegistryError) -> [MountTombstone] {
        let (clause, arguments) = Self.under(folder, prefix, table: "t")
        return try read { db in
            try Row.fetchAll(db, sql: "SELECT t.folder, t.path, t.deleted_at FROM alias_tombstones t \(clause)", arguments: arguments).map {
                MountTombstone(folder: $0[0], path: $0[1], deletedAt: $0[2])
            }
        }
    }

    public func mountBlob(_ digest: Digest) throws(RegistryError) -> MountBlob? {
        try read { db in
            try MountBlob.fetchOne(
                db, sql: "SELECT sha256, size, state, created_at FROM blobs WHERE sha256 = ? AND state != 'quarantined'", arguments: [digest.rawValue])
        }
    }

    public func mountBlobs() throws(RegistryError) -> [MountBlob] {
        try read { db in
            try MountBlob.fetchAll(db, sql: Self.mountBlobsSQL)
        }
    }

    public func mountWorkflowEntries() throws(RegistryError) -> [MountWorkflowEntry] {
        try read { db in
            try MountWorkflowEntry.fetchAll(db, sql: Self.mountWorkflowEntriesSQL)
        }
    }

    public func mountChildren(folder: String, under prefix: String) throws(RegistryError) -> [MountEntry] {
        // One range of the directory index: the names directly in it, not those below. Named,
        // because for the ORDER BY the planner would rather walk the whole folder in path order.
        let columns = Self.folderEntryColumns(aliases: "aliases a INDEXED BY aliases_directory_updated")
        return try read { db in
            try MountEntry.fetchAll(
                db.cachedStatement(sql: "\(columns) WHERE a.folder = ? AND \(Self.directoryOfPath) = ? ORDER BY a.path"),
                arguments: [folder, prefix.isEmpty ? "" : prefix + "/"])
        }
    }

    public func viewFacts(creator: Bool) throws(RegistryError) -> ViewFacts {
        let value = creator ? "(\(Self.linkedVersion("c.username", digest: "b.sha256")))" : "COALESCE((\(Self.linkedVersion("mv.base_model", digest: "b.sha256"))), b.base_model)"
        return try read { db in
            let values = try String?.fetchAll(
                db, sql: "SELECT DISTINCT \(value) FROM blobs b WHERE EXISTS (SELECT 1 FROM aliases a WHERE a.sha256 = b.sha256)")
            let newest = try Date.fetchOne(db, sql: "SELECT max(updated_at) FROM aliases")
            return ViewFacts(values: values, newestUpdate: newest)
        }
    }

    public func newestRemoval() throws(RegistryError) -> Date? {
        try read { db in try Date.fetchOne(db, sql: "SELECT max(deleted_at) FROM alias_tombstones") }
    }

    public func mountViewEntries(creator: Bool, values: [String?], folder: String?, under prefix: String) throws(RegistryError) -> [MountEntry] {
        let (clause, arguments) = Self.under(folder, prefix, table: "a")
        let column = creator ? "v.creator" : "v.base_model"
        let known = values.compactMap { $0 }
        var filters: [String] = []
        var all = arguments
        if !known.isEmpty {
            filters.append("\(column) IN (\(Array(repeating: "?", count: known.count).joined(separator: ", ")))")
            all += StatementArguments(known)
        }
        if values.contains(where: { $0 == nil }) { filters.append("\(column) IS NULL") }
        guard !filters.isEmpty else { return [] }
        // The folder and path range by the index; the base (creator) is derived per blob, so it
        // is filtered over that range.
        let sql = "SELECT * FROM (\(Self.mountEntryColumns) \(clause)) v WHERE \(filters.joined(separator: " OR ")) ORDER BY v.folder, v.path"
        return try read { db in try MountEntry.fetchAll(db, sql: sql, arguments: all) }
    }

    public func mountWorkflowNames() throws(RegistryError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT name FROM workflows ORDER BY name") }
    }

    public func mountWorkflowEntries(named names: [String]) throws(RegistryError) -> [MountWorkflowEntry] {
        guard !names.isEmpty else { return [] }
        let sql = Self.workflowEntriesSQL(named: " AND w.name IN (\(Array(repeating: "?", count: names.count).joined(separator: ", ")))")
        return try read { db in try MountWorkflowEntry.fetchAll(db, sql: sql, arguments: StatementArguments(names)) }
    }

    public func newestBlob() throws(RegistryError) -> Date? {
        try read { db in try Date.fetchOne(db, sql: "SELECT max(created_at) FROM blobs WHERE state != 'quarantined'") }
    }

    /// Blobs that failed verification.
    public func quarantinedDigests() throws(RegistryError) -> [Digest] {
        try read { db in try Digest.fetchAll(db, sql: "SELECT sha256 FROM blobs WHERE state = 'quarantined'") }
    }
}
