import Foundation
import Synchronization
import TSRRegistry
import TSRStore

/// One file to download into the store.
public struct DownloadRequest: Sendable {
    /// The first URL to ask (it must pass the allowlist); never holds a secret.
    public var url: String
    /// The SHA-256 the bytes must have; nil trusts the first download.
    public var expected: Digest?
    /// The exact size, when the source told it.
    public var expectedSize: Int64?

    public init(url: String, expected: Digest?, expectedSize: Int64?) {
        self.url = url
        self.expected = expected
        self.expectedSize = expectedSize
    }

    /// The resumable transaction's name: the digest when known, else a hash of the URL.
    public var key: String {
        if let expected { return expected.rawValue }
        let digest = (try? SHA256Hasher.digest(Array(Redact.storable(url).utf8)))?.rawValue ?? "unknown"
        return "url-" + digest
    }
}

/// Stops a download from another thread.
public final class Cancellation: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func cancel() { flag.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
}

/// Bytes held so far and the total when known; called from the transfer thread.
public typealias DownloadProgress = @Sendable (_ bytes: Int64, _ total: Int64?) -> Void

/// Downloads one file into the store: resumable, retried, verified. Blocking; run it on a thread
/// of its own.
public struct Downloader: Sendable {
    public let store: BlobStore
    public let registry: Registry
    public let settings: FetchSettings
    public let credentials: Credentials

    public init(store: BlobStore, registry: Registry, settings: FetchSettings, credentials: Credentials) {
        self.store = store
        self.registry = registry
        self.settings = settings
        self.credentials = credentials
    }

    /// What one attempt came to.
    enum Attempt {
        /// Every byte is here.
        case complete
        /// Try again (after `after` when the server said so); `restart` drops the bytes held.
        case retry(FetchError, after: Duration?, restart: Bool)
        case fail(FetchError)
    }

    /// Downloads `request` into a blob and returns it, committed. A stopped download keeps its
    /// bytes for the next call; wrong bytes are quarantined and never committed.
    /// - Throws: `FetchError`; `.store(.busy)` when another download of the same file holds it.
    public func download(_ request: DownloadRequest, progress: DownloadProgress? = nil, cancel: Cancellation? = nil) throws(FetchError) -> Committed {
        let key = request.key
        let writer: BlobWriter
        do {
            writer = try store.resume(key: key, expected: request.expected, expectedSize: request.expectedSize)
        } catch {
            throw .store(error)
        }
        let storedURL = Redact.storable(request.url)
        let saved = (try? registry.partialDownload(key)).flatMap { $0?.url == storedURL ? $0 : nil }
        var state = TransferState(validator: saved?.validator, total: saved?.totalSize ?? request.expectedSize)
        let pipe = HashingPipe(writer: writer)
        // Bytes of unknown content with nothing to prove they are the same file again: start over.
        if pipe.heldBytes > 0 && state.validator == nil && request.expected == nil {
            _ = try? pipe.reset()
        }
        // A fresh download of registered content starts from the header region registration
        // fetched (the final digest check covers those bytes too), not from byte 0 again.
        if pipe.heldBytes == 0, let expected = request.expected, let prefix = (try? registry.prefix(expected)) ?? nil,
            !prefix.isEmpty, Int64(prefix.count) < (request.expectedSize ?? .max)
        {
            _ = prefix.withUnsafeBytes { pipe.push($0) }
        }
        var failures = 0
        while true {
            let before = pipe.heldBytes
            let outcome = attempt(request, pipe: pipe, state: &state, progress: progress, cancel: cancel)
            switch outcome {
            case .complete:
                return try commit(pipe: pipe, request: request, key: key)
            case let .fail(error):
                suspend(pipe)
                throw error
            case let .retry(error, after, restart):
                failures = pipe.heldBytes > before ? 1 : failures + 1
                if failures >= settings.maxAttempts {
                    suspend(pipe)
                    throw error
                }
                if restart {
                    do throws(StoreError) { try pipe.reset() } catch {
                        suspend(pipe)
                        throw .store(error)
                    }
                    state.validator = nil
                }
                if !sleep(after ?? backoff(failures), cancel: cancel) {
                    suspend(pipe)
                    throw .cancelled
                }
            }
        }
    }

