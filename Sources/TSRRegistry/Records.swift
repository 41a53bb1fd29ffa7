import SystemPackage
import Foundation
import GRDB
import TSRStore

/// Whether a blob's bytes are in the store.
public enum BlobState: String, Codable, Sendable, DatabaseValueConvertible {
    /// Committed and readable.
    case present
    /// Known (size, digest, sources) but not downloaded yet.
    case remote
    /// Failed verification; the bytes were moved to quarantine/.
    case quarantined
}

/// A row of `blobs`.
public struct BlobRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "blobs"
    public var sha256: Digest
    public var size: Int64
    public var state: BlobState
    public var verifiedAt: Date?
    public var createdAt: Date
    /// Safetensors header facts; nil for other formats.
    public var headerSize: Int?
    public var tensorCount: Int?
    public var baseModel: String?
    /// `__metadata__` as a JSON object of strings.
    public var metadataJSON: String?

    enum CodingKeys: String, CodingKey {
        case sha256, size, state
        case verifiedAt = "verified_at", createdAt = "created_at", headerSize = "header_size"
        case tensorCount = "tensor_count", baseModel = "base_model", metadataJSON = "metadata_json"
    }

    public init(
        sha256: Digest, size: Int64, state: BlobState, verifiedAt: Date? = nil, createdAt: Date = Date(),
        headerSize: Int? = nil, tensorCount: Int? = nil, baseModel: String? = nil, metadataJSON: String? = nil
    ) {
        self.sha256 = sha256
        self.size = size
        self.state = state
        self.verifiedAt = verifiedAt
        self.createdAt = createdAt
        self.headerSize = headerSize
        self.tensorCount = tensorCount
        self.baseModel = baseModel
        self.metadataJSON = metadataJSON
    }

    /// The header metadata decoded, empty when there is none.
    public var metadata: [String: String] {
        guard let text = metadataJSON, let data = text.data(using: .utf8) else { return [:] }
        return (try? JSONDecoder().decode([String: String].self, from: data)) ?? [:]
    }
}

extension Digest: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { rawValue.databaseValue }
    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> Digest? {
        String.fromDatabaseValue(dbValue).flatMap(Digest.init(rawValue:))
    }
}

/// A row of `aliases`: one name of a blob.
public struct AliasRecord: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "aliases"
    /// Never reused; stable across restarts.
    public var id: Int64?
    /// ComfyUI folder key (canonical: `diffusion_models`, not `unet`).
    public var folder: String
    /// Path inside the folder; may contain subfolders.
    public var path: String
    public var sha256: Digest
    public var createdAt: Date
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, folder, path, sha256
        case createdAt = "created_at", updatedAt = "updated_at"
    }

    public init(id: Int64? = nil, folder: String, path: String, sha256: Digest, createdAt: Date = Date(), updatedAt: Date = Date()) {
        self.id = id
        self.folder = folder
        self.path = path
        self.sha256 = sha256
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// `folder/path`.
    public var name: String { folder + "/" + path }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A row of `local_files`: a file on disk that has been hashed.
public struct LocalFileRecord: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "local_files"
    public var id: Int64?
    public var filePath: String
    public var sha256: Digest
    public var size: Int64
    public var device: Int64
    public var inode: Int64
    public var mtimeNs: Int64
    public var headerSize: Int?
    public var tensorCount: Int?
    public var civitaiModelId: Int64?
    public var civitaiVersionId: Int64?
    public var createdAt: Date
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, sha256, size, device, inode
        case filePath = "file_path", mtimeNs = "mtime_ns", headerSize = "header_size", tensorCount = "tensor_count"
        case civitaiModelId = "civitai_model_id", civitaiVersionId = "civitai_version_id"
        case createdAt = "created_at", updatedAt = "updated_at"
    }

    public init(path: String, sha256: Digest, status: Stat, headerSize: Int? = nil, tensorCount: Int? = nil, now: Date = Date()) {
        self.filePath = path
        self.sha256 = sha256
        self.size = status.size
        self.device = Int64(bitPattern: status.device)
        self.inode = Int64(bitPattern: status.inodeNumber)
        self.mtimeNs = status.mtimeNs
        self.headerSize = headerSize
        self.tensorCount = tensorCount
        self.createdAt = now
        self.updatedAt = now
    }

    /// True when the file on disk is still the one that was hashed.
    public func matches(_ status: Stat) -> Bool {
        size == status.size && device == Int64(bitPattern: status.device) && inode == Int64(bitPattern: status.inodeNumber)
            && mtimeNs == status.mtimeNs
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A row of `sources`: a URL a blob can be fetched from.
public struct SourceRecord: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "sources"
    public var id: Int64?
    public var sha256: Digest
    public var url: String
    public var kind: String
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, sha256, url, kind
        case createdAt = "created_at"
    }
}

