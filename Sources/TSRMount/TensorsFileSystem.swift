import FUSE
import Foundation
import Logging
import Synchronization
import SystemPackage
import TSRLibrary
import TSRRegistry
import TSRStore

/// How a mount behaves.
public struct MountSettings: Sendable {
    /// Everything read-only (EROFS on every change).
    public var readOnly = false
    /// Kernel cache lifetimes, in seconds. Long, because changes are pushed to the kernel by
    /// explicit invalidation (see `TensorsFileSystem.refresh`).
    public var entryTimeout = 3600.0
    public var attributeTimeout = 3600.0
    public var negativeTimeout = 3600.0
    /// How often the registry is checked for changes made by other processes.
    public var pollInterval: Duration = .milliseconds(200)
    /// Serve reads of complete blobs by kernel passthrough when the kernel agrees (Linux >= 6.9
    /// and CAP_SYS_ADMIN); the plain path otherwise (`readPath` says which and why).
    public var passthrough = true
    /// Smaller files (sidecars, previews) stay on the plain path, so they can be rewritten
    /// through the mount while another process has them open.
    public var passthroughMinimumSize: Int64 = 1 << 20
    /// FUSE knobs, measured by bench/tuning.py (docs/PERFORMANCE.md): READDIRPLUS (a listing
    /// carries every entry's attributes), the kernel's background request limit, worker threads.
    public var readdirPlus = true
    public var maxBackground: UInt16 = 64
    public var threads = 16
    /// The largest file a write through the mount may make (EFBIG past it): a commit hashes
    /// every byte, holes included, so a one-byte write at 1 TiB would cost the daemon minutes of
    /// hashing and the store a 1 TiB blob. No diffusion model comes near it.
    public var maxFileSize: Int64 = 256 << 30
    /// After a failed download, reads of the file answer EIO at once for this long, doubled per
    /// failure up to `retryBackoffMax` (seconds).
    public var retryBackoff: TimeInterval = 60
    public var retryBackoffMax: TimeInterval = 3600
    /// Change-log rows read one by one per refresh; past this many (a large import), everything
    /// the kernel holds is refreshed instead.
    var changeLogBatch = 10_000
    /// Owner shown for every file.
    public var uid: UInt32 = getuid()
    public var gid: UInt32 = getgid()

    public init() {}

    /// Applies `TSR_MOUNT_TUNING` (`key=value,…`: entry_timeout, attr_timeout, negative_timeout in
    /// seconds, readdirplus=on|off, max_background, threads), for benchmarks; nil, or what is wrong.
    public mutating func tune(_ text: String) -> String? {
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return "'\(item)' is not key=value" }
            let (key, value) = (parts[0], parts[1])
            switch key {
            case "entry_timeout", "attr_timeout", "negative_timeout":
                guard let seconds = Double(value), seconds >= 0 else { return "\(key) needs seconds, not '\(value)'" }
                if key == "entry_timeout" { entryTimeout = seconds } else if key == "attr_timeout" { attributeTimeout = seconds } else { negativeTimeout = seconds }
            case "readdirplus":
                guard value == "on" || value == "off" else { return "readdirplus is on or off, not '\(value)'" }
                readdirPlus = value == "on"
            case "max_background":
                guard let count = UInt16(value), count > 0 else { return "max_background needs a count, not '\(value)'" }
                maxBackground = count
            case "threads":
                guard let count = Int(value), (2...256).contains(count) else { return "threads is 2 to 256, not '\(value)'" }
                threads = count
            case "max_file_size":
                guard let bytes = Int64(value), bytes > 0 else { return "max_file_size needs bytes, not '\(value)'" }
                maxFileSize = bytes
            case "retry_backoff", "retry_backoff_max":
                guard let seconds = Double(value), seconds >= 0 else { return "\(key) needs seconds, not '\(value)'" }
                if key == "retry_backoff" { retryBackoff = seconds } else { retryBackoffMax = seconds }
            default:
                return "unknown key '\(key)' (entry_timeout, attr_timeout, negative_timeout, readdirplus, max_background, threads, max_file_size, retry_backoff, retry_backoff_max)"
            }
        }
        return nil
    }
}

