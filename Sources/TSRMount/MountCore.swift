import FUSE
import Foundation
import Logging
import Synchronization
import SystemPackage
import TSRLibrary
import TSRRegistry
import TSRStore

/// The tensors filesystem's core: what `PathResolver` shows, with reads from blob files, writes
/// into store write transactions and the kernel's cached inodes kept current from the registry's
/// change log. Its operations take plain values and return results (or throw what the kernel is
/// to be told); `TensorsFileSystem` turns them into FUSE replies. Only a read that waits for a
/// download keeps its `Replier`, to answer it when the download ends.
///
/// State lives in small owners, each behind its own lock. Locks are taken in this order and
/// never the other way: `rebuildLock` (serialises refreshes and the registry/overlay changes
/// they reflect; held across registry I/O) → `names` → `handles` → `fetches` → `writes` →
/// a `PendingWrite`'s own lock (held across its temp-file I/O). Every owner's lock is short
/// (no I/O); most sites hold one at a time.
public final class MountCore: @unchecked Sendable {
    // @unchecked: `kernel` is set once before the loop starts and only read afterwards.
    public let library: Library
    public let settings: MountSettings
    let logger: Logger
    /// Downloads bytes that are not local; without one, such reads answer EIO.
    let fetcher: (any BlobFetcher)?
    /// The kernel side: passthrough backing files and invalidations (nil until mounted).
    public weak var kernel: (any KernelChannel)?

    /// What the kernel holds and what the mount adds on top of the registry; owned by the change
    /// follower (`rebuild`, `refresh`).
    struct Names {
        /// What the mount itself adds on top of the registry (names being written, mkdir'd directories).
        var overlay = Overlay()
        /// The inodes the kernel holds, with what they were last served as.
        var known: KnownInodes
        /// The registry generation and change-log row the known inodes reflect.
        var generation: Int64 = 0
        var changeSeq: Int64 = 0
        /// Bumped whenever changes are applied to `known`: a lookup that raced one asks again, so
        /// the kernel is never handed a node that the change has already passed by.
        var epoch: UInt64 = 0
        /// Overlay paths whose refresh failed (the registry could not be read): the next poll
        /// refreshes them.
        var unrefreshed: Set<String> = []
        var invalidations: [Invalidation] = []
        /// Blobs that failed verification: handles opened on them before stop reading the moved
        /// file and fetch the content again.
        var quarantined: Set<Digest> = []
        /// Files newly quarantined whose pages the kernel may still cache: they are shown as
        /// quarantined once the invalidation that drops those pages has been sent.
        var quarantineUnflushed: Set<Inode> = []
    }

    /// Open files and directories, and how each inode is open (for passthrough).
    struct HandleTable {
        var handles: [UInt64: Handle] = [:]
        var nextHandle: UInt64 = 1
        /// How each inode is open, for kernel passthrough: while any open of an inode uses a
        /// backing file, every open of it must use the same one (else the kernel fails the open
        /// with EINVAL); while it is open through the page cache, passthrough is refused (ETXTBSY).
        var ioModes: [Inode: IOMode] = [:]

        /// Keeps a handle under a new number. Numbers stay below 2^32 (a passthrough open carries
        /// its backing id in the upper half of the kernel's file handle) and are never reused
        /// while in use.
        mutating func store(_ handle: Handle) -> UInt64 {
            while handles[nextHandle] != nil { nextHandle = nextHandle % 0xFFFF_FFFF + 1 }
            let id = nextHandle
            nextHandle = nextHandle % 0xFFFF_FFFF + 1
            handles[id] = handle
            return id
        }
    }

    /// Downloads the mount started for reads of files not here.
    struct FetchTable {
        /// Reads parked on a download in progress, by digest.
        var parked: [Digest: [ParkedRead]] = [:]
        /// Digests with a download running (which may have no reader left waiting).
        var running: Set<Digest> = []
        /// Size and header region of files not here yet, as last read from the registry (a few
        /// at a time).
        var remotes: [Digest: (size: Int64, region: [UInt8]?)] = [:]
        /// What was found when a download committed: the header region served before it differed
        /// from the verified bytes (user.tsr.error).
        var notes: [Digest: String] = [:]
    }

    enum Handle {
        case blob(FileDescriptor, Digest)
        case remote(Digest)
        case pending(PendingWrite, writable: Bool)
        case directory(Listing)
    }

