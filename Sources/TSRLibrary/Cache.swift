import Foundation
import Glibc
import TSRRegistry
import TSRStore

/// What `tsr cache` shows: the bytes here and what may become of them.
public struct CacheStatus: Sendable, Encodable, Equatable {
    /// Bytes of every blob that is here.
    public var size: Int64 = 0
    public var blobs = 0
    /// The limit (nil: none), and where it comes from ("home", "TSR_CACHE_LIMIT").
    public var limit: Int64?
    public var limitSource: String?
    /// The free-space floor (`10%`, `50.0 GiB`), nil without one.
    public var minFree: String?
    /// Pinned: never evicted.
    public var pinned: Int64 = 0
    /// Could be evicted: a source to fetch them again from, not pinned.
    public var evictable: Int64 = 0
    /// Never evicted because nothing could fetch them again (imported from a local file, or
    /// written through the mount).
    public var unevictable: Int64 = 0
    /// Opens through the mount since it started: of content that was here, and of content that
    /// had to be fetched (written by the mount every few seconds).
    public var hits: Int64 = 0
    public var misses: Int64 = 0
    public var recentEvictions: [Eviction] = []

    public struct Eviction: Sendable, Encodable, Equatable {
        public var sha256: String
        public var size: Int64
        /// When, as ISO 8601 (UTC).
        public var at: String
    }

    enum CodingKeys: String, CodingKey {
        case size, blobs, limit, limitSource = "limit_source", minFree = "min_free", pinned, evictable, unevictable, hits, misses
        case recentEvictions = "recent_evictions"
    }
}

/// One cleanup's outcome.
public struct EvictionReport: Sendable, Encodable, Equatable {
    public struct Evicted: Sendable, Encodable, Equatable {
        public var sha256: String
        public var size: Int64
    }
    public var evicted: [Evicted] = []
    public var freed: Int64 = 0
    /// Bytes here after the cleanup.
    public var remaining: Int64 = 0
    public var target: Int64 = 0
    /// What stood in the way when the target was not reached: pinned bytes, bytes in use by a
    /// reader, bytes nothing could fetch again.
    public var pinned: Int64 = 0
    public var inUse: Int64 = 0
    public var unevictable: Int64 = 0
    public var reached: Bool { remaining <= target }

    enum CodingKeys: String, CodingKey {
        case evicted, freed, remaining, target, pinned, unevictable
        case inUse = "in_use"
    }
}

/// Room for new bytes could not be made: what may not be evicted fills the cache.
public struct CacheFull: Error, Sendable, Equatable, CustomStringConvertible {
    public var needed: Int64
    public var limit: Int64
    public var size: Int64
    public var pinned: Int64
    public var inUse: Int64
    public var unevictable: Int64

    public var description: String {
        let t = ByteCount.text
        return "cache full: \(t(pinned)) pinned, \(t(inUse)) open, \(t(unevictable)) with no source to fetch again; \(t(needed)) more would pass the limit of \(t(limit)) (\(t(size)) here). Raise it (tsr cache limit), unpin (tsr unpin) or close files"
    }
}

/// The bounded cache (docs/SEMANTICS.md §11): blobs whose bytes can be fetched again and
/// verified — a recorded source — may be evicted, least recently used first, unless pinned or in
/// use; an evicted blob turns `remote` with its header region kept, so its names stay exactly as
/// they were and the next read fetches it again.
public struct Cache: Sendable {
    public let library: Library
    /// Free and total bytes of the disk the home is on (statvfs); tests give their own.
    let diskSpace: @Sendable () -> (available: Int64, total: Int64)?

    public init(library: Library) {
        self.library = library
        let home = library.layout.home
        diskSpace = { Self.diskSpace(of: home) }
    }

    init(library: Library, diskSpace: @escaping @Sendable () -> (available: Int64, total: Int64)?) {
        self.library = library
        self.diskSpace = diskSpace
    }

    static func diskSpace(of path: String) -> (available: Int64, total: Int64)? {
        var st = statvfs()
        guard statvfs(path, &st) == 0 else { return nil }
        return (Int64(st.f_bavail) * Int64(st.f_frsize), Int64(st.f_blocks) * Int64(st.f_frsize))
    }

