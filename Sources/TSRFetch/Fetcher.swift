import Dispatch
import Foundation
import Synchronization
import TSRLibrary
import TSRRegistry
import TSRStore

/// What everything else calls to get bytes: the mount's lazy reads, `tsr pull`, workflows.
/// One download per file whatever the number of callers: callers in this process join one
/// flight; a download running in another process holds the partial file's lock, and a caller
/// here waits for its blob instead of downloading it again.
public final class Fetcher: Sendable {
    public let library: Library
    public let settings: FetchSettings
    public let credentials: Credentials
    private let flights: Flights

    public init(library: Library, settings: FetchSettings, credentials: Credentials) {
        self.library = library
        self.settings = settings
        self.credentials = credentials
        self.flights = Flights()
    }

    private init(library: Library, settings: FetchSettings, credentials: Credentials, flights: Flights) {
        self.library = library
        self.settings = settings
        self.credentials = credentials
        self.flights = flights
    }

    /// The same fetcher with other credentials (keys given with one API request): its downloads
    /// still join, and are joined by, this fetcher's flights.
    public func with(credentials: Credentials) -> Fetcher {
        Fetcher(library: library, settings: settings, credentials: credentials, flights: flights)
    }

    public var resolver: SourceResolver { SourceResolver(settings: settings, credentials: credentials) }
    var downloader: Downloader { Downloader(store: library.store, registry: library.registry, settings: settings, credentials: credentials) }

    /// Makes a registered blob present: from each recorded source in turn until one works.
    public func fetch(_ digest: Digest, progress: DownloadProgress? = nil, cancel: Cancellation? = nil) throws(FetchError) -> Committed {
        if let stored = library.adoptStored(digest) { return stored }
        let blob: BlobRecord?
        let sources: [SourceRecord]
        do {
            blob = try library.registry.blob(digest)
            sources = try library.registry.sources(of: digest)
        } catch {
            throw .registry(error)
        }
        guard !sources.isEmpty else { throw .noSource(digest) }
        return try collapsed(key: digest.rawValue, progress: progress) { () throws(FetchError) -> Committed in
            var last: FetchError = .noSource(digest)
            for source in sources {
                var seeded = (try? library.registry.hasPrefix(digest)) == true
                while true {
                    do throws(FetchError) {
                        let url = try downloadURL(for: source.url)
                        let request = DownloadRequest(url: url, expected: digest, expectedSize: blob?.size)
                        return try download(request, name: nil, progress: { self.report(digest.rawValue, $0, $1) }, cancel: cancel)
                    } catch {
                        if case .cancelled = error { throw error }
                        // Wrong bytes: the stored header region may be what was wrong (a download
                        // continues after it). It is dropped, and a download that started from it
                        // is tried once more from the first byte.
                        if case .digestMismatch = error {
                            try? library.registry.dropPrefix(digest)
                            if seeded {
                                seeded = false
                                continue
                            }
                        }
                        last = error
                        break
                    }
                }
            }
            throw last
        }
    }

    /// Downloads a resolved file now (`tsr pull`): verified against its digest when the source
    /// told one, else trusted on this first download. The blob is recorded present; naming it is
    /// the caller's.
    public func download(_ file: RemoteFile, progress: DownloadProgress? = nil, cancel: Cancellation? = nil) throws(FetchError) -> Committed {
        let request = DownloadRequest(url: file.downloadURL, expected: file.digest, expectedSize: file.size)
        return try collapsed(key: request.key, progress: progress) { () throws(FetchError) -> Committed in
            try download(request, name: file.fileName, progress: { self.report(request.key, $0, $1) }, cancel: cancel)
        }
    }

    /// The first URL for a stored source, on the configured endpoints.
    func downloadURL(for stored: String) throws(FetchError) -> String {
        let (spec, _) = try SourceSpec.parse(stored, settings: settings)
        if let url = spec.downloadURL(settings: settings) { return url }
        // civitai:<model> without a version: ask the API which file that is.
        return try resolver.resolve(spec, readPrefix: false).downloadURL
    }

