import Foundation
import Synchronization
import TSRFetch
import TSRLibrary
import TSRServer
import TSRStore
import TSRTesting

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A live API on 127.0.0.1 (port 0) over a temporary home; stopped by `stop()`.
final class APIHarness: Sendable {
    let dir: TempDirectory
    let library: Library
    let server: APIServer
    let port: Int
    private let task: Task<Void, any Error>

    init(settings: FetchSettings = APIHarness.settings(), credentials: Credentials = Credentials(), token: String? = nil, allowedHosts: [String] = []) async throws {
        dir = try TempDirectory("tsr-api")
        library = try Library(home: dir.path + "/home")
        let fetcher = Fetcher(library: library, settings: settings, credentials: credentials)
        server = try APIServer(fetcher: fetcher, configuration: APIConfiguration(host: "127.0.0.1", port: 0, token: token, allowedHosts: allowedHosts), downloads: DownloadCenter(eventInterval: .milliseconds(20)))
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let server = self.server
        // As `tsr serve` runs it: without an executor preference on the server's task (cancelling
        // one that has it can deadlock; see `onAPIThreads` in TSRServer).
        task = Task { try await server.run { port in continuation.yield(port) } }
        var bound = 0
        for await port in ports {
            bound = port
            break
        }
        port = bound
    }

    static func settings(hf: HuggingFaceFixture? = nil) -> FetchSettings {
        var settings = FetchSettings()
        settings.backoffBase = .milliseconds(10)
        settings.maxBackoff = .milliseconds(50)
        settings.maxAttempts = 3
        if let hf { settings.huggingFaceEndpoint = hf.endpoint }
        return settings
    }

    var base: String { "http://127.0.0.1:\(port)" }

    func stop() async {
        task.cancel()
        _ = try? await task.value
        dir.remove()
    }

    struct Reply: Sendable {
        var status: Int
        var headers: [String: String]
        var body: Data

        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        /// NDJSON lines as objects.
        var lines: [[String: Any]] {
            text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        }
    }

    /// One request; `json` is sent as the body with Content-Type application/json.
    func request(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, headers: [String: String] = [:]) async throws -> Reply {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            request.httpBody = body
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields { fields[String(describing: name).lowercased()] = String(describing: value) }
        return Reply(status: http.statusCode, headers: fields, body: data)
    }

    /// A request written by hand on a socket (any Host or Origin header, and streaming bodies):
    /// returns the status line and everything read until `until` says stop or the server closes.
    func raw(_ head: String, until: @Sendable (String) -> Bool = { _ in false }, timeout: Duration = .seconds(30)) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(message: "socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw SocketError(message: "connect failed") }
        var seconds = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(head.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                break
            }
            received += buffer[0..<count]
            if until(String(decoding: received, as: UTF8.self)) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Polls `condition` until it holds or `timeout` passes.
    func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Every file under the home, read whole (for the "no secret written" checks).
    func everyByte() -> [UInt8] { TSRTesting.everyByte(under: library.layout.home) }
}

/// Runs a test body on the API's own threads: its awaits resume there, so tests elsewhere in the
/// process that block Swift's shared pool (FUSE and CLI tests wait on processes) cannot stall it.
func onAPIThreads<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await withTaskExecutorPreference(ThreadExecutor.api) { try await body() }
}

struct SocketError: Error {
    var message: String
}

/// A minimal valid safetensors file: an 8-byte header length, a JSON header, then `payload` bytes.
func safetensors(metadata: [String: String] = [:], payload: Int) -> [UInt8] {
    var header: [String: Any] = ["w": ["dtype": "U8", "shape": [payload], "data_offsets": [0, payload]]]
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var json = Array((try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])))
    while json.count % 8 != 0 { json.append(0x20) }
    var length = UInt64(json.count).littleEndian
    let prefix = withUnsafeBytes(of: &length) { Array($0) }
    return prefix + json + testBytes(payload, seed: UInt64(payload))
}
