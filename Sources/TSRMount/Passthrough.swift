import FUSE
import Foundation
import SystemPackage
import TSRStore

/// Kernel FUSE passthrough (docs/ARCHITECTURE.md, "Reads"): opens of complete blobs of at least
/// `MountSettings.passthroughMinimumSize` carry a backing file, so reads and mmap go to the blob
/// without reaching the daemon.
///
/// The kernel's rules, per inode (fs/fuse/iomode.c): while any open of it uses a backing file,
/// every other open must use that same one (else the open fails with EINVAL), and while it is
/// open through the page cache no open may use one (ETXTBSY). `IOMode` mirrors what is open so
/// that every reply keeps those rules; a write to a name open by passthrough is answered ETXTBSY.
extension MountCore {
    struct IOMode {
        /// Opens using `backingId`.
        var passthrough = 0
        /// Read opens through the page cache (plain blob reads, lazy and pending reads).
        var cached = 0
        /// Write opens (direct I/O). The kernel takes them beside page-cache opens, but refuses
        /// with EIO any open that is not passthrough while the inode has a backing file: so no
        /// passthrough open is given while one is open, and none is admitted while passthrough
        /// opens are (the open's replies may reach the kernel in either order).
        var writers = 0
        var backingId: Int32 = 0
        /// Write opens waiting for the passthrough opens to go: read opens wait for them to be
        /// admitted first, so a stream of readers cannot keep a writer out for good.
        var waitingWriters = 0
        /// No backing file yet, and nothing open through the page cache or for writing.
        var canRegister: Bool { backingId == 0 && cached == 0 && writers == 0 }
        var isUnused: Bool { passthrough == 0 && cached == 0 && writers == 0 && waitingWriters == 0 }
    }

    /// How complete blobs are read on this mount.
    public enum ReadPath: Sendable, Equatable, CustomStringConvertible {
        case passthrough
        case plain(reason: String)

        /// `passthrough`, or `plain (why)`: the mount root's `user.tsr.io` attribute.
        public var description: String {
            switch self {
            case .passthrough: "passthrough"
            case let .plain(reason): "plain (\(reason))"
            }
        }
    }

    /// Decided at the first request that needs it (after the kernel's INIT), then fixed.
    var readPath: ReadPath {
        if let known = decidedReadPath.withLock({ $0 }) { return known }
        let decided = decideReadPath()
        let first = decidedReadPath.withLock { known -> Bool in
            guard known == nil else { return false }
            known = decided
            return true
        }
        if first { logger.notice("reads of complete models: \(decided)") }
        return decided
    }

    private func decideReadPath() -> ReadPath {
        guard settings.passthrough else { return .plain(reason: "--no-passthrough") }
        guard let kernel else { return .plain(reason: "not mounted") }
        switch kernel.passthrough {
        case .notRequested: return .plain(reason: "--no-passthrough")
        case let .unavailable(why): return .plain(reason: why)
        case .active: break
        }
        // The kernel agreed; registering a backing file also needs CAP_SYS_ADMIN and a store on a
        // filesystem that can back one. Try with a new empty file where blobs are written (never
        // with the registry's file: closing a descriptor of it would drop SQLite's locks).
        let name = library.layout.tmp + "/passthrough-probe-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let probe: FileDescriptor
        do {
            probe = try FileDescriptor.open(name, .readWrite, options: [.create, .exclusiveCreate], permissions: [.ownerReadWrite])
        } catch {
            return .plain(reason: "cannot create a file in \(library.layout.tmp) to test passthrough: \(error)")
        }
        _ = Glibc.unlink(name)
        defer { try? probe.close() }
        switch kernel.backingOpen(fd: probe.rawValue) {
        case let .success(id):
            kernel.backingClose(id)
            return .passthrough
        case let .failure(errno) where errno.rawValue == EPERM:
            return .plain(reason: "passthrough needs CAP_SYS_ADMIN: mount as root")
        case let .failure(errno):
            return .plain(reason: "the home's filesystem cannot back passthrough files (\(errno))")
        }
    }

