/// Tokens for Hugging Face and CivitAI. They live in this value only: never in the registry,
/// files, logs, error messages or URLs (they travel in an `Authorization` header, and only to
/// their own service's origin, never to a CDN a redirect leads to).
public struct Credentials: Sendable {
    public var huggingFace: String?
    public var civitai: String?

    public init(huggingFace: String? = nil, civitai: String? = nil) {
        self.huggingFace = huggingFace.flatMap { $0.isEmpty ? nil : $0 }
        self.civitai = civitai.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `HF_TOKEN` and `CIVITAI_API_KEY`.
    public static func from(environment: [String: String]) -> Credentials {
        Credentials(huggingFace: environment["HF_TOKEN"], civitai: environment["CIVITAI_API_KEY"])
    }

    /// The Authorization header for a request to `url`, if one of the tokens belongs to its origin.
    func authorization(for url: WebURL, settings: FetchSettings) -> (String, String)? {
        if let token = huggingFace, WebURL(settings.huggingFaceEndpoint)?.origin == url.origin {
            return ("Authorization", "Bearer \(token)")
        }
        if let key = civitai, WebURL(settings.civitaiBase)?.origin == url.origin {
            return ("Authorization", "Bearer \(key)")
        }
        return nil
    }
}