/// The tensors filesystem: what `PathResolver` shows, served through FUSE; reads from blob files,
/// writes into store write transactions; the kernel's cached inodes kept current from the
/// registry's change log.
///
/// Locks, in the order they may be taken: `rebuildLock` (serialises refreshes and the
/// registry/overlay changes they reflect; held across registry I/O) → `state` (short, no I/O) →
/// a `PendingWrite`'s own lock (held across its temp-file I/O, never while taking `state`).
public final class TensorsFileSystem: FileSystemHandler, @unchecked Sendable {
    // @unchecked: `session` is set once before the loop starts and only read afterwards.
    public let library: Library
    public let settings: MountSettings
    let logger: Logger
    /// Downloads bytes that are not local; without one, such reads answer EIO.
    let fetcher: (any BlobFetcher)?
    weak var session: Session?

    struct State {
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
        var writes: [AliasKey: PendingWrite] = [:]
        var handles: [UInt64: Handle] = [:]
        var nextHandle: UInt64 = 1
        /// How each inode is open, for kernel passthrough: while any open of an inode uses a
        /// backing file, every open of it must use the same one (else the kernel fails the open
        /// with EINVAL); while it is open through the page cache, passthrough is refused (ETXTBSY).
        var ioModes: [Inode: IOMode] = [:]
        var readPath: ReadPath?
        var invalidations: [Invalidation] = []
        /// Reads parked on a download in progress, by digest.
        var downloads: [Digest: [ParkedRead]] = [:]
        /// Digests with a download running (which may have no reader left waiting).
        var fetching: Set<Digest> = []
        /// Size and header region of files not here yet, as last read from the registry (a few
        /// at a time).
        var remotes: [Digest: (size: Int64, region: [UInt8]?)] = [:]
        /// What was found when a download committed: the header region served before it differed
        /// from the verified bytes (user.tsr.error).
        var notes: [Digest: String] = [:]
        /// Blobs that failed verification: handles opened on them before stop reading the moved
        /// file and fetch the content again.
        var quarantined: Set<Digest> = []
        /// Files newly quarantined whose pages the kernel may still cache: they are shown as
        /// quarantined once the invalidation that drops those pages has been sent.
        var quarantineUnflushed: Set<Inode> = []

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

    enum Invalidation {
        case entry(Inode, String)
        /// Attributes and listing; content never changes under an inode (new content, new inode).
        case inode(Inode)
        /// Attributes and cached pages: the one exception, a blob that failed verification (its
        /// pages may hold the bad bytes) and the same content fetched again under the same inode.
        case content(Inode)
    }

    let state: Mutex<State>
    /// Sends the notifications a close owes the kernel, off the FUSE workers.
    let notifier = Notifier()
    private let rebuildLock = NSLock()
    private let polls = Atomic<Int>(0)

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
        var initial = State(known: KnownInodes(root: root))
        initial.generation = start.generation
        initial.changeSeq = start.latest
        initial.quarantined = Set(try library.registry.quarantinedDigests())
        // A (re)mount tries every failed download again at its first read.
        do { try library.registry.retryFetchFailuresNow() } catch { logger.warning("resetting download back-offs: \(error)") }
        state = Mutex(initial)
    }

    deinit { notifier.stop() }

    /// What the mount shows at `path` now (nil: nothing; registry errors are thrown).
    func resolver() -> PathResolver {
        PathResolver(source: library.registry, overlay: state.withLock { $0.overlay })
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
        guard var node = state.withLock({ $0.known[inode]?.node }) else { return nil }
        node.inode = inode
        return node
    }

    /// Where an inode the kernel holds is ("" for the root; nil for an inode it does not hold).
    func path(of inode: Inode) -> String? {
        state.withLock { $0.known[inode]?.path }
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
        state.withLock { state in
            guard state.epoch == epoch else { return false }
            state.known.remember(node, at: path)
            return true
        }
    }