    /// A free-space floor: a share of the disk (`10%`) or bytes (`50G`).
    public enum MinFree: Sendable, Equatable, CustomStringConvertible {
        case percent(Double)
        case bytes(Int64)

        public static func parse(_ text: String) -> MinFree? {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed.hasSuffix("%") {
                guard let value = Double(trimmed.dropLast()), value >= 0, value < 100 else { return nil }
                return .percent(value)
            }
            return Cache.parseSize(trimmed).map { .bytes($0) }
        }

        /// The bytes to keep free on a disk of `total` bytes.
        public func bytes(ofDisk total: Int64) -> Int64 {
            switch self {
            case let .percent(value): Int64(Double(total) * value / 100)
            case let .bytes(value): value
            }
        }

        public var description: String {
            switch self {
            case .percent: stored
            case let .bytes(value): ByteCount.text(value)
            }
        }

        /// As stored in the home and read back by `parse`: `10%`, or bytes.
        var stored: String {
            switch self {
            case let .percent(value): value == value.rounded() ? "\(Int(value))%" : "\(value)%"
            case let .bytes(value): String(value)
            }
        }
    }

    /// The free-space floor in force: `TSR_CACHE_MIN_FREE` when set, else the home's.
    public func minFree(environment: [String: String] = ProcessInfo.processInfo.environment) throws(LibraryError) -> MinFree? {
        if let text = environment["TSR_CACHE_MIN_FREE"], !text.isEmpty {
            if text == "none" || text == "0" { return nil }
            guard let parsed = MinFree.parse(text) else { throw .invalidArgument("TSR_CACHE_MIN_FREE=\(text) is not a share of the disk (10%) or a size (50G)") }
            return parsed
        }
        let stored: String?
        do { stored = try library.registry.cacheMinFree() } catch { throw .registry(error) }
        return stored.flatMap(MinFree.parse)
    }

    /// Stores the home's free-space floor (nil: none).
    public func setMinFree(_ floor: MinFree?) throws(LibraryError) {
        do { try library.registry.setCacheMinFree(floor?.stored) } catch { throw .registry(error) }
    }

    /// The limit in force: `TSR_CACHE_LIMIT` when set, else the home's (`tsr cache limit`).
    public func limit(environment: [String: String] = ProcessInfo.processInfo.environment) throws(LibraryError) -> (bytes: Int64?, source: String?) {
        if let text = environment["TSR_CACHE_LIMIT"], !text.isEmpty {
            guard let parsed = Self.parseLimit(text) else { throw .invalidArgument("TSR_CACHE_LIMIT=\(text) is not a size (200G, 512M, bytes) or none") }
            return (parsed.bytes, "TSR_CACHE_LIMIT")
        }
        let stored: Int64?
        do { stored = try library.registry.cacheLimit() } catch { throw .registry(error) }
        return (stored, stored == nil ? nil : "home")
    }

    /// The blobs `names` stand for: names as `folder/path` (a name of the library) or SHA-256s (a
    /// unique prefix of at least 8 digits). An unknown name is an error naming it.
    public func digests(for names: [String]) throws(LibraryError) -> [Digest] {
        var found: [Digest] = []
        for name in names {
            if let digest = try library.digest(named: name) {
                let known: Bool
                do { known = try library.registry.blob(digest) != nil } catch { throw .registry(error) }
                guard known else { throw .notFound(name) }
                found.append(digest)
                continue
            }
            guard let (folder, path) = try? ModelPath.parseAlias(name) else { throw .notFound(name) }
            let alias: AliasRecord?
            do { alias = try library.registry.alias(folder: folder, path: path) } catch { throw .registry(error) }
            guard let alias else { throw .notFound(name) }
            found.append(alias.sha256)
        }
        return found
    }

    /// Every registered blob a workflow needs (entries not resolved to a hash yet have none).
    public func workflowDigests(_ name: String) throws(LibraryError) -> [Digest] {
        do {
            let (_, entries) = try library.registry.workflow(named: name)
            return Array(Set(entries.compactMap { $0.state == nil ? nil : $0.entry.sha256 })).sorted { $0.rawValue < $1.rawValue }
        } catch {
            throw .registry(error)
        }
    }

    /// Pins blobs (never evicted); how many were not pinned before.
    @discardableResult
    public func pin(_ digests: [Digest]) throws(LibraryError) -> Int {
        do { return try library.registry.pin(digests) } catch { throw .registry(error) }
    }

