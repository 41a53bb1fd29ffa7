#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage

/// What tensors reads from `stat(2)`, on swift-system's `Stat` (the one stat type of the project).
extension Stat {
    /// The device, as a plain number (the registry stores it).
    public var device: UInt64 { UInt64(deviceID.rawValue) }
    /// The inode number, as a plain number (the registry stores it).
    public var inodeNumber: UInt64 { UInt64(inode.rawValue) }
    /// Modification time in nanoseconds since the epoch.
    public var mtimeNs: Int64 { Int64(st_mtim.tv_sec) * 1_000_000_000 + Int64(st_mtim.tv_nsec) }
    /// Status-change time in nanoseconds since the epoch.
    public var ctimeNs: Int64 { Int64(st_ctim.tv_sec) * 1_000_000_000 + Int64(st_ctim.tv_nsec) }

    public var isRegularFile: Bool { type == .regular }
    public var isDirectory: Bool { type == .directory }
    public var isSymlink: Bool { type == .symbolicLink }

    /// True when two observations describe the same, unchanged file content.
    public func sameFile(as other: Stat) -> Bool {
        device == other.device && inodeNumber == other.inodeNumber && size == other.size && mtimeNs == other.mtimeNs
    }
}

/// The one place that turns failed POSIX calls into `StoreError.io`, retrying on EINTR.
///
/// File descriptor I/O goes through swift-system's `FileDescriptor`; path-level calls that it does
/// not offer (stat, link, rename, fsync of directories…) come here.
public enum SystemCalls {
    /// Runs a call returning -1 on failure, retrying while it fails with EINTR.
    @discardableResult
    static func retrying(_ operation: String, _ path: String, _ call: () -> Int32) throws(StoreError) -> Int32 {
        while true {
            let result = call()
            if result != -1 { return result }
            let code = Errno(rawValue: Glibc.errno)
            if code == .interrupted { continue }
            throw .io(operation: operation, path: path, errno: code)
        }
    }

    /// stat(2), following symlinks.
    public static func status(_ path: String) throws(StoreError) -> Stat {
        var st = stat()
        try retrying("stat", path) { stat(path, &st) }
        return Stat(rawValue: st)
    }

    /// lstat(2): the link itself, not its target.
    public static func linkStatus(_ path: String) throws(StoreError) -> Stat {
        var st = stat()
        try retrying("lstat", path) { lstat(path, &st) }
        return Stat(rawValue: st)
    }

    /// True when nothing is at `path` (lstat answers ENOENT or ENOTDIR); false when something is,
    /// or when it cannot be told (EACCES, EIO…): a file that cannot be seen is not gone.
    public static func isGone(_ path: String) -> Bool {
        do {
            _ = try linkStatus(path)
            return false
        } catch {
            guard case let .io(_, _, code) = error else { return false }
            return code == .noSuchFileOrDirectory || code == .notDirectory
        }
    }

    /// flock(LOCK_EX | LOCK_NB): true when `fd`'s open file description now holds the lock (a
    /// second open of the same file, even in this process, is refused it). Released on close.
    @discardableResult
    public static func tryLock(_ fd: FileDescriptor) -> Bool { flock(fd.rawValue, LOCK_EX | LOCK_NB) == 0 }

    /// flock(LOCK_SH | LOCK_NB): marks `fd`'s file as in use by a reader, so that the bounded
    /// cache (which asks `isInUse`) does not evict it. Best effort; released on close.
    public static func markInUse(_ fd: FileDescriptor) { _ = flock(fd.rawValue, LOCK_SH | LOCK_NB) }

    /// True while some open file description (in any process) holds a lock on `path`: a reader
    /// marked it in use (`markInUse`), or a writer holds it. False when nothing is there.
    public static func isInUse(_ path: String) -> Bool { isLockedElsewhere(path) }

    /// flock(LOCK_SH), waiting for an exclusive holder (an eviction in progress) to finish.
    public static func shareLockWaiting(_ fd: FileDescriptor) { _ = flock(fd.rawValue, LOCK_SH) }

    /// flock(LOCK_UN).
    public static func unlock(_ fd: FileDescriptor) { _ = flock(fd.rawValue, LOCK_UN) }