    /// Resolves `path` and hands its node to the kernel, asking again while changes race with it.
    func resolveForKernel(_ path: String) throws -> Node? {
        var last: Node?
        for _ in 0..<8 {
            let epoch = state.withLock { $0.epoch }
            guard let node = try resolver().node(at: path) else { return nil }
            if handOut(node, at: path, since: epoch) { return node }
            last = node
        }
        // Changes keep coming: hand out the newest answer; the next change refreshes it.
        if let last { state.withLock { $0.known.remember(last, at: path) } }
        return last
    }

    public func forget(_ items: [(inode: Inode, count: UInt64)]) {
        state.withLock { state in
            for item in items { state.known.forget(item.inode, item.count) }
        }
    }

    // MARK: Following changes

    /// Applies a change (registry writes, overlay edits; `change` runs under the rebuild lock)
    /// and refreshes what the kernel holds.
    func rebuild(_ change: (inout Overlay) throws -> Void = { _ in }) throws {
        try rebuildIfChanged({ overlay in
            try change(&overlay)
            return true
        })
    }

    /// As `rebuild`, for a change that may find nothing to do: when `change` returns false
    /// nothing is refreshed. Changes that must not interleave with a commit's recording (a
    /// write's name, its overlay entry) are made inside `change`.
    func rebuildIfChanged(_ change: (inout Overlay) throws -> Bool) throws {
        try rebuildLock.withLock {
            let before = state.withLock { $0.overlay }
            var overlay = before
            guard try change(&overlay) else { return }
            let paths = state.withLock { state in
                state.overlay = overlay
                // Paths a refresh that failed did not get to: tried again now.
                defer { state.unrefreshed.removeAll() }
                return state.unrefreshed.union(Self.changedPaths(before, overlay))
            }
            do {
                try refresh(overlayChanges: paths)
            } catch {
                // The change itself is made: what the kernel caches follows at the next poll,
                // which retries until the registry can be read.
                logger.error("refreshing the kernel's caches after a change: \(error) (retried at the next poll)")
                state.withLock { $0.unrefreshed.formUnion(paths) }
            }
        }
    }

    /// The paths shown for overlay entries that appeared, changed or left.
    static func changedPaths(_ before: Overlay, _ after: Overlay) -> Set<String> {
        var keys = Set<AliasKey>()
        for key in Set(before.pending.keys).union(after.pending.keys) {
            let (a, b) = (before.pending[key], after.pending[key])
            if a?.size != b?.size || a?.mtimeNs != b?.mtimeNs { keys.insert(key) }
        }
        for key in Set(before.emptyDirectories.keys).union(after.emptyDirectories.keys) where before.emptyDirectories[key] != after.emptyDirectories[key] {
            keys.insert(key)
        }
        return Set(keys.flatMap(shownPaths))
    }

    /// Where a folder's name is shown: in the folder and its legacy mirror.
    static func shownPaths(_ key: AliasKey) -> [String] {
        NamespaceBuilder.viewFolders(key.folder).map { key.path.isEmpty ? $0 : $0 + "/" + key.path }
    }