    struct TransferState {
        var validator: String?
        var total: Int64?
    }

    private func commit(pipe: HashingPipe, request: DownloadRequest, key: String) throws(FetchError) -> Committed {
        let (writer, failure) = pipe.finish()
        if let failure {
            writer.suspend()
            throw .store(failure)
        }
        do {
            let committed = try writer.commit()
            try? registry.removePartialDownload(key)
            return committed
        } catch {
            try? registry.removePartialDownload(key)
            let shown = Redact.url(request.url)
            switch error {
            case let .digestMismatch(expected, actual, quarantined):
                throw .digestMismatch(url: shown, expected: expected, actual: actual, quarantined: quarantined)
            case let .sizeMismatch(_, expected, actual):
                throw .sizeMismatch(url: shown, expected: expected, actual: actual)
            default:
                throw .store(error)
            }
        }
    }

    private func suspend(_ pipe: HashingPipe) {
        let (writer, _) = pipe.finish()
        writer.suspend()
    }

    /// One attempt: the request and its redirects, each hop checked, the body streamed.
    private func attempt(
        _ request: DownloadRequest, pipe: HashingPipe, state: inout TransferState, progress: DownloadProgress?, cancel: Cancellation?
    ) -> Attempt {
        let shown = Redact.url(request.url)
        let offset = pipe.heldBytes
        var http = HTTPRequest(url: request.url)
        if offset > 0 {
            http.rangeStart = offset
            http.ifRange = state.validator
        }
        var refused: Attempt?
        var validator = state.validator
        var total = state.total
        let handler = HTTPClient.BodyHandler(
            start: { status, headers in
                let response = HTTPResponse(status: status, headers: headers, redirectURL: nil, body: [])
                let length: Int64?
                if status == 206 {
                    guard response.contentRangeStart == offset else {
                        refused = .retry(.protocolViolation(url: shown, message: "the server answered a resume at \(offset) with other bytes"), after: nil, restart: true)
                        return false
                    }
                    length = response.contentRangeTotal
                } else {
                    if offset > 0 {
                        // A 200 to a range request (or a failed If-Range: the content changed):
                        // the whole file follows, so the bytes held go.
                        do throws(StoreError) { try pipe.reset() } catch {
                            refused = .fail(.store(error))
                            return false
                        }
                    }
                    length = response.contentLength
                }
                if let expected = request.expectedSize, let length, length != expected {
                    refused = .fail(.sizeMismatch(url: shown, expected: expected, actual: length))
                    return false
                }
                total = length ?? request.expectedSize
                let newValidator = Self.validator(response)
                if status == 200 || newValidator != nil { validator = newValidator }
                try? registry.savePartialDownload(
                    PartialDownloadRecord(key: request.key, url: Redact.storable(request.url), validator: validator, totalSize: total))
                return true
            },
            receive: { bytes in
                if cancel?.isCancelled == true { return false }
                guard pipe.push(bytes) else { return false }
                if let limit = total ?? request.expectedSize, pipe.heldBytes > limit {
                    refused = .fail(.sizeMismatch(url: shown, expected: limit, actual: pipe.heldBytes))
                    return false
                }
                progress?(pipe.heldBytes, total)
                return true
            },
            shouldStop: { cancel?.isCancelled == true })
        let outcome: HopWalker.Outcome
        do {
            outcome = try HopWalker(settings: settings, credentials: credentials).send(http, body: handler)
        } catch {
            return .fail(error)
        }
        state.validator = validator
        state.total = total
        switch outcome {
        case let .transport(error):
            if let refused { return refused }
            if cancel?.isCancelled == true { return .fail(.cancelled) }
            do throws(StoreError) { try pipe.drain() } catch { return .fail(.store(error)) }
            let what = error.isTimeout ? "the transfer stalled or timed out (\(error.message))" : error.message
            return .retry(.transport(url: shown, message: what), after: nil, restart: false)
        case let .response(response, _):
            return classify(response, request: request, pipe: pipe, state: state, offset: offset)
        }
    }

