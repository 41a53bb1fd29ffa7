import Foundation

/// GETs JSON from an API (CivitAI's) through the same policy as downloads: allowlist, per-hop
/// credentials, retries with backoff on transport errors, 429 (honouring Retry-After) and 5xx.
public struct JSONAPI: Sendable {
    public let settings: FetchSettings
    public let credentials: Credentials

    public init(settings: FetchSettings, credentials: Credentials) {
        self.settings = settings
        self.credentials = credentials
    }

    /// The JSON object at `url`.
    /// - Throws: `FetchError` (`.notFound` for 404, `.rateLimited` when the wait asked is too long).
    public func object(_ url: String) throws(FetchError) -> [String: Any] {
        let walker = HopWalker(settings: settings, credentials: credentials)
        var attempts = 0
        while true {
            attempts += 1
            switch try walker.send(HTTPRequest(url: url)) {
            case let .transport(error):
                if attempts < settings.maxAttempts {
                    Thread.sleep(forTimeInterval: (settings.backoffBase * attempts).inSeconds)
                    continue
                }
                throw .transport(url: Redact.url(url), message: error.message)
            case let .response(response, _):
                if (response.status == 429 || response.status >= 500) && attempts < settings.maxAttempts {
                    let wait = Downloader.retryAfter(response) ?? settings.backoffBase * attempts
                    guard wait <= settings.maxRetryAfter else {
                        throw .rateLimited(url: Redact.url(url), retryAfterSeconds: Int(wait.components.seconds))
                    }
                    Thread.sleep(forTimeInterval: wait.inSeconds)
                    continue
                }
                guard response.isSuccess else { throw walker.error(for: response, url: url) }
                guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
                    throw .protocolViolation(url: Redact.url(url), message: "the answer is not a JSON object")
                }
                return object
            }
        }
    }
}