    /// Reads the registry's change log since the last refresh and brings every inode the kernel
    /// holds up to date, queueing the invalidations its caches need: entries whose name appeared
    /// (a negative dentry), left, or leads to other content; attributes of changed files and
    /// directories; cached pages of files that failed verification. Under the rebuild lock.
    private func refresh(overlayChanges: Set<String>) throws {
        let seq = state.withLock { $0.changeSeq }
        let log = try library.registry.mountChanges(after: seq, limit: settings.changeLogBatch)
        var paths = overlayChanges
        var aliasViews = false
        var blobViews = false
        var digests = Set<String>()
        for change in log.changes {
            if let folder = change.folder, let path = change.path {
                paths.formUnion(Self.shownPaths(AliasKey(folder: folder, path: path)))
                aliasViews = true
            } else if let digest = change.sha256 {
                digests.insert(digest)
                blobViews = true
            } else {
                aliasViews = true
                blobViews = true
            }
        }
        let everything = !log.complete
        if everything { logger.notice("more changes than the change log lists one by one (a large import, or rows pruned since this mount's last look): refreshing everything the kernel holds") }
        let (known, overlay) = state.withLock { state -> (KnownInodes, Overlay) in
            state.epoch &+= 1
            return (state.known, state.overlay)
        }
        let resolver = PathResolver(source: library.registry, overlay: overlay)

        var check = Set<Inode>()
        var drops: [(Inode, String)] = []
        if everything {
            check = Set(known.entries.keys)
            for (inode, entry) in known.entries where inode != .root {
                for parent in known.directories(at: Self.parentPath(entry.path)) { drops.append((parent, entry.node.name)) }
            }
        }
        if !paths.isEmpty { check.insert(.root) }
        for path in paths {
            // Each directory the kernel holds on the way: its attributes, and the entry of the
            // next step (which may be cached as missing: it is dropped unless known and unchanged).
            var parent = ""
            for component in path.split(separator: "/").map(String.init) {
                let parents = known.directories(at: parent)
                guard !parents.isEmpty else { break }
                check.formUnion(parents)
                let here = Self.join(parent, component)
                let held = known.inodes(at: here)
                if held.isEmpty { drops += parents.map { ($0, component) } }
                check.formUnion(held)
                parent = here
            }
        }
        if aliasViews {
            check.formUnion(known.inodes(under: "by-base"))
            check.formUnion(known.inodes(under: "by-creator"))
        }
        if blobViews {
            check.formUnion(known.inodes(under: "by-hash"))
            check.formUnion(known.inodes(under: "workflows"))
            for (inode, entry) in known.entries where entry.node.file?.sha256.map({ digests.contains($0.rawValue) }) == true {
                check.insert(inode)
            }
        }

        var updates: [(Inode, Node, follows: Bool?, names: [String]?)] = []
        var invalidations: [Invalidation] = []
        var unflushed: [Inode] = []
        for inode in check {
            guard let entry = known[inode] else { continue }
            let fresh = try resolver.node(at: entry.path)
            let parents = inode == .root ? [] : known.directories(at: Self.parentPath(entry.path))
            switch (entry.node.kind, fresh?.kind) {
            case let (.directory(before), .directory(after)?):
                var names: [String]?
                if everything || entry.names != nil || Self.isReadOnlyView(entry.path) {
                    // New names may hide negative dentries: those of a read-only view are found by
                    // comparing listings; without the change log's names, every name is dropped.
                    let listed = try resolver.listing(at: entry.path)?.map(\.name) ?? []
                    for name in everything ? Set(listed) : Set(listed).symmetricDifference(entry.names ?? []) { drops.append((inode, name)) }
                    if entry.names != nil || Self.isReadOnlyView(entry.path) { names = listed }
                }
                if before.mtimeNs != after.mtimeNs || before.subdirectories != after.subdirectories || before.target != after.target {
                    invalidations.append(.inode(inode))
                }
                updates.append((inode, fresh!, nil, names))
            case let (.file(before), .file(after)?) where fresh!.inode == inode || (entry.follows && (before.sha256 == nil || before.sha256 == after.sha256)):
                if before.state != after.state && (before.state == .quarantined || after.state == .quarantined) {
                    invalidations.append(.content(inode))
                    if after.state == .quarantined { unflushed.append(inode) }
                } else if before != after {
                    invalidations.append(.inode(inode))
                }
                updates.append((inode, fresh!, nil, nil))
            default:
                // Gone, or now other content: the inode keeps what it was (open files and cached
                // dentries may still name it) and the name is looked up again.
                drops += parents.map { ($0, entry.node.name) }
                if entry.follows { updates.append((inode, entry.node, false, nil)) }
            }
        }
        let quarantined = blobViews || everything ? Set(try library.registry.quarantinedDigests()) : nil
        state.withLock { state in
            for (inode, node, follows, names) in updates { state.known.update(inode, node: node, follows: follows, names: names) }
            state.invalidations += invalidations
            state.invalidations += drops.map { .entry($0.0, $0.1) }
            state.quarantineUnflushed.formUnion(unflushed)
            if let quarantined { state.quarantined = quarantined }
            state.generation = log.generation
            state.changeSeq = log.latest
            state.epoch &+= 1
        }
    }

