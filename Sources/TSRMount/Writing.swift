import FUSE
import Foundation
import Synchronization
import TSRLibrary
import TSRRegistry
import TSRStore

/// Writes through folder views: new files stream into store write transactions and become
/// aliases when committed (on flush, i.e. close(2), or release); renames and unlinks change
/// aliases; mkdir/rmdir manage directories that hold nothing yet.
extension MountCore {
    static var nowNs: Int64 { Clock.nowNs() }
    /// Numbers the writes shown in the overlay (`FileNode.pendingSerial`).
    static let writeSerials = Atomic<UInt64>(0)

    /// The writable directory a request targets, or the errno to answer.
    func writableDirectory(_ inode: Inode) -> Result<(Node, AliasKey), Errno> {
        guard let node = resolve(inode) else { return .failure(.noSuchFileOrDirectory) }
        guard let dir = node.directory else { return .failure(.notDirectory) }
        guard !settings.readOnly, let target = dir.target else { return .failure(.readOnlyFileSystem) }
        return .success((node, target))
    }

    /// Validates a child name of a writable directory and returns its alias key.
    func childKey(_ target: AliasKey, _ name: String) throws -> AliasKey {
        let key = target.child(name)
        _ = try ModelPath.validateRelativePath(key.path)
        return key
    }

    /// Starts (or joins) the write transaction of a name.
    func beginWrite(key: AliasKey, existing: FileNode?, truncate: Bool) throws -> PendingWrite {
        if let current = writes.withLock({ $0[key] }), current.join() {
            if truncate {
                // Emptying the file starts afresh, even after a failed write (a full disk).
                current.clearFailure()
                _ = try current.truncate(to: 0, store: library.store)
                try showWriting(current)
            }
            return current
        }
        let writer = try library.store.begin()
        do {
            if let existing, !existing.pending, let digest = existing.sha256, !truncate {
                try Seed.copy(from: digest, into: writer, store: library.store, limit: nil)
            }
        } catch {
            writer.abort()
            throw error
        }
        let base = existing.flatMap { $0.pending || truncate ? nil : $0.sha256 }
        let write = PendingWrite(key: key, writer: writer, base: base)
        // A new file, or an existing one emptied, is a change even if nothing is written.
        let changed = existing == nil || (truncate && (existing?.size ?? 0) > 0)
        write.lock.withLock {
            write.openHandles = 1
            write.dirty = changed
        }
        writes.withLock { $0[key] = write }
        // An existing file opened for writing keeps showing its content until the first change
        // (an open and close that write nothing change nothing anyone sees).
        if existing == nil || truncate { try showWriting(write) }
        return write
    }

    /// Shows a write's name as being written (its size follows the write; reads join it), if it
    /// still has uncommitted changes once the rebuild lock is held (a commit may have won).
    func showWriting(_ write: PendingWrite) throws {
        try rebuildIfChanged({ overlay in
            guard let shown = write.beingWritten else { return false }
            // A write keeps its serial (and so its node's inode) until it commits or goes.
            let serial = overlay.pending[shown.key]?.serial ?? Self.writeSerials.add(1, ordering: .relaxed).newValue
            overlay.pending[shown.key] = (shown.size, Self.nowNs, serial)
            return true
        })
    }

    /// The inodes the kernel holds that show a name as being written, with their paths.
    func shownWriting(_ key: AliasKey) -> [(Inode, String)] {
        names.withLock { names in
            Self.shownPaths(key).flatMap { path in
                names.known.inodes(at: path).filter { names.known[$0]?.node.file?.pending == true }.map { ($0, path) }
            }
        }
    }

    /// Lets inodes the kernel may still hold stand for what their paths show now.
    func redirect(_ shown: [(Inode, String)]) {
        for (inode, path) in shown {
            let fresh = node(at: path)
            names.withLock { names in
                names.known.follow(inode, at: path)
                if let fresh { names.known.update(inode, node: fresh) }
            }
        }
    }

