import Foundation
import TSRFetch
import TSRRegistry

// Request and response bodies (snake_case on the wire, like the seed and the CLI's --json).

/// The seed's `POST /models/download` request. Keys are used for this download only.
struct DownloadBody: Decodable {
    var url: String
    var folder: String?
    var filename: String?
    var sha256: String?
    var displayName: String?
    var huggingfaceToken: String?
    var civitaiApiKey: String?

    enum CodingKeys: String, CodingKey {
        case url, folder, filename, sha256
        case displayName = "display_name", huggingfaceToken = "huggingface_token", civitaiApiKey = "civitai_api_key"
    }
}

/// Optional keys for a workflow pull.
struct KeysBody: Decodable {
    var huggingfaceToken: String?
    var civitaiApiKey: String?

    enum CodingKeys: String, CodingKey {
        case huggingfaceToken = "huggingface_token", civitaiApiKey = "civitai_api_key"
    }
}

struct ModelSummary: Encodable {
    var sha256: String
    var size: Int64
    var state: String
    var downloadError: String?
    var baseModel: String
    var creator: String?
    var civitaiName: String?
    var civitaiModelId: Int64?
    var names: [AliasName]
    var pinned: Bool

    init(_ model: CatalogModel, failure: FetchFailure? = nil) {
        sha256 = model.sha256.rawValue
        size = model.size
        state = model.state.rawValue
        downloadError = model.state == .remote ? failure?.summary : nil
        baseModel = model.baseModel ?? "unknown"
        creator = model.creator
        civitaiName = model.civitaiName
        civitaiModelId = model.civitaiModelId
        names = model.names
        pinned = model.pinned
    }

    enum CodingKeys: String, CodingKey {
        case sha256, size, state, creator, names, pinned
        case downloadError = "download_error"
        case baseModel = "base_model", civitaiName = "civitai_name", civitaiModelId = "civitai_model_id"
    }
}

/// Counts for browsing: models per folder, base model and creator (over the whole library).
struct Facets: Encodable {
    var folders: [String: Int] = [:]
    var baseModels: [String: Int] = [:]
    var creators: [String: Int] = [:]

    init(_ models: [CatalogModel]) {
        for model in models {
            for folder in Set(model.names.map(\.folder)) { folders[folder, default: 0] += 1 }
            baseModels[model.baseModel ?? "unknown", default: 0] += 1
            creators[model.creator ?? "unknown", default: 0] += 1
        }
    }

    enum CodingKeys: String, CodingKey {
        case folders, creators
        case baseModels = "base_models"
    }
}

struct ModelList: Encodable {
    var total: Int
    var offset: Int
    var models: [ModelSummary]
    var facets: Facets
}

struct SourceBody: Encodable {
    var url: String
    var kind: String
}

struct ResourceBody: Encodable {
    var name: String?
    var type: String?
    var weight: Double?
}

struct PromptBody: Encodable {
    var imageURL: String?
    var params: [String: String]
    var resources: [ResourceBody]

    enum CodingKeys: String, CodingKey {
        case params, resources
        case imageURL = "image_url"
    }
}

struct ModelDetail: Encodable {
    var sha256: String
    var size: Int64
    var state: String
    var downloadError: String?
    var baseModel: String
    var names: [AliasName]
    var tensorCount: Int?
    var headerSize: Int?
    var metadata: [String: String]
    var sources: [SourceBody]
    var civitai: CivitAIStatus?
    var triggerWords: [String]
    var examplePrompts: [PromptBody]
    var pinned: Bool

    enum CodingKeys: String, CodingKey {
        case sha256, size, state, names, metadata, sources, civitai, pinned
        case downloadError = "download_error"
        case baseModel = "base_model", tensorCount = "tensor_count", headerSize = "header_size"
        case triggerWords = "trigger_words", examplePrompts = "example_prompts"
    }
}

struct WorkflowSummaryBody: Encodable {
    var name: String
    var format: String
    var entries: Int
    var missing: Int
    var totalSize: Int64
    var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case name, format, entries, missing
        case totalSize = "total_size", updatedAt = "updated_at"
    }
}

struct WorkflowList: Encodable {
    var workflows: [WorkflowSummaryBody]
}

struct AddedWorkflow: Encodable {
    var name: String
    var format: String
    var check: WorkflowCheck
}

struct PullStarted: Encodable {
    var downloads: [DownloadStatus]
    var unresolved: [String]
}

struct DownloadList: Encodable {
    var downloads: [DownloadStatus]
}
