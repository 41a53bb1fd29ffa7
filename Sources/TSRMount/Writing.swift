import FUSE
import Foundation
import Synchronization
import TSRLibrary
import TSRRegistry
import TSRStore

/// Writes through folder views: new files stream into store write transactions and become
/// aliases when committed (on flush, i.e. close(2), or release); renames and unlinks change
/// aliases; mkdir/rmdir manage directories that hold nothing yet.
extension TensorsFileSystem {
    static var nowNs: Int64 { Clock.nowNs() }
    /// Numbers the writes shown in the overlay (`FileNode.pendingSerial`).
    static let writeSerials = Atomic<UInt64>(0)

    /// The writable directory a request targets, or the errno to answer.
    func writableDirectory(_ inode: Inode) -> Result<(Node, AliasKey), Errno> {
        guard let node = resolve(inode) else { return .failure(.noEntry) }
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
        if let current = state.withLock({ $0.writes[key] }), current.join() {
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
        state.withLock { $0.writes[key] = write }
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
        state.withLock { state in
            Self.shownPaths(key).flatMap { path in
                state.known.inodes(at: path).filter { state.known[$0]?.node.file?.pending == true }.map { ($0, path) }
            }
        }
    }

    /// Lets inodes the kernel may still hold stand for what their paths show now.
    func redirect(_ shown: [(Inode, String)]) {
        for (inode, path) in shown {
            let fresh = node(at: path)
            state.withLock { state in
                state.known.follow(inode, at: path)
                if let fresh { state.known.update(inode, node: fresh) }
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
            for parent in state.withLock({ $0.known.directories(at: Self.parentPath(path)) }) {
                items.append(.entry(parent, name))
            }
        }
        return items
    }

    /// Sends `items` to the kernel on the notifier's thread, then runs `then` (a reply that must
    /// follow them). Never blocks the calling worker.
    func sendNow(_ items: [Invalidation], then: (@Sendable () -> Void)? = nil) {
        guard !items.isEmpty, session != nil else {
            then?()
            return
        }
        notifier.enqueue { [weak self] in
            if let self, let session = self.session { Self.deliver(items, to: session) }
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
                guard let key, overlay.pending[key] != nil, state.withLock({ $0.writes[key] === write }) else { return false }
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
        if let key { state.withLock { state in if state.writes[key] === write { state.writes[key] = nil } } }
    }

    public func create(_ request: Request, parent: Inode, name: String, mode: UInt32, file: FileInfo) {
        switch writableDirectory(parent) {
        case let .failure(errno): return request.reply(error: errno)
        case let .success((_, target)):
            do {
                let key = try childKey(target, name)
                let existing = child(of: parent, named: name)
                if existing?.directory != nil { return request.reply(error: .isDirectory) }
                let write = try beginWrite(key: key, existing: existing?.file, truncate: true)
                guard let base = path(of: parent), let node = try resolveForKernel(Self.join(base, name)) else { return request.reply(error: .io) }
                // Counted like every write open (passthrough admission); a new write's inode is
                // never open by passthrough.
                guard let opened = admit(.pending(write, writable: true), inode: node.inode, size: 0) else {
                    if write.leave() { finish(write) }
                    return request.reply(error: .textBusy)
                }
                request.reply(create: entry(node), open: OpenOptions(handle: opened.id, keepCache: false, directIO: true))
            } catch {
                logger.error("create \(target.child(name)): \(error)")
                request.reply(error: ErrnoMapping.errno(for: error))
            }
        }
    }

    /// Symbolic and hard links, FIFOs, sockets and device nodes are not models: EPERM in folder
    /// views (the name could hold only a file's content), EROFS where nothing may change (§7, §8).
    public func makeSpecial(_ request: Request, parent: Inode, name: String, kind: SpecialKind) {
        switch writableDirectory(parent) {
        case let .failure(errno):
            request.reply(error: errno)
        case let .success((_, target)):
            logger.notice("\(kind.rawValue) \(LogText.escaped(target.child(name).description)): refused (EPERM): a models folder holds files and directories only")
            request.reply(error: .permission)
        }
    }

    public func write(_ request: Request, inode: Inode, bytes: UnsafeRawBufferPointer, offset: Int64, file: FileInfo) {
        guard case let .pending(write, true)? = state.withLock({ $0.handles[file.handle] }) else { return request.reply(error: .badFile) }
        guard offset + Int64(bytes.count) <= settings.maxFileSize else {
            logger.notice("write past \(settings.maxFileSize) bytes into \(write.name?.description ?? "an unlinked file"): refused (EFBIG)")
            return request.reply(error: .fileTooLarge)
        }
        do {
            if try write.write(bytes, at: offset, store: library.store, owner: file.lockOwner) {
                // The first change since the open or the last commit: show the name as being
                // written until the next commit.
                try showWriting(write)
            }
            request.reply(written: bytes.count)
        } catch {
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    public func flush(_ request: Request, inode: Inode, file: FileInfo) {
        // close(2): commit now so the name is complete when close returns, and errors (disk full)
        // reach the writer.
        guard case let .pending(write, true)? = state.withLock({ $0.handles[file.handle] }) else { return request.replyOK() }
        do {
            // Every close(2) of every process sharing the open file flushes; only one by a process
            // that wrote commits (the last close, the release, always does).
            let items = try commit(write, closedBy: file.lockOwner == 0 ? nil : file.lockOwner)
            // Answered once the kernel's entry leads to the new content (on the notifier's thread).
            sendNow(items) { request.replyOK() }
        } catch {
            logger.error("commit of \(write.name?.description ?? "an unlinked file") failed: \(error)")
            // A new file that never committed disappears with the failed close: its name is not
            // left showing while the kernel gets round to releasing the handle.
            try? rebuildIfChanged({ overlay in
                guard let key = write.name, write.lock.withLock({ write.committed == nil }), overlay.pending[key] != nil else { return false }
                overlay.pending[key] = nil
                return true
            })
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    public func fsync(_ request: Request, inode: Inode, dataOnly: Bool, file: FileInfo) {
        // Bytes in flight live in a temp file that is fsynced at commit; the name appears only
        // complete and verified, so an fsync before close has nothing more to promise.
        request.replyOK()
    }

    public func setattr(_ request: Request, inode: Inode, changes: AttributeChanges, file: FileInfo?) {
        guard let node = resolve(inode) else {
            logger.debug("setattr \(inode): no such inode")
            return request.reply(error: .noEntry)
        }
        if let size = changes.size {
            guard let entry = node.file else { return request.reply(error: .isDirectory) }
            guard entry.writable, !settings.readOnly, let key = entry.alias else { return request.reply(error: .readOnlyFileSystem) }
            guard size <= settings.maxFileSize else { return request.reply(error: .fileTooLarge) }
            do {
                if let file, case let .pending(write, true)? = state.withLock({ $0.handles[file.handle] }) {
                    if try write.truncate(to: size, store: library.store) { try showWriting(write) }
                } else if let write = state.withLock({ $0.writes[key] }) {
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
                return request.reply(error: ErrnoMapping.errno(for: error))
            }
        } else if settings.readOnly || (node.file.map { !$0.writable } ?? (node.directory?.target == nil)) {
            // Every change, owners and access times included (§8): chown and touch -a too.
            if changes.mode != nil || changes.mtimeNs != nil || changes.other { return request.reply(error: .readOnlyFileSystem) }
        }
        // Modes, owners and times are not stored: names carry no metadata of their own.
        guard let fresh = resolve(inode) else {
            logger.debug("setattr \(inode): gone after the change")
            return request.reply(error: .noEntry)
        }
        request.reply(attributes: attributes(fresh), timeout: fresh.file?.pending == true ? 0 : settings.attributeTimeout)
    }

    public func mkdir(_ request: Request, parent: Inode, name: String, mode: UInt32) {
        do {
            let key: AliasKey
            if parent == .root {
                guard !settings.readOnly else { return request.reply(error: .readOnlyFileSystem) }
                // A new folder key (custom nodes add their own: ipadapter, sams …).
                key = AliasKey(folder: try ModelPath.validateFolder(name), path: "")
            } else {
                switch writableDirectory(parent) {
                case let .failure(errno): return request.reply(error: errno)
                case let .success((_, target)): key = try childKey(target, name)
                }
            }
            if child(of: parent, named: name) != nil { return request.reply(error: .exists) }
            let now = Self.nowNs
            try rebuild { overlay in overlay.emptyDirectories[key] = now }
            guard let base = path(of: parent), let node = try resolveForKernel(Self.join(base, name)) else { return request.reply(error: .io) }
            request.reply(entry: entry(node))
        } catch {
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    public func rmdir(_ request: Request, parent: Inode, name: String) {
        guard !settings.readOnly else { return request.reply(error: .readOnlyFileSystem) }
        guard let node = child(of: parent, named: name) else { return request.reply(error: .noEntry) }
        guard let dir = node.directory else { return request.reply(error: .notDirectory) }
        guard let target = dir.target else { return request.reply(error: .readOnlyFileSystem) }
        guard isEmptyDirectory(parent: parent, name: name) else { return request.reply(error: .notEmpty) }
        let isMadeHere = state.withLock { $0.overlay.emptyDirectories[target] != nil }
        if !isMadeHere || (target.path.isEmpty && ModelPath.folderKeys.contains(target.folder)) {
            return request.reply(error: .busy)
        }
        do {
            try rebuild { overlay in overlay.emptyDirectories[target] = nil }
            request.replyOK()
        } catch {
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    public func unlink(_ request: Request, parent: Inode, name: String) {
        guard !settings.readOnly else { return request.reply(error: .readOnlyFileSystem) }
        guard let node = child(of: parent, named: name) else { return request.reply(error: .noEntry) }
        guard let file = node.file else { return request.reply(error: .isDirectory) }
        guard file.writable, let key = file.alias else { return request.reply(error: .readOnlyFileSystem) }
        do {
            try rebuild { overlay in
                // The registry first: if it fails, nothing else has changed.
                if try library.registry.alias(folder: key.folder, path: key.path) != nil {
                    try library.registry.removeAlias(folder: key.folder, path: key.path)
                }
                // Open handles of an unlinked file keep writing into a transaction that no name
                // will receive (its bytes are discarded when the last handle closes).
                state.withLock { $0.writes.removeValue(forKey: key) }?.rename(to: nil)
                overlay.pending[key] = nil
            }
            request.replyOK()
        } catch {
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    public func rename(_ request: Request, parent: Inode, name: String, newParent: Inode, newName: String, flags: UInt32) {
        let noReplace = flags & RenameFlags.noReplace != 0
        guard flags & ~RenameFlags.noReplace == 0 else { return request.reply(error: .invalid) }
        guard !settings.readOnly else { return request.reply(error: .readOnlyFileSystem) }
        guard let source = child(of: parent, named: name), let sourceBase = path(of: parent) else { return request.reply(error: .noEntry) }
        guard case let .success((_, targetDir)) = writableDirectory(newParent), let targetBase = path(of: newParent) else {
            return request.reply(error: .readOnlyFileSystem)
        }
        // The kernel moves its dentries with their old inodes: those follow to the new place.
        let moving = (from: Self.join(sourceBase, name), to: Self.join(targetBase, newName))
        do {
            let destination = try childKey(targetDir, newName)
            let existing = child(of: newParent, named: newName)
            if existing != nil && noReplace { return request.reply(error: .exists) }
            if let file = source.file {
                guard file.writable, let from = file.alias else { return request.reply(error: .readOnlyFileSystem) }
                if existing?.directory != nil { return request.reply(error: .isDirectory) }
                if from == destination { return request.replyOK() }
                try renameFile(from: from, to: destination, dentries: moving)
            } else if let dir = source.directory {
                guard let from = dir.target, !from.path.isEmpty else { return request.reply(error: .busy) }
                if let existing {
                    guard existing.directory != nil else { return request.reply(error: .notDirectory) }
                    guard isEmptyDirectory(parent: newParent, name: newName) else { return request.reply(error: .notEmpty) }
                }
                if destination.folder == from.folder && (destination.path + "/").hasPrefix(from.path + "/") {
                    return request.reply(error: .invalid)
                }
                try renameDirectory(from: from, to: destination, dentries: moving)
            }
            request.replyOK()
        } catch {
            request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    /// Whether a directory has nothing in it (a registry error counts as not empty).
    func isEmptyDirectory(parent: Inode, name: String) -> Bool {
        guard let base = path(of: parent) else { return false }
        do {
            return try resolver().listing(at: Self.join(base, name))?.isEmpty ?? false
        } catch {
            logger.error("listing '\(Self.join(base, name))': \(error)")
            return false
        }
    }

    private func renameFile(from: AliasKey, to: AliasKey, dentries: (from: String, to: String)) throws {
        // Under the rebuild lock, like a commit's recording (see `commit`).
        try rebuild { overlay in
            // The registry first: if it fails, nothing else has changed.
            // A written file is in the registry once flushed; a pending-only one is not yet.
            if try library.registry.alias(folder: from.folder, path: from.path) != nil {
                try library.registry.moveAlias(from: (from.folder, from.path), to: (to.folder, to.path), replace: true)
            }
            let (moving, replaced) = state.withLock { state -> (PendingWrite?, PendingWrite?) in
                guard let write = state.writes.removeValue(forKey: from) else {
                    return (nil, state.writes.removeValue(forKey: to))
                }
                state.writes[to] = write
                return (write, nil)
            }
            replaced?.rename(to: nil)
            moving?.rename(to: to)
            if let entry = overlay.pending.removeValue(forKey: from) { overlay.pending[to] = entry }
            if replaced != nil { overlay.pending[to] = nil }
            state.withLock { $0.known.move(from: dentries.from, to: dentries.to) }
        }
    }

    private func renameDirectory(from: AliasKey, to: AliasKey, dentries: (from: String, to: String)) throws {
        func moved(_ key: AliasKey) -> AliasKey? {
            guard key.folder == from.folder, key.path == from.path || key.path.hasPrefix(from.path + "/") else { return nil }
            return AliasKey(folder: to.folder, path: to.path + key.path.dropFirst(from.path.count))
        }
        try rebuild { overlay in
            // The registry first (a name already at the target refuses the move): if it fails,
            // nothing else has changed. The rest under the rebuild lock, like a commit's recording.
            _ = try library.registry.moveAliases(fromFolder: from.folder, prefix: from.path, toFolder: to.folder, toPrefix: to.path, replace: false)
            let relocated = state.withLock { state -> [(PendingWrite, AliasKey)] in
                var out: [(PendingWrite, AliasKey)] = []
                for (key, write) in state.writes {
                    guard let target = moved(key) else { continue }
                    state.writes[key] = nil
                    state.writes[target] = write
                    out.append((write, target))
                }
                return out
            }
            // Outside the state lock: a write's lock may be held across its file I/O.
            for (write, target) in relocated { write.rename(to: target) }
            for (key, value) in overlay.pending { if let target = moved(key) { overlay.pending[key] = nil; overlay.pending[target] = value } }
            for (key, value) in overlay.emptyDirectories { if let target = moved(key) { overlay.emptyDirectories[key] = nil; overlay.emptyDirectories[target] = value } }
            overlay.emptyDirectories[to] = overlay.emptyDirectories[to] ?? Self.nowNs
            state.withLock { $0.known.move(from: dentries.from, to: dentries.to) }
        }
    }
}