    /// Commits a write's bytes and records them under its name; from then on the name shows the
    /// committed alias (one namespace rebuild for both).
    ///
    /// Returns the invalidations that make the name's kernel entry lead to the new content's
    /// inode (readers of the old content keep theirs and its page cache, §7). Flush and release
    /// send them through the notifier (`sendNow`), never from the worker: flush answers close(2)
    /// only once they are sent, so the next open after close(2) finds the new content.
    ///
    /// `closedBy` is the lock owner of a close that may not be the last (see `PendingWrite.commit`).
    @discardableResult
    func commit(_ write: PendingWrite, closedBy owner: UInt64? = nil) throws -> [Invalidation] {
        guard try write.commit(closedBy: owner) != nil else { return [] }
        // The name is read under the rebuild lock, which renames and unlinks hold while they change
        // it and the registry: a rename racing with this commit either moves the recorded alias or
        // has already given the write its new name, and an unlinked write records nothing.
        var shown: [(Inode, String)] = []
        var recorded: AliasKey?
        try rebuildIfChanged({ overlay in
            let now = write.lock.withLock { (last: write.lastCommit, dirty: write.dirty) }
            guard let key = write.name, let last = now.last else { return false }
            // The pending node's inode (which a creator's dentry holds) stands for the committed file.
            shown = shownWriting(key)
            try library.record(last, folder: key.folder, path: key.path)
            // Written again since (through another handle): it stays shown as being written.
            if !now.dirty { overlay.pending[key] = nil }
            recorded = key
            return true
        })
        redirect(shown)
        guard let key = recorded else { return [] }
        // An inode shown as being written now stands for the committed content: pages a reader
        // cached while the bytes were still changing must go (a later open keeps the cache).
        var items: [Invalidation] = shown.map { .content($0.0) }
        for path in Self.shownPaths(key) {
            let name = String(path.split(separator: "/").last ?? "")
            for parent in names.withLock({ $0.known.directories(at: Self.parentPath(path)) }) {
                items.append(.entry(parent, name))
            }
        }
        return items
    }

    /// Sends `items` to the kernel on the notifier's thread, then runs `then` (a reply that must
    /// follow them). Never blocks the calling worker.
    public func sendNow(_ items: [Invalidation], then: (@Sendable () -> Void)? = nil) {
        guard !items.isEmpty, kernel != nil else {
            then?()
            return
        }
        notifier.enqueue { [weak self] in
            if let self, let kernel = self.kernel { Self.deliver(items, to: kernel) }
            then?()
        }
    }

    /// The last handle of a write is gone: uncommitted bytes are discarded and the write forgotten.
    func finish(_ write: PendingWrite) {
        write.abort()
        var key: AliasKey?
        var shown: [(Inode, String)] = []
        do {
            try rebuildIfChanged({ overlay in
                key = write.name
                guard let key, overlay.pending[key] != nil, writes.withLock({ $0[key] === write }) else { return false }
                // A lookup made while the name was being written holds the pending inode: it stands
                // for whatever the name shows now (the content from before, when nothing was committed).
                shown = shownWriting(key)
                overlay.pending[key] = nil
                return true
            })
            redirect(shown)
            sendNow(shown.map { .content($0.0) })
        } catch {
            logger.error("rebuild after closing \(key?.description ?? "an unlinked file"): \(error)")
        }
        // The write stays findable under its name until the name shows what it left, so an open
        // that raced with this close reads that (`PendingWrite.outcome`).
        if let key { writes.withLock { table in if table[key] === write { table[key] = nil } } }
    }

    /// Creates (or empties) a file in a writable directory and opens it for writing: its entry
    /// and open options.
    public func create(parent: Inode, name: String) throws -> (entry: Entry, options: OpenOptions) {
        let target = try writableDirectory(parent).get().1
        do {
            let key = try childKey(target, name)
            let existing = child(of: parent, named: name)
            if existing?.directory != nil { throw Errno.isDirectory }
            let write = try beginWrite(key: key, existing: existing?.file, truncate: true)
            guard let base = path(of: parent), let node = try resolveForKernel(Self.join(base, name)) else { throw Errno.ioError }
            // Counted like every write open (passthrough admission); a new write's inode is
            // never open by passthrough.
            guard let opened = admit(.pending(write, writable: true), inode: node.inode, size: 0) else {
                if write.leave() { finish(write) }
                throw Errno.textFileBusy
            }
            return (entry(node), OpenOptions(handle: opened.id, keepCache: false, directIO: true))
        } catch let errno as Errno {
            throw errno
        } catch {
            logger.error("create \(target.child(name)): \(error)")
            throw error
        }
    }

