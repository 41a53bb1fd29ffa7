import Foundation
import Hummingbird
import Logging
import TSRFetch
import TSRLibrary

/// Where the API listens and who may use it.
public struct APIConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The bearer token every API request must carry; required unless `host` is loopback. Kept
    /// in memory only.
    public var token: String?

    public init(host: String = "127.0.0.1", port: Int = 8189, token: String? = nil) {
        self.host = host
        self.port = port
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Parses `HOST:PORT`, `:PORT` or `PORT` (host 127.0.0.1); `[::1]:PORT` for IPv6.
    public static func parse(_ text: String, token: String?) throws(APIError) -> APIConfiguration {
        var host = "127.0.0.1"
        var portText = text
        if let colon = text.lastIndex(of: ":") {
            let hostPart = String(text[..<colon])
            portText = String(text[text.index(after: colon)...])
            if !hostPart.isEmpty {
                host = hostPart.hasPrefix("[") && hostPart.hasSuffix("]") ? String(hostPart.dropFirst().dropLast()) : hostPart
            }
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw APIError(.badRequest, "\(text): expected HOST:PORT, :PORT or PORT (e.g. 127.0.0.1:8189)")
        }
        let configuration = APIConfiguration(host: host, port: port, token: token)
        try configuration.validate()
        return configuration
    }

    /// The page's address on `port` (the bound one, for port 0), IPv6 hosts in brackets.
    public func url(port: Int) -> String {
        "http://\(host.contains(":") ? "[\(host)]" : host):\(port)/"
    }

    public var isLoopback: Bool { ["127.0.0.1", "localhost", "::1"].contains(host) || host.hasPrefix("127.") }

    /// Binding beyond this machine needs a token: anyone who can reach the port could otherwise
    /// download into the store.
    public func validate() throws(APIError) {
        if !isLoopback && token == nil {
            throw APIError(
                .badRequest,
                "listening on \(host) makes the API reachable from other machines; set a bearer token first (TSR_API_TOKEN, or --api-token-stdin)")
        }
    }
}

/// The local HTTP API and web page (Hummingbird), served by `tsr serve` or inside the mount
/// daemon. Downloads go through `fetcher`, so they join the mount's one download per blob.
public final class APIServer: Sendable {
    public let fetcher: Fetcher
    public let downloads: DownloadCenter
    public let configuration: APIConfiguration
    let logger: Logger

    public init(fetcher: Fetcher, configuration: APIConfiguration, downloads: DownloadCenter = DownloadCenter(), logger: Logger = Logger(label: "tsr.api")) throws(APIError) {
        try configuration.validate()
        self.fetcher = fetcher
        self.configuration = configuration
        self.downloads = downloads
        self.logger = logger
    }

    /// Serves until the task is cancelled; `ready` gets the bound port (useful with port 0).
    public func run(gracefulShutdownSignals: Bool = false, ready: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: GuardMiddleware(configuration: configuration))
        Routes(server: self).register(on: router)
        // Hummingbird's own log lines (start, and an "error" for every stop by cancellation) only
        // at debug level; failures to listen are thrown, and requests failing on our side logged.
        var serverLogger = logger
        serverLogger.logLevel = logger.logLevel <= .debug ? logger.logLevel : .critical
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tensors"),
            onServerRunning: { channel in await ready(channel.localAddress?.port ?? 0) },
            logger: serverLogger)
        // Not under a task executor preference: handlers move their synchronous work to the
        // API's threads themselves (`onAPIThreads`).
        if gracefulShutdownSignals {
            try await app.runService()
        } else {
            try await app.run()
        }
    }
}

/// Checks every request before it reaches a route, and turns any error into a JSON answer:
/// - without a token (loopback only) the Host must be this machine, so a web page on another
///   site cannot reach the API through DNS rebinding;
/// - requests that change something must not come from another origin (no CSRF);
/// - with a token, every API request carries it (`Authorization: Bearer …`); the page itself
///   and /openapi.json are public, they hold no data.
struct GuardMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let configuration: APIConfiguration

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            try check(request)
            var response = try await next(request, context)
            response.headers[.init("X-Content-Type-Options")!] = "nosniff"
            return response
        } catch {
            let failure = APIError.from(error)
            if failure.status.code >= 500 { context.logger.error("\(request.method) \(request.uri.path): \(failure.message)") }
            return failure.response()
        }
    }

    private func check(_ request: Request) throws {
        let host = request.head.authority ?? ""
        if configuration.token == nil {
            let name = Self.hostName(host)
            guard ["localhost", "127.0.0.1", "::1"].contains(name) || name.hasPrefix("127.") else {
                throw APIError(.forbidden, "this API answers requests addressed to localhost or 127.0.0.1 only (it was addressed to \(host))")
            }
        }
        if request.method != .get && request.method != .head, let origin = request.headers[.origin], origin != "http://\(host)" {
            throw APIError(.forbidden, "requests from \(origin) may not change anything here; use the page served by this API")
        }
        guard let token = configuration.token, request.uri.path != "/", request.uri.path != "/openapi.json" else { return }
        let given = request.headers[.authorization] ?? ""
        guard given.hasPrefix("Bearer "), Self.equal(Array(given.utf8.dropFirst(7)), Array(token.utf8)) else {
            throw APIError(.unauthorized, "this API needs its bearer token: send Authorization: Bearer <token>")
        }
    }

    /// The host name of a Host header (`[::1]:8189` → `::1`).
    static func hostName(_ host: String) -> String {
        if host.hasPrefix("["), let end = host.firstIndex(of: "]") { return String(host[host.index(after: host.startIndex)..<end]).lowercased() }
        return String(host.split(separator: ":", maxSplits: 1).first ?? "").lowercased()
    }

    /// Compares in time independent of where the first difference is.
    static func equal(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}

/// Runs a handler's synchronous work (registry reads, JSON encoding) on the API's own threads, so
/// that blocking work elsewhere in the process on Swift's small shared pool cannot stall it.
///
/// Only this synchronous part carries the executor preference. A task that keeps a preference
/// while it awaits library code can deadlock when it is cancelled: the runtime runs cancellation
/// handlers under the task's status lock, and resuming a task that has a preference takes that
/// lock, so a library that resumes a continuation under a lock its cancellation handler also takes
/// (the service group's signal merge does) waits forever. `tsr serve` on a port in use hung that
/// way when the whole server ran under the preference.
func onAPIThreads<T: Sendable>(_ body: () throws -> T) async throws -> T {
    try await withTaskExecutorPreference(ThreadExecutor.api) { try body() }
}

/// Runs blocking work (the fetch engine, workflow resolution) on a thread of its own, so the
/// server's event loops and Swift's cooperative pool never wait on the network.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = "tsr-api-blocking"
        thread.start()
    }
}
