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
