/// Sends a request and takes its redirects one hop at a time: the first URL must pass the
/// allowlist, every later one must be https (or loopback), and each hop gets the credentials of
/// its own origin only — a token never follows a redirect to a CDN.
struct HopWalker: Sendable {
    let settings: FetchSettings
    let credentials: Credentials

    enum Outcome {
        /// The final (non-redirect) response, and the redirects before it.
        case response(HTTPResponse, redirects: [HTTPResponse])
        /// The connection failed or the body stopped.
        case transport(TransportError)
    }

    /// - Throws: `FetchError` for a URL the policy refuses or too many redirects.
    func send(_ template: HTTPRequest, body: HTTPClient.BodyHandler? = nil) throws(FetchError) -> Outcome {
        var current = template.url
        var redirects: [HTTPResponse] = []
        for hop in 0...settings.maxRedirects {
            let parsed = hop == 0 ? try settings.checkStart(current) : try settings.checkRedirect(current)
            var request = template
            request.url = current
            request.headers.removeAll { $0.0.lowercased() == "authorization" }
            if let auth = credentials.authorization(for: parsed, settings: settings) { request.headers.append(auth) }
            let response: HTTPResponse
            do {
                response = try HTTPClient.perform(request, limits: settings.limits, body: body)
            } catch {
                return .transport(error)
            }
            guard response.isRedirect else { return .response(response, redirects: redirects) }
            guard let next = response.redirectURL else {
                throw .protocolViolation(url: Redact.url(template.url), message: "HTTP \(response.status) without a Location")
            }
            redirects.append(response)
            current = next
        }
        throw .tooManyRedirects(url: Redact.url(template.url))
    }

    /// The error a final non-2xx response stands for (401/403 name the token variable).
    func error(for response: HTTPResponse, url: String) -> FetchError {
        let shown = Redact.url(url)
        let message = Downloader.serverMessage(response)
        switch response.status {
        case 401, 403: return .unauthorized(url: shown, status: response.status, variable: tokenVariable(for: url), message: message)
        case 404: return .notFound(url: shown, message: message)
        default: return .http(url: shown, status: response.status, message: message)
        }
    }

    /// The environment variable whose token the URL's service takes.
    func tokenVariable(for url: String) -> String? {
        guard let origin = WebURL(url)?.origin else { return nil }
        if origin == WebURL(settings.huggingFaceEndpoint)?.origin { return "HF_TOKEN" }
        if origin == WebURL(settings.civitaiBase)?.origin { return "CIVITAI_API_KEY" }
        return nil
    }
}
