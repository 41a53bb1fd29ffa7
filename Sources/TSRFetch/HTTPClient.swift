import CCurl
import Foundation

/// One HTTP request as the engine sends it. Redirects are never followed by libcurl: the caller
/// decides on each hop (allowlist, https only, which headers go to which host).
public struct HTTPRequest: Sendable {
    public enum Method: String, Sendable { case get = "GET", head = "HEAD" }

    public var url: String
    public var method: Method = .get
    /// Extra headers. `Authorization` is only ever added by `Credentials` for its own host.
    public var headers: [(String, String)] = []
    /// `Range: bytes=<start>-` (or `<start>-<end>` when `rangeEnd` is set).
    public var rangeStart: Int64?
    public var rangeEnd: Int64?
    /// `If-Range`: the validator the bytes already held came with.
    public var ifRange: String?

    public init(url: String, method: Method = .get) {
        self.url = url
        self.method = method
    }
}

/// The status line and headers of one response (the last one, for a request that got several).
public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names lower-cased; a repeated header keeps its last value.
    public var headers: [String: String]
    /// Where a 3xx points, made absolute by libcurl.
    public var redirectURL: String?
    /// Body bytes of a response the caller did not stream (errors, small API answers), capped.
    public var body: [UInt8]

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
    public var isRedirect: Bool { [301, 302, 303, 307, 308].contains(status) }
    public var isSuccess: Bool { (200..<300).contains(status) }

    /// Total length from `Content-Range: bytes a-b/total`, or nil.
    public var contentRangeTotal: Int64? {
        guard let range = header("content-range"), let slash = range.lastIndex(of: "/") else { return nil }
        return Int64(range[range.index(after: slash)...].trimmingCharacters(in: .whitespaces))
    }

    /// First byte from `Content-Range: bytes a-b/total`, or nil.
    public var contentRangeStart: Int64? {
        guard let range = header("content-range"), let space = range.firstIndex(of: " "), let dash = range.firstIndex(of: "-") else { return nil }
        return Int64(range[range.index(after: space)..<dash])
    }

    public var contentLength: Int64? { header("content-length").flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) } }
}

/// Transport-level failure of one request (no HTTP status was received, or the body stopped).
public struct TransportError: Error, Sendable, CustomStringConvertible {
    /// libcurl's code (CURLE_*).
    public var code: Int
    public var message: String
    public var description: String { message }

    /// The connection timed out or fell below the low-speed limit.
    public var isTimeout: Bool { code == Int(CURLE_OPERATION_TIMEDOUT.rawValue) }
    /// The body sink refused bytes (the caller stopped the transfer on purpose).
    public var isAbortedBySink: Bool { code == Int(CURLE_WRITE_ERROR.rawValue) }
}

/// Timeouts of one transfer.
public struct TransferLimits: Sendable {
    public var connectTimeout: Duration = .seconds(15)
    /// Abort when fewer than `lowSpeedBytes` per second arrive for `lowSpeedTime`.
    public var lowSpeedBytes = 1024
    public var lowSpeedTime: Duration = .seconds(30)
    public init() {}
}

/// Sends requests through libcurl's easy interface, one transfer at a time per call, on the
/// calling thread (callers run it on threads of their own, never on Swift's cooperative pool).
public enum HTTPClient {
    /// Takes the body of a 2xx response: `start` sees the status and headers before the first
    /// byte, `receive` each piece as it arrives; either returning false stops the transfer.
    public struct BodyHandler {
        public var start: (Int, [String: String]) -> Bool
        public var receive: (UnsafeRawBufferPointer) -> Bool
        /// Asked about once a second even while no byte arrives; true stops the transfer (a
        /// cancelled download must not wait for the stall timeout).
        public var shouldStop: (() -> Bool)?
        public init(
            start: @escaping (Int, [String: String]) -> Bool, receive: @escaping (UnsafeRawBufferPointer) -> Bool, shouldStop: (() -> Bool)? = nil
        ) {
            self.start = start
            self.receive = receive
            self.shouldStop = shouldStop
        }
    }

    /// The most body bytes kept in `HTTPResponse.body` when no sink takes them.
    public static let bodyCap = 4 << 20