    /// Unpins blobs; how many were pinned.
    @discardableResult
    public func unpin(_ digests: [Digest]) throws(LibraryError) -> Int {
        do { return try library.registry.unpin(digests) } catch { throw .registry(error) }
    }

    /// Stores the home's limit (nil: none).
    public func setLimit(_ bytes: Int64?) throws(LibraryError) {
        do { try library.registry.setCacheLimit(bytes) } catch { throw .registry(error) }
    }

    public func status(environment: [String: String] = ProcessInfo.processInfo.environment) throws(LibraryError) -> CacheStatus {
        var status = CacheStatus()
        (status.limit, status.limitSource) = try limit(environment: environment)
        status.minFree = try minFree(environment: environment)?.description
        do {
            let totals = try library.registry.cacheTotals()
            (status.size, status.blobs, status.pinned, status.unevictable) = (totals.size, totals.blobs, totals.pinned, totals.sourceless)
            status.evictable = totals.size - totals.pinned - totals.sourceless
            status.hits = try library.registry.counter("mount_hits")
            status.misses = try library.registry.counter("mount_misses")
            status.recentEvictions = try library.registry.recentEvictions(limit: 5).map { .init(sha256: $0.sha256.rawValue, size: $0.size, at: $0.at.formatted(.iso8601)) }
        } catch {
            throw .registry(error)
        }
        return status
    }

    /// After a cleanup, the bytes here are at most this share of the limit (less what is about to
    /// be written), so that not every download has to evict.
    public static let lowWater = 0.9