    static func isReadOnlyView(_ path: String) -> Bool {
        NamespaceBuilder.viewRoots.contains { path == $0 || path.hasPrefix($0 + "/") }
    }

    /// Sends queued invalidations to the kernel. Runs on the poller thread, never inside a request
    /// handler (libfuse: notifications from a handler of a related operation can deadlock).
    func flushInvalidations() {
        let pending = state.withLock { state -> [Invalidation] in
            defer { state.invalidations.removeAll() }
            return state.invalidations
        }
        let dropped = pending.compactMap { item -> Inode? in
            if case let .content(inode) = item { return inode }
            return nil
        }
        defer { if !dropped.isEmpty { state.withLock { $0.quarantineUnflushed.subtract(dropped) } } }
        guard let session, !pending.isEmpty else { return }
        Self.deliver(pending, to: session)
    }

    /// Sends invalidations to the kernel; each may wait for a directory or page lock, so only the
    /// poller and the notifier call it, never a request handler.
    static func deliver(_ items: [Invalidation], to session: Session) {
        for item in items {
            switch item {
            case let .entry(parent, name): session.invalidateEntry(parent: parent, name: name)
            case let .inode(inode): session.invalidateInode(inode)
            case let .content(inode): session.invalidateInode(inode, data: true)
            }
        }
    }

    /// Polls between pruning the change log of rows no mount needs any more.
    static let prunePolls = 3000

    /// One poll: picks up registry changes made by other processes, then pushes invalidations.
    func poll() {
        do {
            try followChanges()
            if polls.add(1, ordering: .relaxed).newValue % Self.prunePolls == 0 { try library.registry.pruneMountChanges() }
        } catch {
            logger.error("registry poll failed: \(error)")
        }
        flushInvalidations()
    }

