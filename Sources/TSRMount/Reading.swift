import FUSE
import Foundation
import SystemPackage
import TSRStore

/// Opening, listing and reading: directories are listed once per open; files open as a blob
/// (its descriptor), a remote blob (a download on first read), or a write in progress.
extension MountCore {
    /// Opens a directory: its listing now, kept under the returned handle.
    public func opendir(_ inode: Inode) throws -> UInt64 {
        guard let path = path(of: inode), let node = resolve(inode) else { throw Errno.noSuchFileOrDirectory }
        guard node.directory != nil else { throw Errno.notDirectory }
        do {
            let epoch = names.withLock { $0.epoch }
            guard let nodes = try resolver().listing(at: path) else { throw Errno.noSuchFileOrDirectory }
            let entries = nodes.map { DirectoryEntry(name: $0.name, entry: entry($0)) }
            return handles.withLock { $0.store(.directory(Listing(path: path, nodes: nodes, entries: entries, epoch: epoch))) }
        } catch let errno as Errno {
            throw errno
        } catch {
            logger.error("listing '\(path)': \(error)")
            throw Errno.ioError
        }
    }

    /// An open directory's listing to answer a readdir from. READDIRPLUS hands the kernel each
    /// entry's node: one listed before a change (a write committed since opendir) would replace
    /// the fresh dentry of that name with the old content's inode, and an open right after the
    /// writer's close(2) would read the old bytes; so a listing older than the last change is
    /// resolved again first.
    func listing(_ handle: UInt64, offset: Int, plus: Bool) throws -> Listing {
        guard case var .directory(listing)? = handles.withLock({ $0.handles[handle] }) else { throw Errno.badFileDescriptor }
        if plus, offset < listing.entries.count, names.withLock({ $0.epoch }) != listing.epoch {
            listing = refreshed(listing, handle: handle)
        }
        return listing
    }

    /// The READDIRPLUS entries `sent` of `listing` (of directory `inode`) were handed to the
    /// kernel, each with a lookup reference: they become known inodes.
    func listed(_ listing: Listing, sent: Range<Int>, in inode: Inode) {
        guard !sent.isEmpty else { return }
        names.withLock { names in
            for node in listing.nodes[sent] {
                names.known.remember(node, at: Self.join(listing.path, node.name))
                // Listed before a change the kernel has not been told about for these inodes.
                if names.epoch != listing.epoch { names.invalidations.append(.entry(inode, node.name)) }
            }
        }
    }

