import TSRLibrary
import TSRRegistry
import TSRStore

/// Everything that can stop a fetch, each with what the user can do about it. No case ever holds
/// a token or a URL with one: URLs are passed through `Redact.url` first.
public enum FetchError: Error, Sendable, CustomStringConvertible {
    /// The input is not a URL, `hf://` or `civitai:` reference tensors understands.
    case invalidSource(String)
    /// The first URL's host is not on the allowlist.
    case hostNotAllowed(host: String, allowed: [String])
    /// A plain-http URL or redirect to a host that is not loopback.
    case insecure(url: String)
    /// More redirects than allowed.
    case tooManyRedirects(url: String)
    /// 401/403: the file needs credentials (`variable` names the environment variable).
    case unauthorized(url: String, status: Int, variable: String?, message: String?)
    /// 404 (or Hugging Face's RepoNotFound/EntryNotFound).
    case notFound(url: String, message: String?)
    /// Any other HTTP error status, after retries where they make sense.
    case http(url: String, status: Int, message: String?)
    /// 429 with a Retry-After longer than tensors waits.
    case rateLimited(url: String, retryAfterSeconds: Int)
    /// The connection failed, timed out or stopped, after retries.
    case transport(url: String, message: String)
    /// The server's size disagrees with the expected size.
    case sizeMismatch(url: String, expected: Int64, actual: Int64)
    /// The bytes did not hash to the expected SHA-256; they were quarantined.
    case digestMismatch(url: String, expected: Digest, actual: Digest, quarantined: String?)
    /// The server sent something tensors cannot use (a wrong Content-Range, say).
    case protocolViolation(url: String, message: String)
    /// No source is known for a blob.
    case noSource(Digest)
    /// The download was cancelled.
    case cancelled
    case store(StoreError)
    case registry(RegistryError)
    /// The bounded cache has no room for the bytes: what may not be evicted fills it.
    case cacheFull(CacheFull)

    public var description: String {
        switch self {
        case let .invalidSource(message): return message
        case let .hostNotAllowed(host, allowed):
            return "\(host) is not on the download allowlist (\(allowed.joined(separator: ", "))); add it with TSR_ALLOW_HOSTS=\(host) if you trust it"
        case let .insecure(url): return "\(url) is not https; tensors only downloads over https (plain http only from this machine)"
        case let .tooManyRedirects(url): return "\(url): too many redirects"
        case let .unauthorized(url, status, variable, message):
            var text = "\(url): \(status == 401 ? "authentication required" : "access denied") (HTTP \(status))"
            if let message, !message.isEmpty { text += ": \(message)" }
            if let variable { text += "; set \(variable) (or pass --token-stdin) with a token that can read it" }
            return text
        case let .notFound(url, message): return "\(url): not found (HTTP 404)\(message.map { ": \($0)" } ?? "")"
        case let .http(url, status, message): return "\(url): HTTP \(status)\(message.map { ": \($0)" } ?? "")"
        case let .rateLimited(url, seconds): return "\(url): rate limited; the server asks to wait \(seconds) s, try again later"
        case let .transport(url, message): return "\(url): \(message)"
        case let .sizeMismatch(url, expected, actual):
            return "\(url): the server has \(actual) bytes, expected \(expected); the file at the source changed or the reference is wrong"
        case let .digestMismatch(url, expected, actual, quarantined):
            let aside = quarantined.map { "; the bytes were kept in \($0)" } ?? ""
            return "\(url): SHA-256 mismatch: expected \(expected), got \(actual)\(aside); nothing was stored under the name"
        case let .protocolViolation(url, message): return "\(url): \(message)"
        case let .noSource(digest): return "no download source is known for \(digest); add one with `tsr add URL --sha256 \(digest)`"
        case .cancelled: return "the download was cancelled"
        case let .store(error): return error.description
        case let .registry(error): return error.description
        case let .cacheFull(full): return full.description
        }
    }
}
