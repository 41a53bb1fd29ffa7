import Foundation
import Synchronization
import TSRRegistry
import TSRStore

/// # TSRLibrary
///
/// The operations behind the `tsr` commands, built from the store (bytes) and the registry
/// (names): importing model trees, scanning files in place, inspecting, verifying and collecting
/// garbage. Each operation reports per-file problems instead of stopping, and orders its steps so
/// that a crash at any point loses nothing: bytes are committed before names are recorded, and
/// names are recorded before an original is removed.

/// One opened home: its blob store and its registry.
public final class Library: Sendable {
    public let layout: StoreLayout
    public let store: BlobStore
    public let registry: Registry

    /// Opens (creating if needed) the home at `home`.
    public init(home: String) throws(LibraryError) {
        layout = StoreLayout(home: home)
        do {
            store = try BlobStore(layout: layout)
        } catch {
            throw .store(error)
        }
        do {
            registry = try Registry(path: layout.database)
        } catch .full {
            // A disk too full for SQLite's shared memory: read-only work still works.
            do { registry = try Registry(readOnlyAt: layout.database) } catch { throw .registry(error) }
        } catch {
            throw .registry(error)
        }
    }
}

/// Errors of library operations that stop the whole operation (per-file problems are reported
/// as `FileIssue`s instead).
public enum LibraryError: Error, Sendable, CustomStringConvertible {
    case store(StoreError)
    case registry(RegistryError)
    case name(NameError)
    case safetensors(path: String, SafetensorsError)
    /// The argument names no file, alias or blob.
    case notFound(String)
    /// The argument is not usable (message says why).
    case invalidArgument(String)
    /// The bounded cache has no room for new bytes (what may not be evicted fills it).
    case cacheFull(CacheFull)

    public var description: String {
        switch self {
        case let .store(error): return error.description
        case let .registry(error): return error.description
        case let .name(error): return error.description
        case let .safetensors(path, error): return "\(path): \(error)"
        case let .notFound(what): return "\(what): no such file, alias (FOLDER/NAME) or SHA-256"
        case let .invalidArgument(message): return message
        case let .cacheFull(full): return full.description
        }
    }
}

extension LibraryError {
    /// Wraps an error from the layers below, keeping its kind.
    init(wrapping error: any Error) {
        switch error {
        case let error as LibraryError: self = error
        case let error as RegistryError: self = .registry(error)
        case let error as StoreError: self = .store(error)
        case let error as NameError: self = .name(error)
        default: self = .invalidArgument("\(error)")
        }
    }
}

/// Runs a body that mixes store and registry calls, reporting any failure as a `LibraryError`.
func wrappingErrors<T>(_ body: () throws -> T) throws(LibraryError) -> T {
    do {
        return try body()
    } catch {
        throw LibraryError(wrapping: error)
    }
}

/// A problem with one file; the operation went on with the others.
public struct FileIssue: Error, Sendable, Codable, Equatable {
    /// The path as it can be shown (control characters and invalid UTF-8 escaped).
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
}

/// Progress of long work, shared between the workers and whoever displays it.
public final class ProgressCounter: Sendable {
    private let done = Atomic<Int64>(0)
    private let total = Atomic<Int64>(0)
    private let files = Atomic<Int>(0)
    private let totalFiles = Atomic<Int>(0)

    public init() {}

    public func addTotal(bytes: Int64, files count: Int) {
        total.add(bytes, ordering: .relaxed)
        totalFiles.add(count, ordering: .relaxed)
    }
    public func advance(bytes: Int) { done.add(Int64(bytes), ordering: .relaxed) }
    public func fileDone() { files.add(1, ordering: .relaxed) }

    public var bytesDone: Int64 { done.load(ordering: .relaxed) }
    public var bytesTotal: Int64 { total.load(ordering: .relaxed) }
    public var filesDone: Int { files.load(ordering: .relaxed) }
    public var filesTotal: Int { totalFiles.load(ordering: .relaxed) }
}