/// One alias as the mount shows it.
public struct MountEntry: Sendable, Equatable, FetchableRecord {
    public var id: Int64
    public var folder: String
    public var path: String
    public var sha256: Digest
    public var updatedAt: Date
    public var size: Int64
    public var state: BlobState
    public var baseModel: String?
    /// The CivitAI creator, when the blob is linked (filled by the CivitAI cache).
    public var creator: String?

    public init(id: Int64, folder: String, path: String, sha256: Digest, updatedAt: Date, size: Int64, state: BlobState, baseModel: String?, creator: String?) {
        self.id = id
        self.folder = folder
        self.path = path
        self.sha256 = sha256
        self.updatedAt = updatedAt
        self.size = size
        self.state = state
        self.baseModel = baseModel
        self.creator = creator
    }

    /// Decoded by column position (the order of `Registry.mountEntryColumns` and
    /// `folderEntryColumns`): a folder listing decodes thousands of rows, and Codable decoding
    /// costs several times more per row.
    public init(row: Row) throws {
        id = row[0]
        folder = row[1]
        path = row[2]
        sha256 = row[3]
        updatedAt = row[4]
        size = row[5]
        state = row[6]
        baseModel = row[7]
        creator = row[8]
    }
}

/// One blob as `by-hash/` shows it.
public struct MountBlob: Sendable, Equatable, Decodable, FetchableRecord {
    public var sha256: Digest
    public var size: Int64
    public var state: BlobState
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case sha256, size, state
        case createdAt = "created_at"
    }

    public init(sha256: Digest, size: Int64, state: BlobState, createdAt: Date) {
        self.sha256 = sha256
        self.size = size
        self.state = state
        self.createdAt = createdAt
    }
}

/// A name that went away, and when.
public struct MountTombstone: Sendable, Equatable {
    public var folder: String
    public var path: String
    public var deletedAt: Date

    public init(folder: String, path: String, deletedAt: Date) {
        self.folder = folder
        self.path = path
        self.deletedAt = deletedAt
    }
}

/// One resolved entry of a workflow as `workflows/<name>/` shows it.
public struct MountWorkflowEntry: Sendable, Equatable, Decodable, FetchableRecord {
    public var workflow: String
    public var folder: String
    public var path: String
    public var sha256: Digest
    public var size: Int64
    public var state: BlobState
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case workflow, folder, path, sha256, size, state
        case updatedAt = "updated_at"
    }

    public init(workflow: String, folder: String, path: String, sha256: Digest, size: Int64, state: BlobState, updatedAt: Date) {
        self.workflow = workflow
        self.folder = folder
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.state = state
        self.updatedAt = updatedAt
    }
}

/// A consistent read of everything the mount shows.
public struct MountData: Sendable {
    public var generation: Int64
    public var entries: [MountEntry]
    public var blobs: [MountBlob]
    public var tombstones: [MountTombstone]
    public var workflowEntries: [MountWorkflowEntry]

    public init(
        generation: Int64, entries: [MountEntry], blobs: [MountBlob], tombstones: [MountTombstone], workflowEntries: [MountWorkflowEntry] = []
    ) {
        self.generation = generation
        self.entries = entries
        self.blobs = blobs
        self.tombstones = tombstones
        self.workflowEntries = workflowEntries
    }
}