    /// An open directory's listing with every name that is still there resolved again (same
    /// names, same order, so offsets stay valid), remembered for the next readdir.
    func refreshed(_ listing: Listing, handle: UInt64) -> Listing {
        let epoch = names.withLock { $0.epoch }
        guard let fresh = try? resolver().listing(at: listing.path) else { return listing }
        let byName = Dictionary(fresh.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var updated = listing
        for index in updated.nodes.indices {
            guard let node = byName[updated.nodes[index].name] else { continue }
            updated.nodes[index] = node
            updated.entries[index] = DirectoryEntry(name: node.name, entry: entry(node))
        }
        updated.epoch = epoch
        handles.withLock { table in
            if case .directory? = table.handles[handle] { table.handles[handle] = .directory(updated) }
        }
        return updated
    }

    public func releasedir(_ handle: UInt64) {
        _ = handles.withLock { $0.handles.removeValue(forKey: handle) }
    }

    /// Opens a file for reading or writing (`flags` as open(2) gives them).
    public func open(_ inode: Inode, flags: Int32) throws -> OpenOptions {
        let accessMode = flags & O_ACCMODE
        let wantsWrite = accessMode == O_WRONLY || accessMode == O_RDWR || flags & O_TRUNC != 0
        // An inode open by passthrough can only be opened again by passthrough of its complete
        // blob: a write waits for those opens to close (ETXTBSY), and content that failed
        // verification since then cannot be read through that inode until they do (EIO). The
        // wait is a second in all, before and (a reader may open meanwhile) after beginning.
        // Readers that come while a writer waits wait for it first, and only then look at what
        // the name shows (a write may have changed it meanwhile).
        let deadline = ContinuousClock.now + .seconds(1)
        if wantsWrite {
            writerWaits(inode, by: 1)
        } else {
            waitForWriters(inode, until: deadline)
        }
        defer { if wantsWrite { writerWaits(inode, by: -1) } }
        while true {
            guard let node = resolve(inode) else { throw Errno.noSuchFileOrDirectory }
            guard let entry = node.file else { throw Errno.isDirectory }
            if let opened = try open(inode, entry, flags: flags, wantsWrite: wantsWrite, deadline: deadline) { return opened }
            // A read open the kernel would refuse beside the passthrough opens of this inode
            // (a write of the name ended between this look and the admission): look again.
            guard !wantsWrite, ContinuousClock.now < deadline else {
                logger.notice("open \(LogText.escaped(path(of: inode) ?? "?")): refused while another process has it open by passthrough")
                throw Errno.textFileBusy
            }
            usleep(2_000)
        }
    }

    /// One try at opening what `entry` shows: the open, or nil when its admission was refused.
    private func open(_ inode: Inode, _ entry: FileNode, flags: Int32, wantsWrite: Bool, deadline: ContinuousClock.Instant) throws -> OpenOptions? {
        if wantsWrite || entry.state != .present, openByPassthrough(inode, until: deadline) {
            let path = LogText.escaped(path(of: inode) ?? "?")
            if wantsWrite {
                logger.notice("open \(path) for writing: refused (ETXTBSY) while another process has it open by passthrough; it opens once they close it")
                throw Errno.textFileBusy
            }
            logger.notice("open \(path): refused (EIO) — its content is \(entry.state.rawValue) while other processes still read the old blob by passthrough; close them (or mount with --no-passthrough)")
            throw Errno.ioError
        }
        do {
            let handle: Handle
            if wantsWrite {
                guard entry.writable, !settings.readOnly, let key = entry.alias else { throw Errno.readOnlyFileSystem }
                handle = .pending(try beginWrite(key: key, existing: entry, truncate: flags & O_TRUNC != 0), writable: true)
            } else if entry.pending, let key = entry.alias {
                let write = writes.withLock { $0[key] }
                if let write, write.join() {
                    handle = .pending(write, writable: false)
                } else if let digest = write?.outcome ?? shownContent(inode) {
                    // Its last writer closed meanwhile: read what the write left under the name.
                    handle = .blob(try SystemCallsBridge.openBlob(store: library.store, digest: digest), digest)
                } else {
                    throw Errno.noSuchFileOrDirectory
                }
            } else if let digest = entry.sha256, entry.state == .present {
                do {
                    handle = .blob(try SystemCallsBridge.openBlob(store: library.store, digest: digest), digest)
                } catch let StoreError.io(_, _, code) where code == .noSuchFileOrDirectory {
                    // Evicted since the name was looked up: read it the lazy way (fetched again).
                    handle = .remote(digest)
                }
            } else if let digest = entry.sha256 {
                handle = .remote(digest)
            } else {
                throw Errno.noSuchFileOrDirectory
            }
            var admitted = admit(handle, inode: inode, size: entry.size)
            while admitted == nil, wantsWrite, openByPassthrough(inode, until: deadline) == false {
                admitted = admit(handle, inode: inode, size: entry.size)
            }
            guard let opened = admitted else {
                if case let .blob(fd, _) = handle { try? fd.close() }
                if case let .pending(write, _) = handle, write.leave() { finish(write) }
                if wantsWrite {
                    logger.notice("open \(LogText.escaped(path(of: inode) ?? "?")): refused while another process has it open by passthrough")
                    throw Errno.textFileBusy
                }
                return nil
            }
            noteAccess(handle)
            // Blob content never changes under a handle: keep the page cache across opens.
            // Writes go around the page cache, so readers of the old content keep it (§7).
            let keep: Bool
            if case .blob = handle { keep = true } else { keep = false }
            return OpenOptions(handle: opened.id, keepCache: keep, directIO: wantsWrite, backingId: opened.backing)
        } catch let errno as Errno {
            throw errno
        } catch {
            logger.error("open \(path(of: inode) ?? "?"): \(error)")
            throw error
        }
    }

    /// Counts an open of content for the bounded cache (a hit when its bytes are here).
    func noteAccess(_ handle: Handle) {
        guard settings.trackAccess else { return }
        let now = Date()
        switch handle {
        case let .blob(_, digest):
            access.withLock { log in
                log.reads[digest] = now
                log.hits += 1
            }
        case let .remote(digest):
            access.withLock { log in
                log.reads[digest] = now
                log.misses += 1
            }
        default:
            break
        }
    }

    /// The complete content an inode's path shows now (a write that left the name between a
    /// lookup and an open), or nil.
    func shownContent(_ inode: Inode) -> Digest? {
        guard let current = path(of: inode).flatMap({ node(at: $0) })?.file, !current.pending, current.state == .present else { return nil }
        return current.sha256
    }

    /// What a read gets: bytes filled into the caller's buffer, or a wait for a download.
    public enum ReadOutcome: Equatable, Sendable {
        /// This many bytes (fewer than asked only at the end of the file).
        case filled(Int)
        /// The bytes are not here: `readRemote` answers the read (at once from the header
        /// region, or when the download ends).
        case remote(Digest)
    }

    /// Reads through an open handle into `target` (as many bytes as it holds, from `offset`).
    public func read(_ handle: UInt64, offset: Int64, into target: UnsafeMutableRawBufferPointer) throws -> ReadOutcome {
        guard var current = handles.withLock({ $0.handles[handle] }) else { throw Errno.badFileDescriptor }
        // Opened before its blob failed verification: its descriptor reads the quarantined file.
        // From now on the handle waits for the content fetched again.
        if case let .blob(fd, digest) = current, anyQuarantined.load(ordering: .relaxed), names.withLock({ $0.quarantined.contains(digest) }) {
            let swapped = handles.withLock { table -> Bool in
                guard case .blob(fd, digest)? = table.handles[handle] else { return false }
                table.handles[handle] = .remote(digest)
                return true
            }
            if swapped { try? fd.close() }
            current = .remote(digest)
        }
        var filled = 0
        switch current {
        case let .blob(fd, _):
            // pread until the request is full or the file ends (short reads are legal but the
            // kernel treats them as end of file).
            while filled < target.count {
                let n = try fd.read(fromAbsoluteOffset: offset + Int64(filled), into: UnsafeMutableRawBufferPointer(rebasing: target[filled...]))
                if n == 0 { break }
                filled += n
            }
        case let .pending(write, _):
            while filled < target.count {
                let n = try write.read(into: UnsafeMutableRawBufferPointer(rebasing: target[filled...]), at: offset + Int64(filled), store: library.store)
                if n == 0 { break }
                filled += n
            }
        case let .remote(digest):
            return .remote(digest)
        case .directory:
            throw Errno.isDirectory
        }
        return .filled(filled)
    }

    /// Closes an open file: a writer's last close commits. Returns the invalidations the
    /// commit owes the kernel (nobody waits for a release: they are sent after the reply).
    public func release(_ inode: Inode, handle id: UInt64, backingId: Int32) -> [Invalidation] {
        let handle = handles.withLock { $0.handles.removeValue(forKey: id) }
        if let handle { dismiss(handle, inode: inode, backingId: backingId) }
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
            return items
        default:
            break
        }
        return []
    }