extension Optional where Wrapped == ProgressCounter {
    /// A per-chunk callback that advances the counter, or nil without one.
    var byteSink: (@Sendable (Int) -> Void)? {
        guard let counter = self else { return nil }
        return { counter.advance(bytes: $0) }
    }
}

/// Header facts of a safetensors file, ready for the registry.
struct HeaderFacts: Sendable {
    var headerSize: Int
    var tensorCount: Int
    var baseModel: String
    var metadata: [String: String]

    init(_ header: SafetensorsHeader) {
        headerSize = header.headerSize
        tensorCount = header.tensorCount
        baseModel = BaseModel.infer(header)
        metadata = header.metadata
    }

    var metadataJSON: String {
        JSONValue.object(metadata.mapValues { .string($0) }).jsonText
    }

    /// Reads a file's header when its name says it is safetensors; an invalid one is an error.
    static func read(path: String, name: String) throws(LibraryError) -> HeaderFacts? {
        guard ModelPath.isSafetensors(name) else { return nil }
        let result: Result<SafetensorsHeader, SafetensorsError>
        do {
            result = try Safetensors.read(path: path)
        } catch {
            throw .store(error)
        }
        switch result {
        case let .success(header): return HeaderFacts(header)
        case let .failure(error): throw .safetensors(path: path, error)
        }
    }
}

extension BlobRecord {
    init(committed digest: Digest, size: Int64, facts: HeaderFacts?, verifiedAt: Date = Date()) {
        self.init(
            sha256: digest, size: size, state: .present, verifiedAt: verifiedAt,
            headerSize: facts?.headerSize, tensorCount: facts?.tensorCount, baseModel: facts?.baseModel,
            metadataJSON: facts?.metadataJSON)
    }
}

extension Library {
    /// Records committed bytes under a name (a file written through the mount, a download):
    /// the blob with its header facts when the name says safetensors, and the alias, replacing
    /// what the name pointed at before.
    @discardableResult
    public func record(_ committed: Committed, folder: String, path: String) throws(LibraryError) -> AliasChange {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        // Whatever an application wrote is kept; header facts only when the header is valid.
        let facts = try? HeaderFacts.read(path: layout.blobPath(committed.digest), name: name)
        let blob = BlobRecord(committed: committed.digest, size: committed.size, facts: facts)
        do {
            let changes = try registry.register([FileRegistration(blob: blob, alias: (folder, path), replaceAlias: true)])
            return changes.first.flatMap { $0 } ?? .created
        } catch {
            throw .registry(error)
        }
    }
}

extension Library {
    /// Registers a file whose bytes are not here yet: blob (state remote, header facts parsed
    /// from `prefix` when the name says safetensors), name, source and prefix, in one transaction.
    /// A name that already stands for other content is a `.conflict` unless `replace`.
    public func registerRemote(
        digest: Digest, size: Int64, folder: String, path: String, replace: Bool, url: String, kind: String, prefix: [UInt8]?
    ) throws(LibraryError) -> AliasChange {
        let kept = try keepWhole(digest: digest, size: size, prefix: prefix)
        let blob = remoteBlob(digest: digest, size: size, name: path, prefix: prefix)
        let item = RemoteRegistration(blob: blob, folder: folder, path: path, replace: replace, url: url, kind: kind, prefix: kept)
        do { return try registry.registerRemote(item) } catch { throw .registry(error) }
    }

    /// Registers a blob by its source alone, without a name (a workflow dependency whose name in
    /// the folder view stands for other content).
    public func registerRemoteBlob(digest: Digest, size: Int64, name: String, url: String, kind: String, prefix: [UInt8]?) throws(LibraryError) {
        let kept = try keepWhole(digest: digest, size: size, prefix: prefix)
        let blob = remoteBlob(digest: digest, size: size, name: name, prefix: prefix)
        do { try registry.registerRemoteBlob(blob, url: url, kind: kind, prefix: kept) } catch { throw .registry(error) }
    }