    /// Refreshes what the kernel holds when another process changed the registry, or when a
    /// refresh that failed is still owed (`unrefreshed`).
    func followChanges() throws {
        let generation = try library.registry.generation()
        if state.withLock({ generation != $0.generation || !$0.unrefreshed.isEmpty }) { try rebuild() }
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
            if file.pending, let key = file.alias, let write = state.withLock({ $0.writes[key] }) { size = write.size }
            let writable = file.writable && !settings.readOnly
            return Attributes(
                inode: node.inode, type: .regular, permissions: writable ? 0o644 : 0o444, size: size,
                mtimeNs: file.mtimeNs, linkCount: 1, uid: settings.uid, gid: settings.gid)
        }
    }

    func entry(_ node: Node) -> Entry {
        Entry(attributes: attributes(node), entryTimeout: node.file?.pending == true ? 0 : settings.entryTimeout,
              attributeTimeout: node.file?.pending == true ? 0 : settings.attributeTimeout)
    }

    // MARK: FileSystemHandler: reading

    public func initialize(_ connection: inout ConnectionSettings) {
        if settings.readdirPlus {
            connection.enable(ConnectionSettings.readdirPlus)
        } else {
            connection.disable(ConnectionSettings.readdirPlus)
        }
        connection.disable(ConnectionSettings.readdirPlusAuto)
        // Synchronous reads: readahead then runs in the reader's own context as requests the
        // kernel can interrupt, so a reader waiting on a download can be answered EINTR (with
        // async reads it would wait on a page lock that no interrupt reaches).
        connection.disable(ConnectionSettings.asyncRead)
        // Blobs never change under a name without the mount knowing: no automatic invalidation
        // of page cache on mtime changes, explicit invalidation instead.
        connection.disable(ConnectionSettings.autoInvalidateData)
        connection.disable(ConnectionSettings.writebackCache)
        connection.maxBackground = UInt32(settings.maxBackground)
        connection.congestionThreshold = UInt32(settings.maxBackground) * 3 / 4
        connection.timeGranularity = 1
        // Header peeks must stay inside the stored header region (HeaderRegion), which allows
        // for two readahead windows of at most this size.
        connection.maxReadahead = UInt32(HeaderRegion.readaheadLimit)
    }

    public func lookup(_ request: Request, parent: Inode, name: String) {
        guard let base = path(of: parent), let dir = resolve(parent) else { return request.reply(error: .noEntry) }
        guard dir.directory != nil else { return request.reply(error: .notDirectory) }
        do {
            guard let node = try resolveForKernel(Self.join(base, name)) else {
                return request.replyNoEntry(timeout: settings.negativeTimeout)
            }
            request.reply(entry: entry(node))
        } catch {
            // Never a negative entry for a registry that could not be read.
            logger.error("lookup '\(Self.join(base, name))': \(error)")
            request.reply(error: .io)
        }
    }

    public func getattr(_ request: Request, inode: Inode, file: FileInfo?) {
        guard let node = resolve(inode) else {
            logger.debug("getattr \(inode): not an inode the kernel holds")
            return request.reply(error: .noEntry)
        }
        let pending = node.file?.pending == true
        // fstat on a reader's handle describes the content that handle reads (§7).
        if let file, case let .blob(fd, digest)? = state.withLock({ $0.handles[file.handle] }), node.file?.sha256 != digest,
            let size = try? fd.seek(offset: 0, from: .end)
        {
            var attributes = attributes(node)
            attributes.size = size
            return request.reply(attributes: attributes, timeout: 0)
        }
        request.reply(attributes: attributes(node), timeout: pending ? 0 : settings.attributeTimeout)
    }

    public func opendir(_ request: Request, inode: Inode, file: FileInfo) {
        guard let path = path(of: inode), let node = resolve(inode) else { return request.reply(error: .noEntry) }
        guard node.directory != nil else { return request.reply(error: .notDirectory) }
        do {
            let epoch = state.withLock { $0.epoch }
            guard let nodes = try resolver().listing(at: path) else { return request.reply(error: .noEntry) }
            let entries = nodes.map { DirectoryEntry(name: $0.name, entry: entry($0)) }
            let handle = state.withLock { $0.store(.directory(Listing(path: path, nodes: nodes, entries: entries, epoch: epoch))) }
            request.reply(open: OpenOptions(handle: handle, keepCache: false))
        } catch {
            logger.error("listing '\(path)': \(error)")
            request.reply(error: .io)
        }
    }

    public func readdir(_ request: Request, inode: Inode, offset: Int, size: Int, file: FileInfo, plus: Bool) {
        guard case var .directory(listing)? = state.withLock({ $0.handles[file.handle] }) else { return request.reply(error: .badFile) }
        // READDIRPLUS hands the kernel each entry's node: one listed before a change (a write
        // committed since opendir) would replace the fresh dentry of that name with the old
        // content's inode, and an open right after the writer's close(2) would read the old bytes.
        if plus, offset < listing.entries.count, state.withLock({ $0.epoch }) != listing.epoch {
            listing = refreshed(listing, handle: file.handle)
        }
        request.reply(directory: listing.entries, offset: offset, size: size, plus: plus) { sent in
            guard plus, !sent.isEmpty else { return }
            // Each READDIRPLUS entry hands the kernel a lookup reference.
            state.withLock { state in
                for node in listing.nodes[sent] {
                    state.known.remember(node, at: Self.join(listing.path, node.name))
                    // Listed before a change the kernel has not been told about for these inodes.
                    if state.epoch != listing.epoch { state.invalidations.append(.entry(inode, node.name)) }
                }
            }
        }
    }

    /// An open directory's listing with every name that is still there resolved again (same
    /// names, same order, so offsets stay valid), remembered for the next readdir.
    func refreshed(_ listing: Listing, handle: UInt64) -> Listing {
        let epoch = state.withLock { $0.epoch }
        guard let fresh = try? resolver().listing(at: listing.path) else { return listing }
        let byName = Dictionary(fresh.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var updated = listing
        for index in updated.nodes.indices {
            guard let node = byName[updated.nodes[index].name] else { continue }
            updated.nodes[index] = node
            updated.entries[index] = DirectoryEntry(name: node.name, entry: entry(node))
        }
        updated.epoch = epoch
        state.withLock { state in
            if case .directory? = state.handles[handle] { state.handles[handle] = .directory(updated) }
        }
        return updated
    }

    public func releasedir(_ request: Request, inode: Inode, file: FileInfo) {
        _ = state.withLock { $0.handles.removeValue(forKey: file.handle) }
        request.replyOK()
    }

    public func open(_ request: Request, inode: Inode, file: FileInfo) {
        guard let node = resolve(inode) else { return request.reply(error: .noEntry) }
        guard let entry = node.file else { return request.reply(error: .isDirectory) }
        let accessMode = file.flags & O_ACCMODE
        let wantsWrite = accessMode == O_WRONLY || accessMode == O_RDWR || file.flags & O_TRUNC != 0
        // An inode open by passthrough can only be opened again by passthrough of its complete
        // blob: a write waits for those opens to close (ETXTBSY), and content that failed
        // verification since then cannot be read through that inode until they do (EIO). The
        // wait is a second in all, before and (a reader may open meanwhile) after beginning.
        let deadline = ContinuousClock.now + .seconds(1)
        if wantsWrite || entry.state != .present, openByPassthrough(inode, until: deadline) {
            let path = LogText.escaped(path(of: inode) ?? "?")
            if wantsWrite {
                logger.notice("open \(path) for writing: refused (ETXTBSY) while another process has it open by passthrough; it opens once they close it")
                return request.reply(error: .textBusy)
            }
            logger.notice("open \(path): refused (EIO) — its content is \(entry.state.rawValue) while other processes still read the old blob by passthrough; close them (or mount with --no-passthrough)")
            return request.reply(error: .io)
        }
        do {
            let handle: Handle
            if wantsWrite {
                guard entry.writable, !settings.readOnly, let key = entry.alias else { return request.reply(error: .readOnlyFileSystem) }
                handle = .pending(try beginWrite(key: key, existing: entry, truncate: file.flags & O_TRUNC != 0), writable: true)
            } else if entry.pending, let key = entry.alias {
                let write = state.withLock { $0.writes[key] }
                if let write, write.join() {
                    handle = .pending(write, writable: false)
                } else if let digest = write?.outcome ?? shownContent(inode) {
                    // Its last writer closed meanwhile: read what the write left under the name.
                    handle = .blob(try SystemCallsBridge.openBlob(store: library.store, digest: digest), digest)
                } else {
                    return request.reply(error: .noEntry)
                }
            } else if let digest = entry.sha256, entry.state == .present {
                handle = .blob(try SystemCallsBridge.openBlob(store: library.store, digest: digest), digest)
            } else if let digest = entry.sha256 {
                handle = .remote(digest)
            } else {
                return request.reply(error: .noEntry)
            }
            var admitted = admit(handle, inode: inode, size: entry.size)
            while admitted == nil, wantsWrite, openByPassthrough(inode, until: deadline) == false {
                admitted = admit(handle, inode: inode, size: entry.size)
            }
            guard let opened = admitted else {
                if case let .blob(fd, _) = handle { try? fd.close() }
                if case let .pending(write, _) = handle, write.leave() { finish(write) }
                logger.notice("open \(LogText.escaped(path(of: inode) ?? "?")): refused while another process has it open by passthrough")
                return request.reply(error: .textBusy)
            }
            // Blob content never changes under a handle: keep the page cache across opens.
            // Writes go around the page cache, so readers of the old content keep it (§7).
            let keep: Bool
            if case .blob = handle { keep = true } else { keep = false }
            request.reply(open: OpenOptions(handle: opened.id, keepCache: keep, directIO: wantsWrite, backingId: opened.backing))
        } catch {
            logger.error("open \(path(of: inode) ?? "?"): \(error)")
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    /// The complete content an inode's path shows now (a write that left the name between a
    /// lookup and an open), or nil.
    func shownContent(_ inode: Inode) -> Digest? {
        guard let current = path(of: inode).flatMap({ node(at: $0) })?.file, !current.pending, current.state == .present else { return nil }
        return current.sha256
    }

    public func read(_ request: Request, inode: Inode, size: Int, offset: Int64, file: FileInfo) {
        var stale: FileDescriptor?
        let current = state.withLock { state -> Handle? in
            guard let handle = state.handles[file.handle] else { return nil }
            // Opened before its blob failed verification: its descriptor reads the quarantined
            // file. From now on the handle waits for the content fetched again.
            if case let .blob(fd, digest) = handle, state.quarantined.contains(digest) {
                stale = fd
                state.handles[file.handle] = .remote(digest)
                return .remote(digest)
            }
            return handle
        }
        try? stale?.close()
        guard let handle = current else { return request.reply(error: .badFile) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 4096)
        defer { buffer.deallocate() }
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size])
        do {
            var filled = 0
            switch handle {
            case let .blob(fd, _):
                // pread until the request is full or the file ends (short reads are legal but
                // the kernel treats them as end of file).
                while filled < size {
                    let n = try fd.read(fromAbsoluteOffset: offset + Int64(filled), into: UnsafeMutableRawBufferPointer(rebasing: target[filled...]))
                    if n == 0 { break }
                    filled += n
                }
            case let .pending(write, _):
                while filled < size {
                    let n = try write.read(into: UnsafeMutableRawBufferPointer(rebasing: target[filled...]), at: offset + Int64(filled), store: library.store)
                    if n == 0 { break }
                    filled += n
                }
            case let .remote(digest):
                // Parked until the download completes; this worker thread returns at once.
                return readRemote(request, digest: digest, handle: file.handle, size: size, offset: offset)
            case .directory:
                return request.reply(error: .isDirectory)
            }
            request.reply(bytes: UnsafeRawBufferPointer(rebasing: target[0..<filled]))
        } catch {
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    public func release(_ request: Request, inode: Inode, file: FileInfo) {
        let handle = state.withLock { $0.handles.removeValue(forKey: file.handle) }
        if let handle { dismiss(handle, inode: inode, backingId: file.backingId) }
        switch handle {
        case let .blob(fd, _)?:
            try? fd.close()
        case let .pending(write, writable)?:
            let last = write.leave()
            var items: [Invalidation] = []
            if writable {
                do {
                    items = try commit(write)
                } catch {
                    logger.error("commit on release of \(write.name?.description ?? "an unlinked file") failed: \(error)")
                }
            }
            if last { finish(write) }
            // Nobody waits for a release: answered now, the invalidations follow on the notifier.
            request.replyOK()
            sendNow(items)
            return
        default:
            break
        }
        request.replyOK()
    }

    public func statfs(_ request: Request, inode: Inode) {
        request.reply(statfsOf: library.layout.home)
    }

    // MARK: Extended attributes

    static let xattrNames = ["user.tsr.sha256", "user.tsr.state"]

    public func getxattr(_ request: Request, inode: Inode, name: String, size: Int) {
        guard let node = resolve(inode) else { return request.reply(error: .noEntry) }
        // The mount root says how complete blobs are read: `passthrough` or `plain (why)`.
        if inode == .root && name == "user.tsr.io" {
            return request.reply(xattr: Array(readPath.description.utf8), size: size)
        }
        guard let file = node.file else { return request.reply(error: .noAttribute) }
        let value: String
        switch name {
        case "user.tsr.sha256":
            guard let digest = file.sha256 else { return request.reply(error: .noAttribute) }
            value = digest.rawValue
        case "user.tsr.state":
            value = stateName(file, inode: inode)
        case "user.tsr.error":
            guard let text = errorText(file) else { return request.reply(error: .noAttribute) }
            value = text
        default:
            return request.reply(error: .noAttribute)
        }
        request.reply(xattr: Array(value.utf8), size: size)
    }

    public func listxattr(_ request: Request, inode: Inode, size: Int) {
        guard let node = resolve(inode) else { return request.reply(error: .noEntry) }
        var names = node.file == nil ? [] : Self.xattrNames
        if node.file?.sha256 == nil { names.removeAll { $0 == "user.tsr.sha256" } }
        if let file = node.file, errorText(file) != nil { names.append("user.tsr.error") }
        if inode == .root { names.append("user.tsr.io") }
        request.reply(xattr: names.flatMap { Array($0.utf8) + [0] }, size: size)
    }
}