    private static let initialized: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
    }()

    /// libcurl's version string (for `tsr doctor` and logs).
    public static var version: String { String(cString: curl_version()) }

    /// Sends `request`; 2xx bodies go to `body` (or into `HTTPResponse.body` when nil), other
    /// bodies into `HTTPResponse.body`.
    /// - Throws: `TransportError` when no complete response arrived.
    public static func perform(_ request: HTTPRequest, limits: TransferLimits, body: BodyHandler? = nil) throws(TransportError) -> HTTPResponse {
        guard initialized, let handle = curl_easy_init() else {
            throw TransportError(code: Int(CURLE_FAILED_INIT.rawValue), message: "libcurl could not be initialised")
        }
        defer { curl_easy_cleanup(handle) }
        let context = TransferContext(handler: body)
        // SAFETY: the context is retained by `context` for the whole of curl_easy_perform, the only
        // time libcurl calls back with this pointer.
        let opaque = Unmanaged.passUnretained(context).toOpaque()

        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }
        var headers = request.headers
        headers.append(("Accept-Encoding", "identity"))
        if let ifRange = request.ifRange { headers.append(("If-Range", ifRange)) }
        for (name, value) in headers {
            headerList = curl_slist_append(headerList, "\(name): \(value)")
        }

        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errorPointer in
            tsr_curl_setopt_string(handle, CURLOPT_URL, request.url)
            tsr_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
            tsr_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
            tsr_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
            tsr_curl_setopt_string(handle, CURLOPT_USERAGENT, "tensors/0.1 (+libcurl)")
            tsr_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(limits.connectTimeout))
            tsr_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, limits.lowSpeedBytes)
            tsr_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, max(1, milliseconds(limits.lowSpeedTime) / 1000))
            // Bigger receive buffers: fewer callbacks per GiB.
            tsr_curl_setopt_long(handle, CURLOPT_BUFFERSIZE, 512 * 1024)
            tsr_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)
            tsr_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorPointer.baseAddress)
            if request.method == .head { tsr_curl_setopt_long(handle, CURLOPT_NOBODY, 1) }
            if let start = request.rangeStart {
                tsr_curl_setopt_string(handle, CURLOPT_RANGE, "\(start)-\(request.rangeEnd.map(String.init) ?? "")")
            }
            tsr_curl_setopt_header(handle, headerCallback)
            tsr_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, opaque)
            tsr_curl_setopt_write(handle, writeCallback)
            tsr_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, opaque)
            if body?.shouldStop != nil {
                tsr_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0)
                tsr_curl_setopt_xferinfo(handle, progressCallback)
                tsr_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, opaque)
            }
            return curl_easy_perform(handle)
        }
        var status = 0
        tsr_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var redirect: UnsafeMutablePointer<CChar>?
        tsr_curl_getinfo_string(handle, CURLINFO_REDIRECT_URL, &redirect)
        let response = HTTPResponse(
            status: status, headers: context.headers, redirectURL: redirect.map { String(cString: $0) }, body: context.body)
        guard code == CURLE_OK else {
            let detail = String(decoding: errorBuffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let base = String(cString: curl_easy_strerror(code))
            throw TransportError(code: Int(code.rawValue), message: detail.isEmpty ? base : detail)
        }
        return response
    }

    private static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}

/// What one transfer's callbacks fill in. Used by one libcurl transfer on one thread.
private final class TransferContext {
    let handler: HTTPClient.BodyHandler?
    var status = 0
    var headers: [String: String] = [:]
    var body: [UInt8] = []

    init(handler: HTTPClient.BodyHandler?) { self.handler = handler }

    var isSuccess: Bool { (200..<300).contains(status) }
}

private let headerCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, user in
    let length = size * count
    guard let data, let user else { return length }
    let context = Unmanaged<TransferContext>.fromOpaque(user).takeUnretainedValue()
    let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    if line.isEmpty {
        // The end of one response's headers: a 2xx body follows.
        if context.isSuccess, let handler = context.handler, !handler.start(context.status, context.headers) { return 0 }
    } else if line.hasPrefix("HTTP/") {
        // A new response (after a 100 Continue, say): its headers replace the previous ones.
        context.headers = [:]
        let parts = line.split(separator: " ")
        context.status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
    } else if let colon = line.firstIndex(of: ":") {
        let name = line[..<colon].lowercased()
        context.headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return length
}

private let progressCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> Int32 = {
    user, _, _, _, _ in
    guard let user else { return 0 }
    let context = Unmanaged<TransferContext>.fromOpaque(user).takeUnretainedValue()
    return context.handler?.shouldStop?() == true ? 1 : 0
}

private let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, user in
    let length = size * count
    guard let data, let user else { return length }
    let context = Unmanaged<TransferContext>.fromOpaque(user).takeUnretainedValue()
    let bytes = UnsafeRawBufferPointer(start: data, count: length)
    if context.isSuccess, let handler = context.handler {
        return handler.receive(bytes) ? length : 0
    }
    let room = HTTPClient.bodyCap - context.body.count
    if room > 0 { context.body.append(contentsOf: bytes.prefix(room)) }
    return length
}