    /// True while another open file description holds `path`'s lock (its writer is alive); false
    /// when nothing is there or nobody holds it.
    public static func isLockedElsewhere(_ path: String) -> Bool {
        guard let fd = try? FileDescriptor.open(path, .readOnly, options: [.closeOnExec, .noFollow]) else { return false }
        defer { try? fd.close() }
        guard tryLock(fd) else { return true }
        unlock(fd)
        return false
    }

    /// Why `path` cannot be opened read-write (a device check: /dev/fuse), or nil when it can.
    public static func readWriteOpenFailure(_ path: String) -> String? {
        do {
            try FileDescriptor.open(path, .readWrite, options: [.closeOnExec]).close()
            return nil
        } catch let code as Errno {
            return code.description
        } catch {
            return "\(error)"
        }
    }

    /// fstat(2).
    public static func status(of fd: FileDescriptor, path: String) throws(StoreError) -> Stat {
        var st = stat()
        try retrying("fstat", path) { fstat(fd.rawValue, &st) }
        return Stat(rawValue: st)
    }

    /// True when something (file, directory or dangling link) exists at the path.
    public static func exists(_ path: String) -> Bool {
        // lstat: a dangling link still occupies the name.
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// mkdir -p with the given mode for directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(StoreError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) == 0 { continue }
            let code = Errno(rawValue: Glibc.errno)
            if code == .fileExists, (try? status(current))?.isDirectory == true { continue }
            throw .io(operation: "mkdir", path: current, errno: code)
        }
    }

    /// realpath(3): the absolute path with every symlink resolved.
    public static func realPath(_ path: String) throws(StoreError) -> String {
        guard let resolved = realpath(path, nil) else {
            throw .io(operation: "realpath", path: path, errno: Errno(rawValue: Glibc.errno))
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// rename(2): atomic replacement within one filesystem.
    public static func rename(_ from: String, to: String) throws(StoreError) {
        try retrying("rename", from) { Glibc.rename(from, to) }
    }

    /// link(2): a second name for the same inode.
    public static func hardLink(_ from: String, to: String) throws(StoreError) {
        try retrying("link", from) { link(from, to) }
    }

    /// unlink(2).
    public static func remove(_ path: String) throws(StoreError) {
        try retrying("unlink", path) { unlink(path) }
    }

    /// chmod(2).
    public static func changeMode(_ path: String, _ mode: mode_t) throws(StoreError) {
        try retrying("chmod", path) { chmod(path, mode) }
    }

    /// fsync(2) of a directory, so that a rename into it survives a power cut.
    public static func syncDirectory(_ path: String) throws(StoreError) {
        let fd = try retrying("open", path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        try retrying("fsync", path) { fsync(fd) }
    }

    /// Names in a directory, without "." and "..". Names are raw bytes: they need not be UTF-8.
    public static func listDirectory(_ path: String) throws(StoreError) -> [[UInt8]] {
        guard let dir = opendir(path) else {
            throw .io(operation: "opendir", path: path, errno: Errno(rawValue: Glibc.errno))
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name: [UInt8] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.prefix(while: { $0 != 0 }))
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            names.append(name)
        }
        return names
    }

    /// Opens a file for reading with a sequential-access hint.
    public static func openForReading(_ path: String) throws(StoreError) -> FileDescriptor {
        do {
            let fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec])
            _ = posix_fadvise(fd.rawValue, 0, 0, POSIX_FADV_SEQUENTIAL)
            return fd
        } catch let code as Errno {
            throw .io(operation: "open", path: path, errno: code)
        } catch {
            throw .io(operation: "open", path: path, errno: .ioError)
        }
    }

    /// fsync(2) on a descriptor.
    public static func sync(_ fd: FileDescriptor, path: String) throws(StoreError) {
        try retrying("fsync", path) { fsync(fd.rawValue) }
    }

    /// Maps an error thrown by swift-system into a `StoreError`.
    static func wrap<T>(_ operation: String, _ path: String, _ body: () throws -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch let code as Errno {
            throw .io(operation: operation, path: path, errno: code)
        } catch let error as StoreError {
            throw error
        } catch {
            throw .io(operation: operation, path: path, errno: .ioError)
        }
    }
}