    /// Makes room for `bytes` more under `limit` (the limit in force when nil; nothing to do
    /// without one): when they would pass it, evicts down to the low-water mark. Throws
    /// `CacheFull` when what may not be evicted leaves no room. The evictions made, or nil.
    @discardableResult
    public func makeRoom(for bytes: Int64, limit: Int64? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws(LibraryError) -> EvictionReport? {
        var inForce = limit
        if inForce == nil { inForce = try self.limit(environment: environment).bytes }
        let floor = try minFree(environment: environment)
        guard inForce != nil || floor != nil else { return nil }
        let size: Int64
        do { size = try library.registry.presentBytes() } catch { throw .registry(error) }
        // A free-space floor is a limit too: what is here plus what may still be written while
        // keeping that much of the disk free.
        if let floor, let disk = diskSpace() {
            let roomy = size + disk.available - floor.bytes(ofDisk: disk.total)
            inForce = min(inForce ?? Int64.max, max(0, roomy))
        }
        guard let limit = inForce, size + bytes > limit else { return nil }
        let target = max(0, min(Int64(Double(limit) * Self.lowWater), limit - bytes))
        let report = try evict(downTo: target, from: size)
        if report.remaining + bytes > limit {
            throw .cacheFull(CacheFull(needed: bytes, limit: limit, size: report.remaining, pinned: report.pinned, inUse: report.inUse, unevictable: report.unevictable))
        }
        return report
    }

    /// Evicts least recently used blobs until the bytes here are at most `target` (or nothing
    /// more may go). `dryRun` evicts nothing and reports what would go.
    public func evict(downTo target: Int64, dryRun: Bool = false) throws(LibraryError) -> EvictionReport {
        let size: Int64
        do { size = try library.registry.presentBytes() } catch { throw .registry(error) }
        return try evict(downTo: target, from: size, dryRun: dryRun)
    }

    /// Walks the candidates in least-recently-used order, a page at a time, and stops as soon
    /// as enough is freed: choosing costs the same among a million blobs as among ten.
    func evict(downTo target: Int64, from size: Int64, dryRun: Bool = false) throws(LibraryError) -> EvictionReport {
        var report = EvictionReport()
        report.target = target
        var remaining = size
        var key: String?
        walk: while remaining > target {
            let page: [CacheEntry]
            do { page = try library.registry.evictionCandidates(after: key) } catch { throw .registry(error) }
            guard let last = page.last else { break }
            key = last.lastUseKey
            for entry in page {
                guard remaining > target else { break walk }
                if dryRun {
                    if SystemCalls.isInUse(library.layout.blobPath(entry.sha256)) {
                        report.inUse += entry.size
                        continue
                    }
                } else if try !evictOne(entry) {
                    report.inUse += entry.size
                    continue
                }
                report.evicted.append(.init(sha256: entry.sha256.rawValue, size: entry.size))
                report.freed += entry.size
                remaining -= entry.size
            }
        }
        report.remaining = remaining
        if remaining > target {
            // Short of the target: say what stood in the way.
            do {
                let totals = try library.registry.cacheTotals()
                (report.pinned, report.unevictable) = (totals.pinned, totals.sourceless)
            } catch {
                throw .registry(error)
            }
        }
        return report
    }

    /// Evicts one blob unless a reader has it open (false then). Under the blob file's exclusive
    /// lock, which no reader holds (they hold shared ones) and which `Library.adoptStored` waits
    /// for: its header region is kept (stored now if it was not), the registry says `remote`
    /// first, then the file goes. A crash between leaves a file the next read adopts (verified)
    /// or `tsr gc` removes, never a name the registry calls present without its bytes.
    func evictOne(_ entry: CacheEntry) throws(LibraryError) -> Bool {
        let path = library.layout.blobPath(entry.sha256)
        guard let fd = try? SystemCalls.openForReading(path) else { return true }
        defer { try? fd.close() }
        guard SystemCalls.tryLock(fd) else { return false }
        let prefix = entry.hasPrefix ? nil : headerRegion(entry)
        do { try library.registry.markEvicted(entry.sha256, prefix: prefix) } catch { throw .registry(error) }
        do {
            try library.store.remove(entry.sha256)
        } catch {
            // Gone already (moved to quarantine by a verify meanwhile): nothing left to remove.
            guard case let .io(_, _, code) = error, code == .noSuchFileOrDirectory else { throw .store(error) }
        }
        return true
    }

    /// The header region of a blob that is here, read from its file: what header peeks of its
    /// names are answered from once it is gone (nil when there is none to keep).
    func headerRegion(_ entry: CacheEntry) -> [UInt8]? {
        let names = ((try? library.registry.aliases(of: entry.sha256)) ?? []).map(\.path)
        let safetensors = names.contains { ModelPath.isSafetensors(String($0.split(separator: "/").last ?? "")) }
        guard let fd = try? SystemCalls.openForReading(library.layout.blobPath(entry.sha256)) else { return nil }
        defer { try? fd.close() }
        var lengthBytes = [UInt8](repeating: 0, count: 8)
        let got = (try? lengthBytes.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }) ?? 0
        let headerLength = got == 8 ? Safetensors.headerLength(lengthBytes) : nil
        guard let length = HeaderRegion.prefixLength(safetensors: safetensors, headerLength: headerLength, fileSize: entry.size),
            length < entry.size  // a whole small file would be kept unverified: fetched again instead
        else { return nil }
        var bytes = [UInt8](repeating: 0, count: length)
        let read = (try? bytes.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }) ?? 0
        return read == length ? bytes : nil
    }

    /// A limit as `tsr cache limit` and `TSR_CACHE_LIMIT` take it.
    public enum Limit: Sendable, Equatable {
        case unlimited
        case bytes(Int64)

        public var bytes: Int64? {
            if case let .bytes(value) = self { return value }
            return nil
        }
    }

    /// Bytes, or a number with K, M, G or T (powers of 1024, optionally followed by "B" or
    /// "iB"); `0` and `none` mean no limit. nil when `text` is neither.
    public static func parseLimit(_ text: String) -> Limit? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.lowercased() == "none" || trimmed == "0" { return .unlimited }
        guard let bytes = parseSize(trimmed), bytes > 0 else { return nil }
        return .bytes(bytes)
    }

    /// Bytes from "200G", "512MiB", "1.5T", "1048576".
    public static func parseSize(_ text: String) -> Int64? {
        var number = text.uppercased()
        for suffix in ["IB", "B"] where number.hasSuffix(suffix) && number.count > suffix.count {
            number.removeLast(suffix.count)
            break
        }
        var scale: Double = 1
        if let last = number.last, let power = ["K": 1.0, "M": 2, "G": 3, "T": 4][String(last)] {
            scale = pow(1024, power)
            number.removeLast()
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let bytes = (value * scale).rounded()
        guard bytes < Double(Int64.max) else { return nil }
        return Int64(bytes)
    }
}