    /// An open directory: its listing when opened, and where it was (READDIRPLUS entries become
    /// known inodes under that path).
    struct Listing {
        var path: String
        var nodes: [Node]
        var entries: [DirectoryEntry]
        var epoch: UInt64
    }

    public enum Invalidation: Equatable, Sendable {
        case entry(Inode, String)
        /// Attributes and listing; content never changes under an inode (new content, new inode).
        case inode(Inode)
        /// Attributes and cached pages: the one exception, a blob that failed verification (its
        /// pages may hold the bad bytes) and the same content fetched again under the same inode.
        case content(Inode)
    }

    let names: Mutex<Names>
    let handles = Mutex(HandleTable())
    let fetches = Mutex(FetchTable())
    /// Write transactions by the name they will be committed under.
    let writes = Mutex<[AliasKey: PendingWrite]>([:])
    /// How complete blobs are read, decided at the first request that needs it.
    let decidedReadPath = Mutex<ReadPath?>(nil)
    /// Sends the notifications a close owes the kernel, off the FUSE workers.
    let notifier = Notifier()
    /// What reads are answered from.
    let readBuffers = ReadBuffers()
    /// Opens of content since the last flush, for the bounded cache's least-recently-used order
    /// and its hit count: written to the registry in batches by the poller, never per open.
    struct AccessLog {
        var reads: [Digest: Date] = [:]
        /// Opens of content that was here, and of content that had to be fetched.
        var hits: Int64 = 0
        var misses: Int64 = 0
    }
    let access = Mutex(AccessLog())
    /// Whether any blob is quarantined (`Names.quarantined` is not empty): a read of a complete
    /// blob looks at that set only then, so the usual read takes one lock, the handle table's.
    let anyQuarantined = Atomic<Bool>(false)
    /// The newest eviction the mount log has shown.
    let evictionsShown = Atomic<Int64>(0)
    let rebuildLock = NSLock()
    let polls = Atomic<Int>(0)

    public init(library: Library, settings: MountSettings, logger: Logger, fetcher: (any BlobFetcher)? = nil) throws {
        self.library = library
        self.settings = settings
        self.logger = logger
        self.fetcher = fetcher
        let start = try library.registry.mountChangesStart()
        guard let root = try PathResolver(source: library.registry, overlay: Overlay()).node(at: "") else {
            throw RegistryError.database("the mount root could not be built")
        }
        // Rows older than an hour are no use to this mount or any other.
        do { try library.registry.pruneMountChanges() } catch { logger.warning("pruning the change log: \(error)") }
        var initial = Names(known: KnownInodes(root: root))
        initial.generation = start.generation
        initial.changeSeq = start.latest
        initial.quarantined = Set(try library.registry.quarantinedDigests())
        // A (re)mount tries every failed download again at its first read.
        do { try library.registry.retryFetchFailuresNow() } catch { logger.warning("resetting download back-offs: \(error)") }
        anyQuarantined.store(!initial.quarantined.isEmpty, ordering: .relaxed)
        names = Mutex(initial)
        // Hits and misses count from this mount's start; evictions before it are not logged.
        do {
            try library.registry.setCounters([Self.hitsKey: 0, Self.missesKey: 0])
            evictionsShown.store(try library.registry.latestEvictionId(), ordering: .relaxed)
        } catch {
            logger.warning("starting the cache counters: \(error)")
        }
    }

    deinit { notifier.stop() }

    // MARK: Names and inodes

    /// What the mount shows now (registry errors are thrown by its queries).
    func resolver() -> PathResolver {
        PathResolver(source: library.registry, overlay: names.withLock { $0.overlay })
    }

    /// The node at a path relative to the mount root ("" is the root), or nil (also when the
    /// registry cannot be read: logged).
    public func node(at path: String) -> Node? {
        do {
            return try resolver().node(at: path)
        } catch {
            logger.error("resolving '\(path)': \(error)")
            return nil
        }
    }

    /// The node an inode the kernel holds stands for (under that inode's number, also when it
    /// follows a path that now has another).
    func resolve(_ inode: Inode) -> Node? {
        guard var node = names.withLock({ $0.known[inode]?.node }) else { return nil }
        node.inode = inode
        return node
    }

    /// Where an inode the kernel holds is ("" for the root; nil for an inode it does not hold).
    func path(of inode: Inode) -> String? {
        names.withLock { $0.known[inode]?.path }
    }