    // MARK: Extended attributes

    static let xattrNames = ["user.tsr.sha256", "user.tsr.state"]

    /// The value of an extended attribute (ENODATA when the file has none of that name).
    public func getxattr(_ inode: Inode, name: String) throws -> [UInt8] {
        guard let node = resolve(inode) else { throw Errno.noSuchFileOrDirectory }
        // The mount root says how complete blobs are read: `passthrough` or `plain (why)`.
        if inode == .root && name == "user.tsr.io" { return Array(readPath.description.utf8) }
        guard let file = node.file else { throw Errno.noData }
        switch name {
        case "user.tsr.sha256":
            guard let digest = file.sha256 else { throw Errno.noData }
            return Array(digest.rawValue.utf8)
        case "user.tsr.state":
            return Array(stateName(file, inode: inode).utf8)
        case "user.tsr.error":
            guard let text = errorText(file) else { throw Errno.noData }
            return Array(text.utf8)
        default:
            throw Errno.noData
        }
    }

    /// The names of an inode's extended attributes.
    public func listxattr(_ inode: Inode) throws -> [String] {
        guard let node = resolve(inode) else { throw Errno.noSuchFileOrDirectory }
        var names = node.file == nil ? [] : Self.xattrNames
        if node.file?.sha256 == nil { names.removeAll { $0 == "user.tsr.sha256" } }
        if let file = node.file, errorText(file) != nil { names.append("user.tsr.error") }
        if inode == .root { names.append("user.tsr.io") }
        return names
    }
}
