import Foundation
import GRDB
import TSRStore

/// One model (a blob) as the library browser shows it: its names, facts, and what CivitAI's
/// cache says about it when it is linked.
public struct CatalogModel: Sendable, Equatable {
    public var sha256: Digest
    public var size: Int64
    public var state: BlobState
    /// The linked version's base model, else the header's inference, else nil (unknown).
    public var baseModel: String?
    public var creator: String?
    public var civitaiModelId: Int64?
    public var civitaiVersionId: Int64?
    public var civitaiName: String?
    /// Every name in the folder views, as (folder, path), ordered.
    public var names: [AliasName]
    /// Never evicted (tsr pin).
    public var pinned = false
}

public struct AliasName: Sendable, Equatable, Codable {
    public var folder: String
    public var path: String

    public init(folder: String, path: String) {
        self.folder = folder
        self.path = path
    }
}

/// Which models a listing keeps. Text matches names, the CivitAI name, creator and base model,
/// case-insensitively; `unknown` matches models without a base model or creator.
public struct CatalogFilter: Sendable {
    public var folder: String?
    public var baseModel: String?
    public var creator: String?
    public var state: BlobState?
    public var text: String?

    public init(folder: String? = nil, baseModel: String? = nil, creator: String? = nil, state: BlobState? = nil, text: String? = nil) {
        self.folder = folder
        self.baseModel = baseModel
        self.creator = creator
        self.state = state
        self.text = text
    }

    public func keeps(_ model: CatalogModel) -> Bool {
        if let folder, !model.names.contains(where: { $0.folder == folder }) { return false }
        if let baseModel, (model.baseModel ?? BaseModel.unknown).lowercased() != baseModel.lowercased() { return false }
        if let creator, (model.creator ?? BaseModel.unknown).lowercased() != creator.lowercased() { return false }
        if let state, model.state != state { return false }
        if let text = text?.lowercased(), !text.isEmpty {
            let haystack = (model.names.map { "\($0.folder)/\($0.path)" } + [model.civitaiName, model.creator, model.baseModel, model.sha256.rawValue].compactMap { $0 })
            if !haystack.contains(where: { $0.lowercased().contains(text) }) { return false }
        }
        return true
    }
}

extension Registry {
    /// Every blob with its names and CivitAI facts, filtered, ordered by first name (unnamed
    /// blobs last). One read transaction; the CivitAI columns are index lookups per blob.
    public func catalog(_ filter: CatalogFilter = CatalogFilter()) throws(RegistryError) -> [CatalogModel] {
        try read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT b.sha256, b.size, b.state, b.base_model AS header_base,
                           (\(Self.linked("mv.base_model"))) AS linked_base, (\(Self.linked("c.username"))) AS creator,
                           (\(Self.linked("m.civitai_id"))) AS model_id, (\(Self.linked("mv.civitai_id"))) AS version_id,
                           (\(Self.linked("m.name"))) AS model_name,
                           EXISTS(SELECT 1 FROM pins p WHERE p.sha256 = b.sha256) AS pinned
                    FROM blobs b
                    """)
            var names: [String: [AliasName]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sha256, folder, path FROM aliases ORDER BY folder, path") {
                names[row["sha256"], default: []].append(AliasName(folder: row["folder"], path: row["path"]))
            }
            let models = rows.map { row -> CatalogModel in
                let digest: Digest = row["sha256"]
                let linkedBase: String? = row["linked_base"]
                let headerBase: String? = row["header_base"]
                return CatalogModel(
                    sha256: digest, size: row["size"], state: row["state"], baseModel: linkedBase ?? headerBase, creator: row["creator"],
                    civitaiModelId: row["model_id"], civitaiVersionId: row["version_id"], civitaiName: row["model_name"],
                    names: names[digest.rawValue] ?? [], pinned: row["pinned"])
            }
            return models.filter(filter.keeps).sorted { lhs, rhs in
                switch (lhs.names.first, rhs.names.first) {
                case let (l?, r?): return (l.folder, l.path, lhs.sha256.rawValue) < (r.folder, r.path, rhs.sha256.rawValue)
                case (.some, nil): return true
                case (nil, .some): return false
                case (nil, nil): return lhs.sha256.rawValue < rhs.sha256.rawValue
                }
            }
        }
    }

    /// A column of the CivitAI version a blob's SHA-256 belongs to.
    static func linked(_ column: String) -> String { linkedVersion(column, digest: "b.sha256") }
}