    /// What a final (non-redirect) response means for the download.
    private func classify(_ response: HTTPResponse, request: DownloadRequest, pipe: HashingPipe, state: TransferState, offset: Int64) -> Attempt {
        let shown = Redact.url(request.url)
        let message = Self.serverMessage(response)
        switch response.status {
        case 200..<300:
            do throws(StoreError) { try pipe.drain() } catch { return .fail(.store(error)) }
            let held = pipe.heldBytes
            if let total = state.total, held < total {
                return .retry(.transport(url: shown, message: "the connection closed after \(held) of \(total) bytes"), after: nil, restart: false)
            }
            return .complete
        case 416:
            // Nothing left to send: complete if the bytes held are the whole file, else start over.
            if offset > 0, let total = response.contentRangeTotal ?? state.total, total == offset { return .complete }
            return .retry(.http(url: shown, status: 416, message: "range not satisfiable"), after: nil, restart: true)
        case 429:
            let wait = Self.retryAfter(response)
            if let wait, wait > settings.maxRetryAfter {
                return .fail(.rateLimited(url: shown, retryAfterSeconds: Int(wait.components.seconds)))
            }
            return .retry(.http(url: shown, status: 429, message: message ?? "too many requests"), after: wait, restart: false)
        case 408, 500..<600:
            return .retry(.http(url: shown, status: response.status, message: message), after: Self.retryAfter(response), restart: false)
        default:
            return .fail(HopWalker(settings: settings, credentials: credentials).error(for: response, url: request.url))
        }
    }

    /// A strong ETag, else Last-Modified: what If-Range may carry.
    static func validator(_ response: HTTPResponse) -> String? {
        if let etag = response.header("etag"), !etag.hasPrefix("W/") { return etag }
        return response.header("last-modified")
    }

    /// Retry-After in seconds or as an HTTP date.
    static func retryAfter(_ response: HTTPResponse) -> Duration? {
        guard let value = response.header("retry-after") else { return nil }
        if let seconds = Int(value.trimmingCharacters(in: .whitespaces)) { return .seconds(max(0, seconds)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .milliseconds(max(0, Int(date.timeIntervalSinceNow * 1000)))
    }

    /// What the server said about an error: Hugging Face's X-Error-Message, a JSON `message` or
    /// `error`, or a short plain-text body.
    static func serverMessage(_ response: HTTPResponse) -> String? {
        if let message = response.header("x-error-message"), !message.isEmpty { return message }
        if let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] {
            for key in ["message", "error"] {
                if let text = object[key] as? String, !text.isEmpty { return String(text.prefix(300)) }
            }
        }
        let text = String(decoding: response.body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, !text.contains("<"), text.unicodeScalars.allSatisfy({ $0.value >= 0x20 || $0 == "\n" }) else { return nil }
        return text
    }

    /// Exponential backoff with jitter (0.5–1.5×), capped.
    func backoff(_ failures: Int) -> Duration {
        let base = settings.backoffBase * (1 << min(failures - 1, 16))
        let capped = min(base, settings.maxBackoff)
        return capped * Double.random(in: 0.5...1.5)
    }

    /// Sleeps in small steps; false when cancelled meanwhile.
    private func sleep(_ duration: Duration, cancel: Cancellation?) -> Bool {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if cancel?.isCancelled == true { return false }
            Thread.sleep(forTimeInterval: min(0.05, (deadline - ContinuousClock.now).inSeconds))
        }
        return cancel?.isCancelled != true
    }
}

extension Duration {
    /// The duration as fractional seconds.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