    static func join(_ parent: String, _ name: String) -> String { parent.isEmpty ? name : parent + "/" + name }

    static func parentPath(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    /// A child of a directory inode, with its path (nil when either does not exist).
    func child(of parent: Inode, named name: String) -> Node? {
        guard let base = path(of: parent), resolve(parent)?.directory != nil else { return nil }
        return node(at: Self.join(base, name))
    }

    /// Hands the kernel `node` at `path` (a lookup, create or mkdir reply): it becomes known.
    /// False when a change was applied since `epoch`, so the caller resolves again.
    func handOut(_ node: Node, at path: String, since epoch: UInt64) -> Bool {
        names.withLock { names in
            guard names.epoch == epoch else { return false }
            names.known.remember(node, at: path)
            return true
        }
    }

    /// Resolves `path` and hands its node to the kernel, asking again while changes race with it.
    func resolveForKernel(_ path: String) throws -> Node? {
        var last: Node?
        for _ in 0..<8 {
            let epoch = names.withLock { $0.epoch }
            guard let node = try resolver().node(at: path) else { return nil }
            if handOut(node, at: path, since: epoch) { return node }
            last = node
        }
        // Changes keep coming: hand out the newest answer; the next change refreshes it.
        if let last { names.withLock { $0.known.remember(last, at: path) } }
        return last
    }

    /// A name in a directory the kernel holds, handed to the kernel: nil when there is none (a
    /// negative entry). Throws ENOENT/ENOTDIR for a parent that is gone or not a directory, EIO
    /// when the registry cannot be read (never a negative entry then).
    public func lookup(parent: Inode, name: String) throws -> Node? {
        guard let base = path(of: parent), let dir = resolve(parent) else { throw Errno.noSuchFileOrDirectory }
        guard dir.directory != nil else { throw Errno.notDirectory }
        do {
            return try resolveForKernel(Self.join(base, name))
        } catch {
            logger.error("lookup '\(Self.join(base, name))': \(error)")
            throw Errno.ioError
        }
    }

    /// The kernel gives back lookup references.
    public func forget(_ items: [(inode: Inode, count: UInt64)]) {
        names.withLock { names in
            for item in items { names.known.forget(item.inode, item.count) }
        }
    }

    // MARK: Attributes

    func attributes(_ node: Node) -> Attributes {
        switch node.kind {
        case let .directory(dir):
            let writable = dir.target != nil && !settings.readOnly
            return Attributes(
                inode: node.inode, type: .directory, permissions: writable ? 0o755 : 0o555, size: 4096,
                mtimeNs: dir.mtimeNs, linkCount: UInt32(2 + dir.subdirectories), uid: settings.uid, gid: settings.gid)
        case let .file(file):
            var size = file.size
            if file.pending, let key = file.alias, let write = writes.withLock({ $0[key] }) { size = write.size }
            let writable = file.writable && !settings.readOnly
            return Attributes(
                inode: node.inode, type: .regular, permissions: writable ? 0o644 : 0o444, size: size,
                mtimeNs: file.mtimeNs, linkCount: 1, uid: settings.uid, gid: settings.gid)
        }
    }

    /// What an entry reply carries for `node`: names being written are not cached.
    public func entry(_ node: Node) -> Entry {
        Entry(attributes: attributes(node), entryTimeout: node.file?.pending == true ? 0 : settings.entryTimeout,
              attributeTimeout: node.file?.pending == true ? 0 : settings.attributeTimeout)
    }

    /// An inode's attributes and how long the kernel may keep them. With `handle`, fstat of a
    /// reader's open file describes the content that handle reads (§7).
    public func getattr(_ inode: Inode, handle: UInt64?) throws -> (attributes: Attributes, timeout: Double) {
        guard let node = resolve(inode) else {
            logger.debug("getattr \(inode): not an inode the kernel holds")
            throw Errno.noSuchFileOrDirectory
        }
        if let handle, case let .blob(fd, digest)? = handles.withLock({ $0.handles[handle] }), node.file?.sha256 != digest,
            let size = try? fd.seek(offset: 0, from: .end)
        {
            var attributes = attributes(node)
            attributes.size = size
            return (attributes, 0)
        }
        return (attributes(node), node.file?.pending == true ? 0 : settings.attributeTimeout)
    }
}
