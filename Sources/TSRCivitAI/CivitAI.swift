import Foundation
import TSRFetch
import TSRRegistry
import TSRStore

/// CivitAI's API (base `<TSR_CIVITAI_URL>/api/v1`), with the key in an Authorization header.
public struct CivitAIClient: Sendable {
    public let api: JSONAPI
    public let registry: Registry

    public init(settings: FetchSettings, credentials: Credentials, registry: Registry) {
        api = JSONAPI(settings: settings, credentials: credentials)
        self.registry = registry
    }

    var base: String { api.settings.civitaiBase + "/api/v1" }

    /// Fetches `/models/{id}` and caches the whole model.
    @discardableResult
    public func cacheModel(_ id: Int64) throws(CivitAIError) -> CachedModel {
        let json: [String: Any]
        do { json = try api.object(base + "/models/\(id)") } catch { throw .fetch(error) }
        guard let model = CivitAIMapping.model(json) else { throw .unusable("model \(id): the answer has no id or name") }
        do { try registry.cacheModel(model) } catch { throw .registry(error) }
        return model
    }

    /// What linking one SHA-256 came to.
    public enum LinkOutcome: Sendable, Equatable {
        /// Linked to this model version; `complete` when the whole model was cached too.
        case linked(modelId: Int64, versionId: Int64, complete: Bool)
        case notFound
    }

    /// Looks a SHA-256 up (`/model-versions/by-hash`), caches the version and then its whole
    /// model; a 404 is remembered.
    public func link(_ digest: Digest) throws(CivitAIError) -> LinkOutcome {
        let json: [String: Any]
        do {
            json = try api.object(base + "/model-versions/by-hash/\(digest.rawValue.uppercased())")
        } catch {
            if case .notFound = error {
                do { try registry.recordCivitAILookup(digest, found: false) } catch { throw .registry(error) }
                return .notFound
            }
            throw .fetch(error)
        }
        guard let partial = CivitAIMapping.versionResponse(json), let version = partial.versions.first else {
            throw .unusable("the by-hash answer for \(digest.short)… has no version or model id")
        }
        // An answer counts only if one of its files carries the hash asked for: otherwise the
        // file is not on CivitAI (asked again with --retry-unknown), and nothing is cached.
        guard version.files.contains(where: { $0.hashes["SHA256"] == digest.rawValue.uppercased() }) else {
            do { try registry.recordCivitAILookup(digest, found: false) } catch { throw .registry(error) }
            return .notFound
        }
        do {
            try registry.cacheModel(partial)
            try registry.recordCivitAILookup(digest, found: true)
        } catch {
            throw .registry(error)
        }
        // The whole model (creator, tags, other versions) makes by-creator and search work; if
        // that request fails the version stays linked.
        let complete = (try? cacheModel(partial.civitaiId)) != nil
        return .linked(modelId: partial.civitaiId, versionId: version.civitaiId, complete: complete)
    }
}

/// Why a CivitAI operation stopped.
public enum CivitAIError: Error, Sendable, CustomStringConvertible {
    case fetch(FetchError)
    case registry(RegistryError)
    /// The answer lacks what the cache needs.
    case unusable(String)

    public var description: String {
        switch self {
        case let .fetch(error): return error.description
        case let .registry(error): return error.description
        case let .unusable(message): return "CivitAI: \(message)"
        }
    }

    /// The network or the service is unavailable (go on later), not a problem with one file.
    public var isUnreachable: Bool {
        if case let .fetch(error) = self {
            switch error {
            case .transport, .rateLimited, .hostNotAllowed: return true
            case let .http(_, status, _): return status >= 500 || status == 429
            default: return false
            }
        }
        return false
    }
}

/// `GET /models` filters (the seed's): all optional.
public struct CivitAISearch: Sendable {
    public var query: String?
    public var types: [String] = []
    public var baseModels: [String] = []
    /// "Highest Rated", "Most Downloaded", "Newest".
    public var sort: String?
    /// AllTime, Year, Month, Week, Day.
    public var period: String?
    public var tag: String?
    public var username: String?
    public var nsfw: Bool?
    public var limit = 20

    public init() {}

    /// The query string; CivitAI rejects `query` together with `page`, so paging uses `cursor`.
    func queryItems(cursor: String?) -> [URLQueryItem] {
        var items: [URLQueryItem] = [URLQueryItem(name: "limit", value: String(min(100, max(1, limit))))]
        if let query, !query.isEmpty { items.append(URLQueryItem(name: "query", value: query)) }
        items += types.map { URLQueryItem(name: "types", value: $0) }
        items += baseModels.map { URLQueryItem(name: "baseModels", value: $0) }
        if let sort { items.append(URLQueryItem(name: "sort", value: sort)) }
        if let period { items.append(URLQueryItem(name: "period", value: period)) }
        if let tag { items.append(URLQueryItem(name: "tag", value: tag)) }
        if let username { items.append(URLQueryItem(name: "username", value: username)) }
        if let nsfw { items.append(URLQueryItem(name: "nsfw", value: nsfw ? "true" : "false")) }
        if let cursor { items.append(URLQueryItem(name: "cursor", value: cursor)) }
        return items
    }
}

extension CivitAIClient {
    /// One page of `GET /models`, every model cached; returns the models and the next cursor.
    public func search(_ search: CivitAISearch, cursor: String? = nil) throws(CivitAIError) -> (models: [CachedModel], next: String?) {
        var components = URLComponents(string: base + "/models")
        components?.queryItems = search.queryItems(cursor: cursor)
        guard let url = components?.string else { throw .unusable("cannot build the search URL") }
        let json: [String: Any]
        do { json = try api.object(url) } catch { throw .fetch(error) }
        let models = (json["items"] as? [Any] ?? []).compactMap { ($0 as? [String: Any]).flatMap(CivitAIMapping.model) }
        do { try registry.cacheModels(models) } catch { throw .registry(error) }
        let metadata = json["metadata"] as? [String: Any]
        let next = (metadata?["nextCursor"]).flatMap { CivitAIMapping.string($0) }
        return (models, next)
    }
}