    /// Symbolic and hard links, FIFOs, sockets and device nodes are not models: EPERM in folder
    /// views (the name could hold only a file's content), EROFS where nothing may change (§7, §8).
    public func makeSpecial(parent: Inode, name: String, kind: SpecialKind) throws -> Never {
        let target = try writableDirectory(parent).get().1
        logger.notice("\(kind.rawValue) \(LogText.escaped(target.child(name).description)): refused (EPERM): a models folder holds files and directories only")
        throw Errno.notPermitted
    }

    /// Writes bytes through a handle open for writing; how many were taken.
    public func write(_ handle: UInt64, bytes: UnsafeRawBufferPointer, offset: Int64, lockOwner: UInt64) throws -> Int {
        guard case let .pending(write, true)? = handles.withLock({ $0.handles[handle] }) else { throw Errno.badFileDescriptor }
        guard offset + Int64(bytes.count) <= settings.maxFileSize else {
            logger.notice("write past \(settings.maxFileSize) bytes into \(write.name?.description ?? "an unlinked file"): refused (EFBIG)")
            throw Errno.fileTooLarge
        }
        if try write.write(bytes, at: offset, store: library.store, owner: lockOwner) {
            // The first change since the open or the last commit: show the name as being
            // written until the next commit.
            try showWriting(write)
        }
        return bytes.count
    }

    /// close(2): commits now so the name is complete when close returns, and errors (disk full)
    /// reach the writer. Returns the invalidations to send before close(2) is answered (so the
    /// next open after it finds the new content).
    public func flush(_ handle: UInt64, lockOwner: UInt64) throws -> [Invalidation] {
        guard case let .pending(write, true)? = handles.withLock({ $0.handles[handle] }) else { return [] }
        do {
            // Every close(2) of every process sharing the open file flushes; only one by a process
            // that wrote commits (the last close, the release, always does).
            return try commit(write, closedBy: lockOwner == 0 ? nil : lockOwner)
        } catch {
            logger.error("commit of \(write.name?.description ?? "an unlinked file") failed: \(error)")
            // A new file that never committed disappears with the failed close: its name is not
            // left showing while the kernel gets round to releasing the handle.
            try? rebuildIfChanged({ overlay in
                guard let key = write.name, write.lock.withLock({ write.committed == nil }), overlay.pending[key] != nil else { return false }
                overlay.pending[key] = nil
                return true
            })
            throw error
        }
    }

    /// Changes a size (truncate, ftruncate); modes, owners and times are not stored (names carry
    /// no metadata of their own) but are refused where nothing may change. The attributes after.
    public func setattr(_ inode: Inode, changes: AttributeChanges, handle: UInt64?) throws -> (attributes: Attributes, timeout: Double) {
        guard let node = resolve(inode) else {
            logger.debug("setattr \(inode): no such inode")
            throw Errno.noSuchFileOrDirectory
        }
        if let size = changes.size {
            guard let entry = node.file else { throw Errno.isDirectory }
            guard entry.writable, !settings.readOnly, let key = entry.alias else { throw Errno.readOnlyFileSystem }
            guard size <= settings.maxFileSize else { throw Errno.fileTooLarge }
            do {
                if let handle, case let .pending(write, true)? = handles.withLock({ $0.handles[handle] }) {
                    if try write.truncate(to: size, store: library.store) { try showWriting(write) }
                } else if let write = writes.withLock({ $0[key] }) {
                    if try write.truncate(to: size, store: library.store) { try showWriting(write) }
                } else {
                    // truncate(2) on a closed file: copy-on-write right away.
                    let write = try beginWrite(key: key, existing: entry, truncate: false)
                    _ = try write.truncate(to: size, store: library.store)
                    let last = write.leave()
                    let path = path(of: node.inode) ?? ""
                    try commit(write)
                    if last { finish(write) }
                    // truncate(2) changes the file everyone has open: its inode follows the name.
                    redirect([(node.inode, path)])
                }
            } catch {
                logger.debug("setattr \(inode) size: \(error)")
                throw error
            }
        } else if settings.readOnly || (node.file.map { !$0.writable } ?? (node.directory?.target == nil)) {
            // Every change, owners and access times included (§8): chown and touch -a too.
            if changes.mode != nil || changes.mtimeNs != nil || changes.other { throw Errno.readOnlyFileSystem }
        }
        guard let fresh = resolve(inode) else {
            logger.debug("setattr \(inode): gone after the change")
            throw Errno.noSuchFileOrDirectory
        }
        return (attributes(fresh), fresh.file?.pending == true ? 0 : settings.attributeTimeout)
    }
}
