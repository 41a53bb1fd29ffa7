import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import Logging
import TSRFetch
import TSRLibrary
import TSRStore

/// Where the API listens and who may use it.
public struct APIConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The bearer token every API request must carry; required unless `host` is loopback. Kept
    /// in memory only.
    public var token: String?
    /// Host names, besides literal loopback addresses and `localhost`, that requests without a
    /// token may be addressed to (`TSR_API_HOSTS`, comma-separated): a name the user gave this
    /// machine in its own hosts file. Compared exactly, case-insensitively.
    public var allowedHosts: [String]

    public init(host: String = "127.0.0.1", port: Int = 8189, token: String? = nil, allowedHosts: [String] = []) {
        self.host = host
        self.port = port
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        self.allowedHosts = allowedHosts.map { $0.lowercased() }.filter { !$0.isEmpty }
    }

    /// Parses `HOST:PORT`, `:PORT` or `PORT` (host 127.0.0.1); `[::1]:PORT` for IPv6.
    public static func parse(_ text: String, token: String?, allowedHosts: [String] = []) throws(APIError) -> APIConfiguration {
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
        let configuration = APIConfiguration(host: host, port: port, token: token, allowedHosts: allowedHosts)
        try configuration.validate()
        return configuration
    }

    /// The page's address on `port` (the bound one, for port 0), IPv6 hosts in brackets.
    public func url(port: Int) -> String {
        "http://\(host.contains(":") ? "[\(host)]" : host):\(port)/"
    }

    public var isLoopback: Bool { LoopbackHost.isLoopback(host.lowercased()) }

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
            // A path the API has, asked with a method it does not take: 405 and what it takes.
            if let routing = error as? HTTPError, routing.status == .notFound, let methods = OpenAPIDocument.allowedMethods(forPath: request.uri.path) {
                var response = APIError(.methodNotAllowed, "\(request.method) is not supported on \(request.uri.path); it takes \(methods.joined(separator: ", "))").response()
                response.headers[.allow] = methods.joined(separator: ", ")
                return response
            }
            let failure = APIError.from(error)
            if failure.status.code >= 500 { context.logger.error("\(request.method) \(request.uri.path): \(failure.message)") }
            return failure.response()
        }
    }

    private func check(_ request: Request) throws {
        let host = request.head.authority ?? ""
        if configuration.token == nil {
            guard let name = LoopbackHost.name(ofAuthority: host), LoopbackHost.isLoopback(name) || configuration.allowedHosts.contains(name) else {
                throw APIError(.forbidden, "this API answers requests addressed to localhost or a loopback address only (it was addressed to \(LoopbackHost.printable(host)))")
            }
        }
        if request.method != .get && request.method != .head, let origin = request.headers[.origin], origin.lowercased() != "http://\(host.lowercased())" {
            throw APIError(.forbidden, "requests from \(LoopbackHost.printable(origin)) may not change anything here; use the page served by this API")
        }
        guard let token = configuration.token, request.uri.path != "/", request.uri.path != "/openapi.json" else { return }
        let given = request.headers[.authorization] ?? ""
        guard given.hasPrefix("Bearer "), Self.equal(Array(given.utf8.dropFirst(7)), Array(token.utf8)) else {
            throw APIError(.unauthorized, "this API needs its bearer token: send Authorization: Bearer <token>")
        }
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

/// What counts as "this machine" for requests without a token (DNS rebinding): `localhost` and
/// literal loopback addresses, parsed as addresses — never a name that merely starts like one
/// (`127.evil.example`, `127.0.0.1.nip.io` resolve wherever their owner likes).
public enum LoopbackHost {
    /// The host of a Host header or authority (`[::1]:8189` → `::1`, `LocalHost:80` →
    /// `localhost`), lowercased; nil when it is malformed (a port that is not a number, stray
    /// brackets, an empty name).
    public static func name(ofAuthority authority: String) -> String? {
        var host = authority
        var port: Substring?
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: end)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                port = rest.dropFirst()
            }
            host = String(host[host.index(after: host.startIndex)..<end])
        } else if let colon = host.firstIndex(of: ":") {
            port = host[host.index(after: colon)...]
            host = String(host[..<colon])
        }
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }), Int(port)! <= 65535 else { return nil }
        }
        guard !host.isEmpty else { return nil }
        return host.lowercased()
    }

    /// True for `localhost`, an IPv4 address in 127.0.0.0/8 written as four decimal numbers,
    /// `::1` and IPv4-mapped loopback (`::ffff:127.0.0.1`) in any IPv6 spelling.
    public static func isLoopback(_ name: String) -> Bool {
        if name == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, name, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
        return bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
    }

    /// A header value as it may be put in an error message: control characters escaped
    /// (`LogText`), at most 200 characters.
    static func printable(_ value: String) -> String {
        let escaped = LogText.escaped(value)
        return escaped.count > 200 ? String(escaped.prefix(200)) + "…" : escaped
    }
}
