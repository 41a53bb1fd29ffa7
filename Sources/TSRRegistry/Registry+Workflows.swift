import Foundation
import GRDB
import TSRStore

/// A row of `workflows`.
public struct WorkflowRecord: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "workflows"
    public var id: Int64?
    public var name: String
    /// seed | ui | api
    public var format: String
    public var createdAt: Date
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, name, format
        case createdAt = "created_at", updatedAt = "updated_at"
    }

    public init(name: String, format: String, now: Date = Date()) {
        self.name = name
        self.format = format
        createdAt = now
        updatedAt = now
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A row of `workflow_entries`: one model a workflow needs.
public struct WorkflowEntryRecord: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "workflow_entries"
    public var id: Int64?
    public var workflowId: Int64
    public var folder: String
    public var path: String
    /// nil while unresolved.
    public var sha256: Digest?
    public var size: Int64?
    /// The first source URL given (no secrets).
    public var url: String?
    public var displayName: String?
    public var required: Bool
    /// Why the entry is unresolved, or what else the user should know.
    public var note: String?
    /// The service whose key the workflow says its download needs ("huggingface", "civitai").
    public var authProvider: String?

    enum CodingKeys: String, CodingKey {
        case id, folder, path, sha256, size, url, required, note
        case workflowId = "workflow_id", displayName = "display_name", authProvider = "auth_provider"
    }

    public init(
        folder: String, path: String, sha256: Digest?, size: Int64?, url: String?, displayName: String?, required: Bool, note: String?,
        authProvider: String? = nil
    ) {
        self.authProvider = authProvider
        self.workflowId = 0
        self.folder = folder
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.url = url
        self.displayName = displayName
        self.required = required
        self.note = note
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// An entry with the state of its bytes.
public struct WorkflowEntryStatus: Sendable, Equatable {
    public var entry: WorkflowEntryRecord
    /// nil when unresolved or the blob row is gone.
    public var state: BlobState?
    /// The blob's exact size when it is registered.
    public var blobSize: Int64?
    /// What the folder view's name holds now (nil: nothing).
    public var folderAlias: Digest?
}

/// A workflow with its entry counts.
public struct WorkflowSummary: Sendable, Equatable {
    public var workflow: WorkflowRecord
    public var entries: Int
    public var missing: Int
    public var totalSize: Int64
}

extension Registry {
    /// Stores a workflow and its entries in one transaction; with `replace` an existing workflow of
    /// that name is replaced, else `.workflowExists`.
    public func saveWorkflow(name: String, format: String, entries: [WorkflowEntryRecord], replace: Bool) throws(RegistryError) {
        try write { db in
            if try WorkflowRecord.fetchOne(db, sql: "SELECT * FROM workflows WHERE name = ?", arguments: [name]) != nil {
                guard replace else { throw RegistryError.workflowExists(name) }
                try db.execute(sql: "DELETE FROM workflows WHERE name = ?", arguments: [name])
            }
            var workflow = WorkflowRecord(name: name, format: format)
            try workflow.insert(db)
            for var entry in entries {
                entry.workflowId = workflow.id ?? 0
                try entry.insert(db)
            }
        }
    }

    /// Every workflow with its counts, by name.
    public func workflows() throws(RegistryError) -> [WorkflowSummary] {
        try read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT w.*, COUNT(e.id) AS entries,
                           SUM(CASE WHEN e.id IS NOT NULL AND (b.state IS NULL OR b.state != 'present') THEN 1 ELSE 0 END) AS missing,
                           COALESCE(SUM(COALESCE(b.size, e.size)), 0) AS total
                    FROM workflows w
                    LEFT JOIN workflow_entries e ON e.workflow_id = w.id
                    LEFT JOIN blobs b ON b.sha256 = e.sha256
                    GROUP BY w.id ORDER BY w.name
                    """)
            return try rows.map { row in
                WorkflowSummary(workflow: try WorkflowRecord(row: row), entries: row["entries"], missing: row["missing"] ?? 0, totalSize: row["total"])
            }
        }
    }

    /// One workflow and its entries with their states.
    public func workflow(named name: String) throws(RegistryError) -> (WorkflowRecord, [WorkflowEntryStatus]) {
        try read { db in
            guard let workflow = try WorkflowRecord.fetchOne(db, sql: "SELECT * FROM workflows WHERE name = ?", arguments: [name]) else {
                throw RegistryError.workflowMissing(name)
            }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT e.*, b.state AS blob_state, b.size AS blob_size, a.sha256 AS alias_sha256
                    FROM workflow_entries e
                    LEFT JOIN blobs b ON b.sha256 = e.sha256
                    LEFT JOIN aliases a ON a.folder = e.folder AND a.path = e.path
                    WHERE e.workflow_id = ? ORDER BY e.folder, e.path
                    """, arguments: [workflow.id])
            let entries = try rows.map { row in
                WorkflowEntryStatus(
                    entry: try WorkflowEntryRecord(row: row), state: row["blob_state"], blobSize: row["blob_size"],
                    folderAlias: (row["alias_sha256"] as String?).flatMap(Digest.init(rawValue:)))
            }
            return (workflow, entries)
        }
    }

    /// Resolves an entry after the fact (a trusted first download) and touches its workflow.
    public func resolveWorkflowEntry(id: Int64, sha256: Digest, size: Int64) throws(RegistryError) {
        try write { db in
            try db.execute(sql: "UPDATE workflow_entries SET sha256 = ?, size = ?, note = NULL WHERE id = ?", arguments: [sha256, size, id])
            try db.execute(
                sql: "UPDATE workflows SET updated_at = ? WHERE id = (SELECT workflow_id FROM workflow_entries WHERE id = ?)", arguments: [Date(), id])
        }
    }

    /// Forgets what went wrong resolving the entries of this content (a source that wanted a key,
    /// say) once its bytes are here: the note was about getting them.
    public func clearWorkflowNotes(sha256: Digest) throws(RegistryError) {
        try write { db in
            try db.execute(sql: "UPDATE workflow_entries SET note = NULL WHERE sha256 = ? AND note IS NOT NULL", arguments: [sha256])
        }
    }

    /// Removes a workflow and its entries (the names it added to folder views stay).
    public func removeWorkflow(named name: String) throws(RegistryError) {
        try write { db in
            try db.execute(sql: "DELETE FROM workflows WHERE name = ?", arguments: [name])
            if db.changesCount == 0 { throw RegistryError.workflowMissing(name) }
        }
    }

    /// Aliases with this path in any folder (resolving API-format names, which say no folder).
    public func aliases(path: String) throws(RegistryError) -> [AliasRecord] {
        try read { db in
            try AliasRecord.fetchAll(db, sql: "SELECT * FROM aliases WHERE path = ? ORDER BY folder", arguments: [path])
        }
    }

    /// Registers a blob known only by its source (no name): state remote unless present.
    public func registerRemoteBlob(_ blob: BlobRecord, url: String, kind: String, prefix: [UInt8]?) throws(RegistryError) {
        try write { db in
            try Self.upsertBlob(blob, db)
            try Self.addSource(blob.sha256, url: url, kind: kind, db)
            if blob.state == .present {
                // Nothing to peek at before a download that is not needed.
                try db.execute(sql: "DELETE FROM blob_prefixes WHERE sha256 = ?", arguments: [blob.sha256])
            } else if let prefix {
                try db.execute(
                    sql: "INSERT INTO blob_prefixes (sha256, bytes) VALUES (?, ?) ON CONFLICT(sha256) DO UPDATE SET bytes = excluded.bytes",
                    arguments: [blob.sha256, Data(prefix)])
            }
        }
    }
}