    /// The blob a hash names: 64 hex digits, or (as git takes commits) any unique prefix of at
    /// least 8 — the 12 that `tsr list` prints, say. nil when `text` is not hex of such a length;
    /// an unknown or ambiguous prefix is an error that says so.
    public func digest(named text: String) throws(LibraryError) -> Digest? {
        let lower = text.lowercased()
        if let full = Digest(rawValue: lower) { return full }
        guard (8..<64).contains(lower.count), lower.allSatisfy({ $0.isHexDigit }) else { return nil }
        let found: [Digest]
        do { found = try registry.digests(startingWith: lower, limit: 3) } catch { throw .registry(error) }
        switch found.count {
        case 0: throw .notFound(text)
        case 1: return found[0]
        default:
            throw .invalidArgument("\(text) is ambiguous: it begins \(found.map { $0.rawValue.prefix(16) + "…" }.joined(separator: ", "))\(found.count > 2 ? " and more" : ""); give more digits")
        }
    }

    /// A prefix that is the whole file is no prefix: its bytes are verified against the digest
    /// here and committed as the blob (so the name is `present`), or refused with both digests.
    /// Returns the prefix to keep (nil once committed); any other prefix is returned as it is.
    func keepWhole(digest: Digest, size: Int64, prefix: [UInt8]?) throws(LibraryError) -> [UInt8]? {
        guard let prefix, Int64(prefix.count) >= size else { return prefix }
        let whole = Array(prefix.prefix(Int(size)))
        let actual: Digest
        do { actual = try SHA256Hasher.digest(whole) } catch { throw .store(error) }
        guard actual == digest else { throw .store(.digestMismatch(expected: digest, actual: actual, quarantined: nil)) }
        if !store.contains(digest) {
            do { _ = try store.put(whole, expected: digest) } catch { throw .store(error) }
        }
        return nil
    }

    /// The blob row of a file not downloaded yet: header facts from its prefix when `name` says
    /// safetensors; present if the bytes happen to be here already.
    func remoteBlob(digest: Digest, size: Int64, name: String, prefix: [UInt8]?) -> BlobRecord {
        var facts: HeaderFacts?
        let last = name.split(separator: "/").last.map(String.init) ?? name
        if ModelPath.isSafetensors(last), let prefix, let header = try? Safetensors.parse(bytes: prefix, fileSize: size) {
            facts = HeaderFacts(header)
        }
        var blob = BlobRecord(committed: digest, size: size, facts: facts, verifiedAt: Date())
        blob.state = store.contains(digest) ? .present : .remote
        blob.verifiedAt = nil
        return blob
    }

    /// The blob of `digest` if its file is here, recorded present (with `name`'s header facts):
    /// what a download finds when another one, or an import, already stored the bytes. Waits for
    /// an eviction of it in progress, and then finds it gone.
    public func adoptStored(_ digest: Digest, name: String? = nil) -> Committed? {
        guard let fd = try? SystemCalls.openForReading(layout.blobPath(digest)) else { return nil }
        defer { try? fd.close() }
        SystemCalls.shareLockWaiting(fd)
        guard let status = try? SystemCalls.status(of: fd, path: layout.blobPath(digest)), status.linkCount > 0 else { return nil }
        let committed = Committed(digest: digest, size: status.size, deduplicated: true)
        try? markDownloaded(committed, name: name)
        return committed
    }

    /// Records that a download committed a blob: state present, header facts read from the bytes
    /// when one of its names (or `name`) says safetensors.
    public func markDownloaded(_ committed: Committed, name: String? = nil) throws(LibraryError) {
        let names = ((try? registry.aliases(of: committed.digest)) ?? []).map(\.path) + [name].compactMap { $0 }
        let facts = names.first(where: ModelPath.isSafetensors).flatMap { try? HeaderFacts.read(path: layout.blobPath(committed.digest), name: $0) }
        do { try registry.markDownloaded(BlobRecord(committed: committed.digest, size: committed.size, facts: facts)) } catch { throw .registry(error) }
    }
}