    /// Records an open in its inode's mode and chooses passthrough for it when it may; the
    /// handle id and backing id, or nil when the kernel would refuse this open (the inode is
    /// open by passthrough and this open cannot be).
    func admit(_ handle: Handle, inode: Inode, size: Int64) -> (id: UInt64, backing: Int32?)? {
        // Only complete blobs large enough, on a mount where the kernel took passthrough.
        var blob: FileDescriptor?
        if case let .blob(fd, _) = handle, size >= settings.passthroughMinimumSize, readPath == .passthrough { blob = fd }
        var candidate: Int32?
        if let blob, handles.withLock({ ($0.ioModes[inode] ?? IOMode()).canRegister }) {
            // Registered outside the handle table's lock (a system call); another open may register the
            // inode's backing file meanwhile, and then this one is given back.
            switch kernel?.backingOpen(fd: blob.rawValue) {
            case let .success(id)?: candidate = id
            case let .failure(errno)?: logger.notice("passthrough refused for inode \(inode.rawValue) (\(errno)): plain reads")
            case nil: break
            }
        }
        let (admitted, unused) = handles.withLock { table -> ((id: UInt64, backing: Int32?)?, Int32?) in
            var mode = table.ioModes[inode] ?? IOMode()
            var unused = candidate
            if blob != nil, mode.canRegister, let candidate {
                mode.backingId = candidate
                unused = nil
            }
            let backing = blob != nil && mode.cached == 0 && mode.writers == 0 && mode.backingId != 0 ? mode.backingId : nil
            if backing != nil {
                mode.passthrough += 1
            } else if mode.passthrough > 0 {
                return (nil, unused)
            } else if Self.usesPageCache(handle) {
                mode.cached += 1
            } else {
                mode.writers += 1
            }
            table.ioModes[inode] = mode
            return ((table.store(handle), backing), unused)
        }
        if let unused { kernel?.backingClose(unused) }
        return admitted
    }

    /// Whether an open of this handle reads through the kernel's page cache when it is not
    /// passthrough (writes go around it, direct_io, and enter no mode).
    static func usesPageCache(_ handle: Handle) -> Bool {
        if case .pending(_, writable: true) = handle { return false }
        return true
    }

    /// Forgets a released open's mode, and gives back the inode's backing file with its last
    /// passthrough open.
    func dismiss(_ handle: Handle, inode: Inode, backingId: Int32) {
        let close = handles.withLock { table -> Int32? in
            guard var mode = table.ioModes[inode] else { return nil }
            var close: Int32?
            if backingId != 0 {
                mode.passthrough -= 1
                if mode.passthrough <= 0 {
                    close = mode.backingId
                    mode.passthrough = 0
                    mode.backingId = 0
                }
            } else if Self.usesPageCache(handle) {
                mode.cached -= 1
            } else {
                mode.writers -= 1
            }
            table.ioModes[inode] = mode.isUnused ? nil : mode
            return close
        }
        if let close { kernel?.backingClose(close) }
    }

    /// Counts a write open of `inode` as waiting (`by` 1) or no longer (-1).
    func writerWaits(_ inode: Inode, by change: Int) {
        handles.withLock { table in
            var mode = table.ioModes[inode] ?? IOMode()
            mode.waitingWriters += change
            table.ioModes[inode] = mode.isUnused ? nil : mode
        }
    }

    /// Lets a waiting write open of `inode` in first: waits until none waits, or `deadline`.
    func waitForWriters(_ inode: Inode, until deadline: ContinuousClock.Instant) {
        while handles.withLock({ ($0.ioModes[inode]?.waitingWriters ?? 0) > 0 }), ContinuousClock.now < deadline {
            usleep(5_000)
        }
    }

    /// Whether an inode has opens using a backing file, after waiting until `deadline` for them
    /// to go: close(2) returns before the kernel's RELEASE reaches the daemon, so an open right
    /// after the last close would otherwise find it still counted.
    func openByPassthrough(_ inode: Inode, until deadline: ContinuousClock.Instant) -> Bool {
        while handles.withLock({ ($0.ioModes[inode]?.passthrough ?? 0) > 0 }) {
            guard ContinuousClock.now < deadline else { return true }
            usleep(5_000)
        }
        return false
    }
}
