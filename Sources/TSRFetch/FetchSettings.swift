import Foundation

/// # TSRFetch
///
/// Getting bytes from Hugging Face, CivitAI and plain URLs into the store, verified.
///
/// - `HTTPClient` sends one request through libcurl and never follows redirects itself:
///   `Downloader` takes each hop, so the allowlist, the https-only rule and "credentials go to
///   their own host only" are decided in one place (`FetchSettings`, `Credentials`).
/// - `Downloader` streams a body into a resumable store transaction (`BlobStore.resume`), with
///   writing and hashing on a thread beside the transfer (`HashingPipe`). A stopped download keeps
///   its bytes and its If-Range validator; the next attempt, in this process or after a restart,
///   re-hashes them and asks for the rest.
/// - `SourceResolver` turns what a user types (`hf://…`, `civitai:…`, URLs) into a `RemoteFile`:
///   URL, expected SHA-256 and exact size, file name, and the first bytes for header reads.
/// - `Fetcher` is what everything else calls: one download per digest, whichever thread or
///   process asks (in-process waiters share a flight; other processes find the partial file
///   locked and wait for the blob).
enum TSRFetchModule {}

/// Where to fetch from and how patiently.
public struct FetchSettings: Sendable {
    /// Hosts a download may start from (a name also allows its subdomains; `localhost` allows the
    /// loopback addresses). Redirects may go anywhere that is https (or loopback).
    public var allowedHosts: [String] = ["huggingface.co", "civitai.com", "localhost"]
    /// Hugging Face's base URL (`HF_ENDPOINT`, as huggingface_hub reads it).
    public var huggingFaceEndpoint = "https://huggingface.co"
    /// CivitAI's base URL (`TSR_CIVITAI_URL`): the API is `<base>/api/v1`.
    public var civitaiBase = "https://civitai.com"
    public var limits = TransferLimits()
    /// Attempts per download without progress (a retry that brought new bytes starts the count again).
    public var maxAttempts = 5
    public var backoffBase: Duration = .milliseconds(500)
    public var maxBackoff: Duration = .seconds(30)
    /// A Retry-After longer than this fails the download instead of waiting.
    public var maxRetryAfter: Duration = .seconds(120)
    public var maxRedirects = 10
    /// The cache limit in bytes for this process's downloads, over `TSR_CACHE_LIMIT` and the
    /// home's (`tsr cache limit`): the mount option `cache_limit=`. nil: those decide.
    public var cacheLimit: Int64?

    public init() {}

    /// Settings from the environment: `HF_ENDPOINT`, `TSR_CIVITAI_URL`, `TSR_ALLOW_HOSTS`
    /// (comma-separated, added to the defaults), `TSR_FETCH_ATTEMPTS`, `TSR_LOW_SPEED_TIME` (s),
    /// `TSR_CONNECT_TIMEOUT` (s). The endpoints' hosts are allowed.
    public static func from(environment: [String: String]) -> FetchSettings {
        var settings = FetchSettings()
        if let hf = environment["HF_ENDPOINT"], !hf.isEmpty { settings.huggingFaceEndpoint = trimmedBase(hf) }
        if let civitai = environment["TSR_CIVITAI_URL"], !civitai.isEmpty { settings.civitaiBase = trimmedBase(civitai) }
        if let extra = environment["TSR_ALLOW_HOSTS"] {
            settings.allowedHosts += extra.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        }
        if let attempts = environment["TSR_FETCH_ATTEMPTS"].flatMap(Int.init), attempts > 0 { settings.maxAttempts = attempts }
        if let seconds = environment["TSR_LOW_SPEED_TIME"].flatMap(Int.init), seconds > 0 { settings.limits.lowSpeedTime = .seconds(seconds) }
        if let seconds = environment["TSR_CONNECT_TIMEOUT"].flatMap(Int.init), seconds > 0 { settings.limits.connectTimeout = .seconds(seconds) }
        return settings
    }

    static func trimmedBase(_ url: String) -> String {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }

    /// Every host a download may start from, the endpoints' included.
    public var startHosts: [String] {
        var seen = Set<String>()
        return (allowedHosts + [huggingFaceEndpoint, civitaiBase].compactMap { WebURL($0)?.host }).filter { seen.insert($0).inserted }
    }

    /// Checks the first URL of a download: http(s), on the allowlist, https unless loopback.
    public func checkStart(_ url: String) throws(FetchError) -> WebURL {
        guard let parsed = WebURL(url) else { throw .invalidSource("\(Redact.url(url)) is not an http(s) URL") }
        guard startHosts.contains(where: { parsed.matches(host: $0) }) else {
            throw .hostNotAllowed(host: parsed.host, allowed: startHosts)
        }
        guard parsed.scheme == "https" || parsed.isLoopback else { throw .insecure(url: Redact.url(url)) }
        return parsed
    }

    /// Checks a redirect target: https anywhere, http only to loopback (tests, local mirrors).
    public func checkRedirect(_ url: String) throws(FetchError) -> WebURL {
        guard let parsed = WebURL(url) else { throw .invalidSource("redirect to \(Redact.url(url)), which is not an http(s) URL") }
        guard parsed.scheme == "https" || parsed.isLoopback else { throw .insecure(url: Redact.url(url)) }
        return parsed
    }
}

/// The parts of an http(s) URL the policy looks at.
public struct WebURL: Sendable, Equatable {
    public var scheme: String
    public var host: String
    public var port: Int?
    public var path: String
    public var query: [URLQueryItem]

    public init?(_ text: String) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host?.lowercased(), !host.isEmpty
        else { return nil }
        self.scheme = scheme
        self.host = host
        self.port = components.port
        self.path = components.path
        self.query = components.queryItems ?? []
    }

    /// scheme://host[:port], what credentials are scoped to.
    public var origin: String { "\(scheme)://\(host)\(port.map { ":\($0)" } ?? "")" }

    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    /// The host is `pattern` or a subdomain of it; `localhost` stands for every loopback address.
    public func matches(host pattern: String) -> Bool {
        let pattern = pattern.lowercased()
        if pattern == "localhost" && isLoopback { return true }
        return host == pattern || host.hasSuffix("." + pattern)
    }
}

/// Removes what must never be shown or stored from URLs.
public enum Redact {
    /// Query parameters that carry credentials (CivitAI's `?token=`, signed-URL signatures…).
    static let secretParameters: Set<String> = [
        "token", "access_token", "api_key", "apikey", "key", "x-amz-signature", "x-amz-credential", "signature", "sig",
    ]

    /// The URL without credential parameters: what gets stored.
    public static func storable(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.user = nil
        components.password = nil
        if let items = components.queryItems {
            let kept = items.filter { !secretParameters.contains($0.name.lowercased()) }
            components.queryItems = kept.isEmpty ? nil : kept
        }
        return components.string ?? url
    }

    /// The URL as messages show it: no query at all (signed CDN URLs carry secrets of their own).
    public static func url(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return "(an invalid URL)" }
        components.user = nil
        components.password = nil
        components.query = nil
        return components.string ?? "(an invalid URL)"
    }
}
