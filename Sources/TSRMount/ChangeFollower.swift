import FUSE
import Foundation
import TSRLibrary
import TSRRegistry
import TSRStore

/// The change follower: applies the mount's own changes (registry writes, overlay edits) and
/// other processes' (the registry's change log, polled), and brings every inode the kernel
/// holds up to date, queueing the invalidations its caches need.
extension MountCore {
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
            let before = names.withLock { $0.overlay }
            var overlay = before
            guard try change(&overlay) else { return }
            let paths = names.withLock { names in
                names.overlay = overlay
                // Paths a refresh that failed did not get to: tried again now.
                defer { names.unrefreshed.removeAll() }
                return names.unrefreshed.union(Self.changedPaths(before, overlay))
            }
            do {
                try refresh(overlayChanges: paths)
            } catch {
                // The change itself is made: what the kernel caches follows at the next poll,
                // which retries until the registry can be read.
                logger.error("refreshing the kernel's caches after a change: \(error) (retried at the next poll)")
                names.withLock { $0.unrefreshed.formUnion(paths) }
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
        ViewNaming.viewFolders(key.folder).map { key.path.isEmpty ? $0 : $0 + "/" + key.path }
    }

    /// Reads the registry's change log since the last refresh and brings every inode the kernel
    /// holds up to date, queueing the invalidations its caches need: entries whose name appeared
    /// (a negative dentry), left, or leads to other content; attributes of changed files and
    /// directories; cached pages of files that failed verification. Under the rebuild lock.
    func refresh(overlayChanges: Set<String>) throws {
        let seq = names.withLock { $0.changeSeq }
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
        let (known, overlay) = names.withLock { names -> (KnownInodes, Overlay) in
            names.epoch &+= 1
            return (names.known, names.overlay)
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
                var shown: [String]?
                if everything || entry.names != nil || Self.isReadOnlyView(entry.path) {
                    // New names may hide negative dentries: those of a read-only view are found by
                    // comparing listings; without the change log's names, every name is dropped.
                    let listed = try resolver.listing(at: entry.path)?.map(\.name) ?? []
                    for name in everything ? Set(listed) : Set(listed).symmetricDifference(entry.names ?? []) { drops.append((inode, name)) }
                    if entry.names != nil || Self.isReadOnlyView(entry.path) { shown = listed }
                }
                if before.mtimeNs != after.mtimeNs || before.subdirectories != after.subdirectories || before.target != after.target {
                    invalidations.append(.inode(inode))
                }
                updates.append((inode, fresh!, nil, shown))
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
        names.withLock { names in
            for (inode, node, follows, listed) in updates { names.known.update(inode, node: node, follows: follows, names: listed) }
            names.invalidations += invalidations
            names.invalidations += drops.map { .entry($0.0, $0.1) }
            names.quarantineUnflushed.formUnion(unflushed)
            if let quarantined {
                names.quarantined = quarantined
                anyQuarantined.store(!quarantined.isEmpty, ordering: .relaxed)
            }
            names.generation = log.generation
            names.changeSeq = log.latest
            names.epoch &+= 1
        }
    }

    static func isReadOnlyView(_ path: String) -> Bool { ViewNaming.isReadOnlyView(path) }

    /// Sends queued invalidations to the kernel. Runs on the poller thread, never inside a request
    /// handler (libfuse: notifications from a handler of a related operation can deadlock).
    func flushInvalidations() {
        let pending = names.withLock { names -> [Invalidation] in
            defer { names.invalidations.removeAll() }
            return names.invalidations
        }
        let dropped = pending.compactMap { item -> Inode? in
            if case let .content(inode) = item { return inode }
            return nil
        }
        defer { if !dropped.isEmpty { names.withLock { $0.quarantineUnflushed.subtract(dropped) } } }
        guard let kernel, !pending.isEmpty else { return }
        Self.deliver(pending, to: kernel)
    }

    /// Sends invalidations to the kernel; each may wait for a directory or page lock, so only the
    /// poller and the notifier call it, never a request handler.
    static func deliver(_ items: [Invalidation], to kernel: any KernelChannel) {
        for item in items {
            switch item {
            case let .entry(parent, name): kernel.invalidateEntry(parent: parent, name: name)
            case let .inode(inode): kernel.invalidateInode(inode, data: false)
            case let .content(inode): kernel.invalidateInode(inode, data: true)
            }
        }
    }

    /// Polls between pruning the change log of rows no mount needs any more.
    static let prunePolls = 3000
    /// Polls between writing the opens seen to the registry and logging new evictions.
    static let accessPolls = 25
    static let hitsKey = "mount_hits"
    static let missesKey = "mount_misses"

    /// One poll: picks up registry changes made by other processes, then pushes invalidations.
    func poll() {
        do {
            try followChanges()
            let count = polls.add(1, ordering: .relaxed).newValue
            if count % Self.prunePolls == 0 { try library.registry.pruneMountChanges() }
            if count % Self.accessPolls == 0 { flushAccess() }
        } catch {
            logger.error("registry poll failed: \(error)")
        }
        flushInvalidations()
    }

    /// Writes the opens seen since the last flush (last reads, hits, misses) in one transaction,
    /// and logs evictions made since the last look (by this mount's downloads or any other tsr).
    func flushAccess() {
        let log = access.withLock { log -> AccessLog in
            defer { log = AccessLog() }
            return log
        }
        do {
            try library.registry.recordAccess(log.reads)
            try library.registry.addToCounters([Self.hitsKey: log.hits, Self.missesKey: log.misses])
        } catch {
            logger.warning("recording reads for the cache: \(error) (kept for the next flush)")
            access.withLock { current in
                current.reads.merge(log.reads) { max($0, $1) }
                current.hits += log.hits
                current.misses += log.misses
            }
        }
        do {
            let seen = evictionsShown.load(ordering: .relaxed)
            let new = try library.registry.evictions(after: seen)
            for row in new.rows { logger.notice("evicted \(row.sha256.short) (\(ByteCount.text(row.size))) to keep the cache under its limit; its names stay and it is fetched again on the next read") }
            evictionsShown.store(new.latest, ordering: .relaxed)
        } catch {
            logger.warning("reading the eviction log: \(error)")
        }
    }

    /// Refreshes what the kernel holds when another process changed the registry, or when a
    /// refresh that failed is still owed (`unrefreshed`).
    func followChanges() throws {
        let generation = try library.registry.generation()
        if names.withLock({ generation != $0.generation || !$0.unrefreshed.isEmpty }) { try rebuild() }
    }
}
