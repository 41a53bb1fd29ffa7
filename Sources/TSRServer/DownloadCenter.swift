import Foundation
import Synchronization
import TSRFetch
import TSRStore

/// One download the API started, as `GET /downloads` and the event stream show it.
public struct DownloadStatus: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable {
        case queued, downloading, completed, failed, cancelled
        public var isFinished: Bool { self == .completed || self == .failed || self == .cancelled }
    }

    public var id: Int
    /// What is downloaded: `folder/name` when known, else the source.
    public var file: String
    public var source: String
    public var workflow: String?
    public var state: State
    public var bytes: Int64
    public var totalBytes: Int64?
    /// Bytes per second over the download so far.
    public var speed: Int64
    public var sha256: String?
    public var path: String?
    public var error: String?
    /// "huggingface" or "civitai" when the download failed for want of that service's key.
    public var requiresAuth: String?
    public var startedAt: Date
    public var finishedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, file, source, workflow, state, bytes, speed, sha256, path, error
        case totalBytes = "total_bytes", startedAt = "started_at", finishedAt = "finished_at", requiresAuth = "requires_auth"
    }
}

/// What a finished download produced.
public struct DownloadOutcome: Sendable {
    public var digest: Digest
    public var size: Int64
    /// `folder/name` of the file.
    public var path: String

    public init(digest: Digest, size: Int64, path: String) {
        self.digest = digest
        self.size = size
        self.path = path
    }
}

/// The downloads the API runs: each on its own thread (the fetch engine blocks), observable as a
/// list and as a stream of status changes, cancellable. Finished downloads stay listed (the last
/// 100) so a page opened later sees how they ended.
public final class DownloadCenter: Sendable {
    /// The work of one download: report progress, honour the cancellation, return the result.
    public typealias Work = @Sendable (_ progress: @escaping DownloadProgress, _ cancel: Cancellation, _ named: @escaping @Sendable (String) -> Void) throws -> DownloadOutcome

    private struct Entry {
        var status: DownloadStatus
        var cancel: Cancellation
        var lastEvent: ContinuousClock.Instant
    }

    private struct State {
        var nextId = 1
        var entries: [Int: Entry] = [:]
        var subscribers: [Int: AsyncStream<DownloadStatus>.Continuation] = [:]
        var nextSubscriber = 1
    }

    private let state = Mutex(State())
    private let keepFinished = 100
    /// At most one progress event per download per interval (state changes always go out).
    private let eventInterval: Duration

    public init(eventInterval: Duration = .milliseconds(200)) {
        self.eventInterval = eventInterval
    }

    /// Starts `work` on a new thread; returns its id at once.
    @discardableResult
    public func start(file: String, source: String, workflow: String? = nil, _ work: @escaping Work) -> Int {
        let cancel = Cancellation()
        let start = ContinuousClock.now
        let status = state.withLock { state -> DownloadStatus in
            let id = state.nextId
            state.nextId += 1
            let status = DownloadStatus(
                id: id, file: file, source: source, workflow: workflow, state: .queued, bytes: 0, totalBytes: nil, speed: 0, startedAt: Date())
            state.entries[id] = Entry(status: status, cancel: cancel, lastEvent: start)
            prune(&state)
            return status
        }
        publish(status)
        let id = status.id
        let thread = Thread { [self] in
            let outcome: Result<DownloadOutcome, any Error>
            do {
                outcome = .success(try work(
                    { bytes, total in self.progress(id, bytes: bytes, total: total, since: start) }, cancel,
                    { name in self.update(id, event: false) { $0.file = name } }))
            } catch {
                outcome = .failure(error)
            }
            update(id, event: true) { status in
                status.finishedAt = Date()
                switch outcome {
                case let .success(result):
                    status.state = .completed
                    status.sha256 = result.digest.rawValue
                    status.path = result.path
                    status.bytes = result.size
                    status.totalBytes = result.size
                case let .failure(error):
                    if cancel.isCancelled || (error as? FetchError).map({ if case .cancelled = $0 { true } else { false } }) == true {
                        status.state = .cancelled
                        status.error = "cancelled"
                    } else {
                        status.state = .failed
                        // The API's wording: keys are sent in the request, not set in the shell.
                        let failure = APIError.from(error)
                        status.error = failure.message
                        status.requiresAuth = failure.extra["requires_auth"]
                    }
                }
            }
        }
        thread.name = "tsr-api-download-\(id)"
        thread.start()
        return id
    }

    /// Every download, newest first.
    public func list() -> [DownloadStatus] {
        state.withLock { $0.entries.values.map(\.status) }.sorted { $0.id > $1.id }
    }

    public func status(_ id: Int) -> DownloadStatus? {
        state.withLock { $0.entries[id]?.status }
    }

    /// Asks a running download to stop (its bytes so far are kept for a later resume). Returns
    /// the status, or nil for an unknown id.
    public func cancel(_ id: Int) -> DownloadStatus? {
        let entry = state.withLock { $0.entries[id] }
        guard let entry else { return nil }
        if !entry.status.state.isFinished { entry.cancel.cancel() }
        return entry.status
    }

    /// Status changes from now on (after the current list): progress at most every
    /// `eventInterval` per download, every state change.
    public func events() -> AsyncStream<DownloadStatus> {
        let (stream, continuation) = AsyncStream<DownloadStatus>.makeStream(bufferingPolicy: .bufferingNewest(1000))
        let key = state.withLock { state -> Int in
            let key = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[key] = continuation
            return key
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: key) }
        }
        return stream
    }

    // MARK: Internals

    private func progress(_ id: Int, bytes: Int64, total: Int64?, since start: ContinuousClock.Instant) {
        let now = ContinuousClock.now
        let seconds = max(0.001, (now - start) / .seconds(1))
        let due = state.withLock { state -> Bool in
            guard var entry = state.entries[id] else { return false }
            entry.status.bytes = bytes
            entry.status.totalBytes = total ?? entry.status.totalBytes
            entry.status.speed = Int64(Double(bytes) / seconds)
            let first = entry.status.state == .queued
            entry.status.state = .downloading
            let due = first || now - entry.lastEvent >= eventInterval || bytes == total
            if due { entry.lastEvent = now }
            state.entries[id] = entry
            return due
        }
        if due, let status = status(id) { publish(status) }
    }

    private func update(_ id: Int, event: Bool, _ change: (inout DownloadStatus) -> Void) {
        let status = state.withLock { state -> DownloadStatus? in
            guard var entry = state.entries[id] else { return nil }
            change(&entry.status)
            state.entries[id] = entry
            return entry.status
        }
        if event, let status { publish(status) }
    }

    private func publish(_ status: DownloadStatus) {
        let subscribers = state.withLock { Array($0.subscribers.values) }
        for subscriber in subscribers { subscriber.yield(status) }
    }

    /// Drops the oldest finished downloads beyond `keepFinished`.
    private func prune(_ state: inout State) {
        let finished = state.entries.values.filter { $0.status.state.isFinished }.map(\.status.id).sorted()
        for id in finished.dropLast(keepFinished) { state.entries.removeValue(forKey: id) }
    }
}