    /// One download, waiting while another process holds the same partial file.
    private func download(_ request: DownloadRequest, name: String?, progress: DownloadProgress?, cancel: Cancellation?) throws(FetchError) -> Committed {
        while true {
            if let digest = request.expected, let stored = library.adoptStored(digest, name: name) { return stored }
            do throws(FetchError) {
                try makeRoom(for: request.expectedSize ?? 0)
                let committed = try downloader.download(request, progress: progress, cancel: cancel)
                do { try library.markDownloaded(committed, name: name) } catch { throw FetchError.registry(registryError(error)) }
                // A download is a use: the newest content is the last to be evicted.
                try? library.registry.recordAccess([committed.digest: Date()])
                return committed
            } catch {
                guard case let .store(inner) = error, case .busy = inner else { throw error }
            }
            // Another process is downloading it: wait until it lets go (its blob is then there,
            // or its partial bytes are ours to resume).
            while isLockedElsewhere(request.key) {
                if cancel?.isCancelled == true { throw .cancelled }
                progress?(library.store.partialSize(request.key), request.expectedSize)
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
    }

    /// Makes room in the bounded cache before bytes are written (docs/SEMANTICS.md §11): evicts
    /// least recently used blobs when the download would pass the limit, or refuses it when what
    /// may not be evicted leaves no room. Nothing to do without a limit.
    private func makeRoom(for bytes: Int64) throws(FetchError) {
        do {
            try Cache(library: library).makeRoom(for: bytes, limit: settings.cacheLimit)
        } catch {
            switch error {
            case let .cacheFull(full): throw .cacheFull(full)
            case let .registry(inner): throw .registry(inner)
            case let .store(inner): throw .store(inner)
            default: throw .registry(.database(error.description))
            }
        }
    }

    private func registryError(_ error: LibraryError) -> RegistryError {
        if case let .registry(inner) = error { return inner }
        return .database(error.description)
    }

    /// True while another writer holds the partial file's lock.
    private func isLockedElsewhere(_ key: String) -> Bool {
        SystemCalls.isLockedElsewhere(library.store.partialPath(key))
    }

    // MARK: Flights

    final class Flights: Sendable {
        let table = Mutex<[String: Flight]>([:])
        func withLock<T>(_ body: (inout [String: Flight]) -> T) -> T { table.withLock { body(&$0) } }
    }

    final class Flight: Sendable {
        let group = DispatchGroup()
        let result = Mutex<Result<Committed, FetchError>?>(nil)
        let observers = Mutex<[DownloadProgress]>([])
        /// The last progress reported, for callers that join later.
        let last = Mutex<(bytes: Int64, total: Int64?)?>(nil)
    }

    private func report(_ key: String, _ bytes: Int64, _ total: Int64?) {
        let flight = flights.withLock { $0[key] }
        flight?.last.withLock { $0 = (bytes, total) }
        let observers = flight?.observers.withLock { $0 } ?? []
        for observer in observers { observer(bytes, total) }
    }

    /// Runs `work` once per key at a time; concurrent callers wait for its result.
    private func collapsed(key: String, progress: DownloadProgress?, _ work: () throws(FetchError) -> Committed) throws(FetchError) -> Committed {
        let (flight, leader) = flights.withLock { flights -> (Flight, Bool) in
            if let existing = flights[key] { return (existing, false) }
            let flight = Flight()
            flight.group.enter()
            flights[key] = flight
            return (flight, true)
        }
        if let progress {
            flight.observers.withLock { $0.append(progress) }
            // A caller joining a running download sees where it stands at once.
            if !leader, let last = flight.last.withLock({ $0 }) { progress(last.bytes, last.total) }
        }
        if leader {
            let outcome: Result<Committed, FetchError>
            do { outcome = .success(try work()) } catch { outcome = .failure(error) }
            flight.result.withLock { $0 = outcome }
            flights.withLock { _ = $0.removeValue(forKey: key) }
            flight.group.leave()
            return try outcome.get()
        }
        flight.group.wait()
        guard let outcome = flight.result.withLock({ $0 }) else { throw .cancelled }
        return try outcome.get()
    }
}
