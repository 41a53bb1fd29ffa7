import Foundation
import Synchronization

/// An HTTP/1.1 server on 127.0.0.1 (port 0) for tests and benchmarks, written on raw sockets so
/// that a handler controls every byte: it can promise a Content-Length and close early, stall
/// mid-body, or answer a range request with the whole file — the faults real servers and CDNs
/// produce, which a conforming server framework would refuse to emit. One thread per connection;
/// each connection serves one request (`Connection: close`).
public final class FixtureServer: Sendable {
    /// A request as the handler sees it.
    public struct Request: Sendable {
        public var method: String
        /// Path without the query.
        public var path: String
        public var query: [String: String]
        /// Header names lower-cased.
        public var headers: [String: String]
        /// The port of the server that received it (to tell two fixture hosts apart).
        public var port: Int

        public func header(_ name: String) -> String? { headers[name.lowercased()] }
    }

    public typealias Handler = @Sendable (Request, Connection) -> Void

    private let listener: Int32
    public let port: Int
    private let handler: Handler
    private let log = Mutex<[Request]>([])
    private let stopped = Atomic<Bool>(false)
    private let openConnections = Mutex<Set<Int32>>([])

    /// Starts listening; `handler` answers each request.
    public init(handler: @escaping Handler) throws {
        self.handler = handler
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ShellError(message: "socket failed") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            close(fd)
            throw ShellError(message: "bind/listen failed")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "fixture-accept-\(port)"
        thread.start()
    }

    deinit { stop() }

    /// `http://127.0.0.1:<port>`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    /// `http://localhost:<port>`: the same server under another host name.
    public var localhostURL: String { "http://localhost:\(port)" }

    /// Every request received so far.
    public var requests: [Request] { log.withLock { $0 } }

    /// How many body bytes a `Range` header asks for of a file of `size` bytes (all of them
    /// without one).
    public static func rangeLength(_ range: String?, size: Int) -> Int {
        guard let range, range.hasPrefix("bytes=") else { return size }
        let spec = range.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
        let first = Int(spec.first ?? "") ?? 0
        let last = spec.count > 1 ? Int(spec[1]) ?? size - 1 : size - 1
        return max(0, min(last, size - 1) - first + 1)
    }

    /// Stops accepting and closes open connections (a stalled handler's writes then fail).
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        openConnections.withLock { for fd in $0 { shutdown(fd, Int32(SHUT_RDWR)) } }
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            openConnections.withLock { _ = $0.insert(client) }
            let thread = Thread { [self] in
                serve(client)
                openConnections.withLock { _ = $0.remove(client) }
                close(client)
            }
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 8192)
        while !buffer.containsHeaderEnd {
            let n = read(fd, &chunk, chunk.count)
            guard n > 0, buffer.count < 65536 else { return }
            buffer.append(contentsOf: chunk[0..<n])
        }
        let text = String(decoding: buffer, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2 else { return }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let target = String(parts[1])
        let components = URLComponents(string: target)
        var query: [String: String] = [:]
        for item in components?.queryItems ?? [] { query[item.name] = item.value ?? "" }
        let request = Request(method: String(parts[0]), path: components?.path ?? target, query: query, headers: headers, port: port)
        log.withLock { $0.append(request) }
        handler(request, Connection(fd: fd, isHead: request.method == "HEAD"))
    }
}

extension [UInt8] {
    fileprivate var containsHeaderEnd: Bool {
        guard count >= 4 else { return false }
        for i in 0...(count - 4) where self[i] == 13 && self[i + 1] == 10 && self[i + 2] == 13 && self[i + 3] == 10 { return true }
        return false
    }
}

/// One client connection: write a response, or misbehave on purpose.
public struct Connection: Sendable {
    let fd: Int32
    let isHead: Bool

    /// Writes raw bytes; false when the client has gone.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { write($0) } }

    /// Status line and headers (Content-Length is the caller's to give).
    @discardableResult
    public func head(_ status: Int, _ headers: [(String, String)]) -> Bool {
        var text = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "Connection: close\r\n\r\n"
        return write(Array(text.utf8))
    }

    /// A complete response with a body (HEAD requests get the headers only).
    public func respond(_ status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        guard head(status, headers + [("Content-Length", "\(body.count)")]), !isHead else { return }
        write(body)
    }

    /// A JSON response.
    public func json(_ status: Int, _ text: String, headers: [(String, String)] = []) {
        respond(status, headers: headers + [("Content-Type", "application/json")], body: Array(text.utf8))
    }

    /// A redirect.
    public func redirect(_ status: Int = 302, to location: String, headers: [(String, String)] = []) {
        respond(status, headers: headers + [("Location", location)])
    }

    /// Serves `bytes` as a file: Range (one range) → 206, If-Range that does not match `etag` →
    /// 200 with everything, a range past the end → 416. `limit` stops after that many body bytes
    /// (a truncation: the promised length is not delivered); `pause` sleeps after `pause.after`
    /// body bytes (a stall).
    public func serveFile(
        _ bytes: [UInt8], request: FixtureServer.Request, etag: String? = nil, extraHeaders: [(String, String)] = [],
        ignoreRange: Bool = false, limit: Int? = nil, pause: (after: Int, seconds: Double)? = nil
    ) {
        var headers = extraHeaders + [("Accept-Ranges", "bytes")]
        if let etag { headers.append(("ETag", etag)) }
        var start = 0
        var end = bytes.count - 1
        var status = 200
        let ifRangeMatches = request.header("if-range").map { $0 == etag } ?? true
        if !ignoreRange, ifRangeMatches, let range = request.header("range"), range.hasPrefix("bytes=") {
            let spec = range.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
            let first = Int(spec.first ?? "") ?? 0
            let last = spec.count > 1 ? Int(spec[1]) : nil
            if first >= bytes.count {
                respond(416, headers: headers + [("Content-Range", "bytes */\(bytes.count)")])
                return
            }
            start = first
            end = min(last ?? bytes.count - 1, bytes.count - 1)
            status = 206
            headers.append(("Content-Range", "bytes \(start)-\(end)/\(bytes.count)"))
        }
        let length = max(0, end - start + 1)
        guard head(status, headers + [("Content-Length", "\(length)")]), !isHead else { return }
        var sent = 0
        let deliver = min(length, limit ?? length)
        bytes.withUnsafeBytes { raw in
            while sent < deliver {
                var step = min(256 << 10, deliver - sent)
                if let pause, sent < pause.after { step = min(step, pause.after - sent) }
                guard write(UnsafeRawBufferPointer(rebasing: raw[(start + sent)..<(start + sent + step)])) else { return }
                sent += step
                if let pause, sent == pause.after { Thread.sleep(forTimeInterval: pause.seconds) }
            }
        }
    }

    /// Serves a file from disk with sendfile(2) (benchmarks: large bodies without copying).
    public func sendFile(path: String, size: Int) {
        guard head(200, [("Content-Length", "\(size)")]), !isHead else { return }
        let file = open(path, O_RDONLY)
        guard file >= 0 else { return }
        defer { close(file) }
        var offset = off_t(0)
        while offset < off_t(size) {
            let n = sendfile(fd, file, &offset, size - Int(offset))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
        }
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 206: return "Partial Content"
        case 302: return "Found"
        case 307: return "Temporary Redirect"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 416: return "Range Not Satisfiable"
        case 429: return "Too Many Requests"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Status"
        }
    }
}
