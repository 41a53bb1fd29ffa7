#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Synchronization
import SystemPackage

/// How `BlobStore.adopt` brings an existing file into the store.
public enum AdoptMode: String, Sendable, CaseIterable, Codable {
    /// Hard link: the original path keeps working and shares the blob's inode (made read-only).
    case link
    /// The original path is removed once its blob is committed (and registered, by the caller).
    case move
    /// An independent copy: a reflink clone where the filesystem supports it, else a byte copy.
    case copy
}

/// What physically happened when a file was adopted.
public enum AdoptMethod: String, Sendable, Codable {
    case hardLink = "hard-link", reflink, byteCopy = "copy"
}

/// The result of committing bytes to the store.
public struct Committed: Sendable, Equatable {
    public var digest: Digest
    public var size: Int64
    /// The blob was already present; the new bytes were discarded.
    public var deduplicated: Bool

    public init(digest: Digest, size: Int64, deduplicated: Bool) {
        self.digest = digest
        self.size = size
        self.deduplicated = deduplicated
    }
}

/// The result of adopting an existing file.
public struct Adopted: Sendable, Equatable {
    public var committed: Committed
    public var method: AdoptMethod
    /// The source file's status as it was hashed.
    public var source: Stat
}

/// The outcome of re-hashing a blob.
public enum VerifyOutcome: Sendable, Equatable {
    case intact
    /// The bytes hash to `actual`; the file was moved to `quarantinedAt`.
    case corrupt(actual: Digest, quarantinedAt: String)
    case missing
}

/// The content-addressed blob store of one home. Thread-safe; several processes may share a home.
public final class BlobStore: Sendable {
    public let layout: StoreLayout
    private let sequence = Atomic<UInt64>(0)

    /// Temp files younger than this are never cleaned up, even unlocked: their writer may be
    /// between creating the file and locking it.
    public static let defaultTempGraceNs: Int64 = 60 * 1_000_000_000
    let tempGraceNs: Int64

    /// Opens (creating if needed) the store of a home and removes temp files that crashed
    /// writers left behind. Files of writers still running are locked and kept.
    public init(layout: StoreLayout, tempGraceNs: Int64 = BlobStore.defaultTempGraceNs) throws(StoreError) {
        self.layout = layout
        self.tempGraceNs = tempGraceNs
        // A new home is private (0700): the store holds whatever its user imported. Reads by
        // other users go through the mount (`--allow-other`), whose daemon reads the blobs.
        if !SystemCalls.exists(layout.home) {
            if let slash = layout.home.lastIndex(of: "/"), slash > layout.home.startIndex {
                try SystemCalls.makeDirectories(String(layout.home[..<slash]))
            }
            try SystemCalls.makeDirectories(layout.home, mode: 0o700)
        }
        for dir in [layout.blobsRoot, layout.tmp, layout.quarantine] {
            try SystemCalls.makeDirectories(dir)
        }
        _ = try? removeStaleTempFiles()
    }

    /// True when the blob is committed.
    public func contains(_ digest: Digest) -> Bool {
        SystemCalls.exists(layout.blobPath(digest))
    }

    /// The blob's size on disk, or nil when absent.
    public func size(of digest: Digest) -> Int64? {
        (try? SystemCalls.status(layout.blobPath(digest)))?.size
    }

    // MARK: Write transactions

    /// Starts a write transaction: bytes written go to a locked temp file and are hashed as they go.
    /// - Parameters:
    ///   - expected: the digest the bytes must have; a mismatch is quarantined at commit.
    ///   - expectedSize: the exact byte count, checked at commit.
    public func begin(expected: Digest? = nil, expectedSize: Int64? = nil) throws(StoreError) -> BlobWriter {
        let (fd, path) = try createTempFile()
        return try BlobWriter(store: self, fd: fd, tempPath: path, expected: expected, expectedSize: expectedSize)
    }

    /// Stores the bytes of a buffer (small blobs, tests).
    public func put(_ bytes: [UInt8], expected: Digest? = nil) throws(StoreError) -> Committed {
        let writer = try begin(expected: expected, expectedSize: Int64(bytes.count))
        do throws(StoreError) {
            try writer.write(bytes)
            return try writer.commit()
        } catch {
            writer.abort()
            throw error
        }
    }

    /// Starts or continues a resumable transaction named `key` (`tmp/partial-<key>`): the temp
    /// file outlives the process (cleanup of crashed writers leaves it alone) so a download can go
    /// on where it stopped. The bytes already there are hashed again. The file is held under an
    /// exclusive lock for the writer's life: while another writer, in this process or another,
    /// holds it, this throws `StoreError.busy` and the caller waits for that writer instead.
    public func resume(key: String, expected: Digest? = nil, expectedSize: Int64? = nil) throws(StoreError) -> BlobWriter {
        guard !key.isEmpty, key.utf8.allSatisfy({ $0 != 0x2F && $0 > 0x20 && $0 < 0x7F }) else {
            throw .io(operation: "name partial file", path: key, errno: .invalidArgument)
        }
        let path = partialPath(key)
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .readWrite, options: [.create, .closeOnExec, .noFollow], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch let code as Errno {
            throw .io(operation: "open", path: path, errno: code)
        } catch {
            throw .io(operation: "open", path: path, errno: .ioError)
        }
        // flock locks belong to the open file description, so a second open in this process is
        // refused just like another process.
        guard SystemCalls.tryLock(fd) else {
            try? fd.close()
            throw .busy(path: path)
        }
        return try BlobWriter(resuming: self, fd: fd, tempPath: path, expected: expected, expectedSize: expectedSize)
    }

    /// The temp file of a resumable transaction.
    public func partialPath(_ key: String) -> String { "\(layout.tmp)/partial-\(key)" }

    /// Bytes a resumable transaction holds so far (0 when it has none).
    public func partialSize(_ key: String) -> Int64 {
        (try? SystemCalls.linkStatus(partialPath(key)))?.size ?? 0
    }

    /// Removes the temp file of a resumable transaction nobody is writing (a cancelled download).
    public func discardPartial(_ key: String) {
        let path = partialPath(key)
        guard let fd = try? FileDescriptor.open(path, .readOnly, options: [.closeOnExec, .noFollow]) else { return }
        defer { try? fd.close() }
        if SystemCalls.tryLock(fd) { try? SystemCalls.remove(path) }
    }

    /// Resumable transactions no writer holds: their keys, paths and sizes.
    public func idlePartials() throws(StoreError) -> [(key: String, path: String, size: Int64)] {
        var idle: [(String, String, Int64)] = []
        for raw in try SystemCalls.listDirectory(layout.tmp) {
            let name = String(decoding: raw, as: UTF8.self)
            guard name.hasPrefix("partial-") else { continue }
            let path = layout.tmp + "/" + name
            guard let fd = try? FileDescriptor.open(path, .readOnly, options: [.closeOnExec, .noFollow]) else { continue }
            defer { try? fd.close() }
            guard SystemCalls.tryLock(fd) else { continue }
            SystemCalls.unlock(fd)
            idle.append((String(name.dropFirst("partial-".count)), path, (try? SystemCalls.status(of: fd, path: path))?.size ?? 0))
        }
        return idle
    }

    func createTempFile() throws(StoreError) -> (FileDescriptor, String) {
        while true {
            let path = nextTempPath()
            do {
                let fd = try FileDescriptor.open(
                    path, .readWrite, options: [.create, .exclusiveCreate, .closeOnExec],
                    // 0644 less the user's umask: what a blob published from it may show.
                    permissions: [.ownerReadWrite, .groupRead, .otherRead])
                lockTemp(fd)
                return (fd, path)
            } catch Errno.fileExists {
                continue
            } catch let code as Errno {
                throw .io(operation: "create", path: path, errno: code)
            } catch {
                throw .io(operation: "create", path: path, errno: .ioError)
            }
        }
    }

    private func nextTempPath() -> String {
        let n = sequence.add(1, ordering: .relaxed).oldValue
        return "\(layout.tmp)/txn-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// An exclusive advisory lock held for the life of the descriptor: it tells cleanup the
    /// temp file's writer is alive, and disappears with the process.
    private func lockTemp(_ fd: FileDescriptor) {
        SystemCalls.tryLock(fd)
    }

    /// Publishes a finished temp file at its blob path, or discards it when the blob already exists.
    /// The caller has fsynced the data and checked the digest.
    func publish(tempPath: String, fd: FileDescriptor, digest: Digest, size: Int64) throws(StoreError) -> Committed {
        let final = layout.blobPath(digest)
        if SystemCalls.exists(final) {
            try? SystemCalls.remove(tempPath)
            return Committed(digest: digest, size: size, deduplicated: true)
        }
        // Read-only, and never readable by more people than the bytes were: an imported file
        // keeps its own read bits (a private 0600 file becomes 0400, also at its original path,
        // which is the same inode under --link), a new one the read bits its creation under the
        // user's umask gave it.
        var status = stat()
        let readBits = fstat(fd.rawValue, &status) == 0 ? status.st_mode & 0o444 : 0o400
        _ = fchmod(fd.rawValue, readBits)
        let dir = "\(layout.blobsRoot)/\(digest.prefix)"
        try SystemCalls.makeDirectories(dir)
        // link(2), unlike rename(2), fails when the name exists: two writers committing the same
        // content at once cannot replace each other's blob, and exactly one sees it as new.
        do throws(StoreError) {
            try SystemCalls.hardLink(tempPath, to: final)
        } catch let error where error.errno == .fileExists {
            try? SystemCalls.remove(tempPath)
            return Committed(digest: digest, size: size, deduplicated: true)
        } catch let error where [.notPermitted, .notSupported].contains(error.errno) {
            // A filesystem without hard links: rename, accepting that a racing twin may replace it.
            try SystemCalls.rename(tempPath, to: final)
            try SystemCalls.syncDirectory(dir)
            return Committed(digest: digest, size: size, deduplicated: false)
        }
        try? SystemCalls.remove(tempPath)
        try SystemCalls.syncDirectory(dir)
        return Committed(digest: digest, size: size, deduplicated: false)
    }

    /// Moves bytes that failed verification out of the way, keeping them for inspection: one
    /// copy per distinct wrong content, named by the digest it actually has (the same wrong
    /// bytes downloaded again are dropped, not kept twice), and the folder kept within
    /// `quarantineLimit` by removing the oldest other copies. Returns where the bytes are.
    func quarantine(path: String, actual: Digest) -> String? {
        let target = "\(layout.quarantine)/\(actual.rawValue)"
        if (try? SystemCalls.status(target)) != nil {
            try? SystemCalls.remove(path)
            return target
        }
        do {
            try SystemCalls.rename(path, to: target)
        } catch {
            try? SystemCalls.remove(path)
            return nil
        }
        _ = try? trimQuarantine(limit: quarantineLimit, keeping: target)
        return target
    }

    /// The most bytes quarantine/ keeps (`TSR_QUARANTINE_LIMIT` in bytes; 20 GiB by default):
    /// past it the oldest copies go, never the newest.
    public var quarantineLimit: Int64 {
        getenv("TSR_QUARANTINE_LIMIT").flatMap { Int64(String(cString: $0)) } ?? 20 << 30
    }

    /// Every file in quarantine/ with its size and modification time, oldest first.
    public func quarantinedFiles() throws(StoreError) -> [(path: String, size: Int64, mtimeNs: Int64)] {
        var files: [(path: String, size: Int64, mtimeNs: Int64)] = []
        for name in try SystemCalls.listDirectory(layout.quarantine) {
            let path = layout.quarantine + "/" + String(decoding: name, as: UTF8.self)
            guard let status = try? SystemCalls.status(path), status.isRegularFile else { continue }
            files.append((path, status.size, status.mtimeNs))
        }
        return files.sorted { $0.mtimeNs < $1.mtimeNs }
    }

    /// Removes quarantined files, oldest first, until they take at most `limit` bytes (never
    /// `keeping`). Returns how many bytes were freed.
    @discardableResult
    public func trimQuarantine(limit: Int64, keeping: String? = nil) throws(StoreError) -> Int64 {
        let files = try quarantinedFiles()
        var total = files.reduce(0) { $0 + $1.size }
        var freed: Int64 = 0
        for file in files where total > limit && file.path != keeping {
            try SystemCalls.remove(file.path)
            total -= file.size
            freed += file.size
        }
        return freed
    }

    /// Removes quarantined files last modified before `cutoffNs` (all of them for `.max`).
    /// Returns how many files and bytes went.
    public func removeQuarantined(olderThanNs cutoffNs: Int64) throws(StoreError) -> (files: Int, bytes: Int64) {
        var removed = (files: 0, bytes: Int64(0))
        for file in try quarantinedFiles() where file.mtimeNs < cutoffNs {
            try SystemCalls.remove(file.path)
            removed.files += 1
            removed.bytes += file.size
        }
        return removed
    }

    // MARK: Adopting existing files

    /// Brings an existing file into the store without losing it: the original path is never
    /// modified or removed here (for `.move`, the caller removes it with `removeOriginal` once the
    /// blob is committed and registered).
    ///
    /// - Parameter allowCopyFallback: when a hard link is impossible (another filesystem), copy
    ///   instead of failing with `StoreError.crossDevice`.
    public func adopt(
        path: String, mode: AdoptMode, allowCopyFallback: Bool = true,
        progress: (@Sendable (Int) -> Void)? = nil
    ) throws(StoreError) -> Adopted {
        // A symlink's target is adopted, never the link itself: link(2) would copy the link.
        let path = try SystemCalls.realPath(path)
        let source = try SystemCalls.status(path)
        guard source.isRegularFile else { throw .notRegularFile(path: path) }
        if mode != .copy {
            let tempPath = nextTempPath()
            do {
                try SystemCalls.hardLink(path, to: tempPath)
                return try adoptLinked(tempPath: tempPath, originalPath: path, source: source, progress: progress)
            } catch let error where [.improperLink, .notPermitted, .notSupported].contains(error.errno) {
                // EXDEV across filesystems; EPERM/ENOTSUP where hard links are not allowed.
                if mode == .link && !allowCopyFallback { throw .crossDevice(path: path, home: layout.home) }
            }
        }
        return try adoptCopy(path: path, source: source, progress: progress)
    }

    private func adoptLinked(
        tempPath: String, originalPath: String, source: Stat, progress: (@Sendable (Int) -> Void)?
    ) throws(StoreError) -> Adopted {
        do throws(StoreError) {
            let fd = try SystemCalls.openForReading(tempPath)
            defer { try? fd.close() }
            lockTemp(fd)
            let before = try SystemCalls.status(of: fd, path: tempPath)
            // The name may have been replaced between our stat and the link.
            guard before.sameFile(as: source) else { throw StoreError.changedDuringRead(path: originalPath) }
            let hasher = try SHA256Hasher()
            let count = try FileHasher.stream(fd, path: originalPath, into: hasher, progress: progress)
            let after = try SystemCalls.status(of: fd, path: tempPath)
            guard after.sameFile(as: before), count == before.size else { throw StoreError.changedDuringRead(path: originalPath) }
            try SystemCalls.sync(fd, path: tempPath)
            let committed = try publish(tempPath: tempPath, fd: fd, digest: hasher.finalize(), size: count)
            return Adopted(committed: committed, method: .hardLink, source: source)
        } catch {
            try? SystemCalls.remove(tempPath)
            throw error
        }
    }

    private func adoptCopy(path: String, source: Stat, progress: (@Sendable (Int) -> Void)?) throws(StoreError) -> Adopted {
        let src = try SystemCalls.openForReading(path)
        defer { try? src.close() }
        let (temp, tempPath) = try createTempFile()
        defer { try? temp.close() }
        do throws(StoreError) {
            let hasher = try SHA256Hasher()
            let method: AdoptMethod
            let count: Int64
            if tsr_ficlone(temp.rawValue, src.rawValue) == 0 {
                // The clone shares extents; hash the clone, which is what the blob will hold.
                method = .reflink
                count = try FileHasher.stream(temp, path: tempPath, into: hasher, progress: progress)
            } else {
                method = .byteCopy
                count = try FileHasher.stream(src, path: path, into: hasher, progress: progress) { (chunk) throws(StoreError) in
                    _ = try SystemCalls.wrap("write", tempPath) { try temp.writeAll(chunk) }
                }
            }
            let after = try SystemCalls.status(of: src, path: path)
            guard after.sameFile(as: source), count == source.size else { throw StoreError.changedDuringRead(path: path) }
            // The copy is readable by no more people than the original.
            var status = stat()
            if fstat(temp.rawValue, &status) == 0 { _ = fchmod(temp.rawValue, status.st_mode & source.mode.rawValue & 0o666) }
            try SystemCalls.sync(temp, path: tempPath)
            let committed = try publish(tempPath: tempPath, fd: temp, digest: hasher.finalize(), size: count)
            return Adopted(committed: committed, method: method, source: source)
        } catch {
            try? SystemCalls.remove(tempPath)
            throw error
        }
    }

    /// Removes an original after `.move` adoption, but only if it is still the file that was
    /// hashed (same inode, size and mtime); otherwise it is kept and `changedDuringRead` thrown.
    public func removeOriginal(path: String, adopted: Adopted) throws(StoreError) {
        let now = try SystemCalls.linkStatus(path)
        if now.isSymlink {
            try SystemCalls.remove(path)
            return
        }
        // Making a hard-linked blob read-only moved its ctime, not its mtime: sameFile still holds.
        guard now.sameFile(as: adopted.source) else { throw .changedDuringRead(path: path) }
        try SystemCalls.remove(path)
    }

    // MARK: Verification and removal

    /// Re-hashes a blob. A mismatch moves the file to quarantine/ so no reader gets the bytes.
    public func verify(_ digest: Digest, progress: (@Sendable (Int) -> Void)? = nil) throws(StoreError) -> VerifyOutcome {
        let path = layout.blobPath(digest)
        guard SystemCalls.exists(path) else { return .missing }
        let (actual, _) = try FileHasher.hash(path: path, progress: progress)
        if actual == digest { return .intact }
        guard let aside = quarantine(path: path, actual: actual) else {
            throw .io(operation: "quarantine", path: path, errno: .ioError)
        }
        return .corrupt(actual: actual, quarantinedAt: aside)
    }

    /// Deletes a committed blob (garbage collection).
    public func remove(_ digest: Digest) throws(StoreError) {
        try SystemCalls.remove(layout.blobPath(digest))
    }

    /// Every blob file on disk, with its size and change time.
    public func blobsOnDisk() throws(StoreError) -> [(digest: Digest, status: Stat)] {
        var found: [(Digest, Stat)] = []
        for fan in try SystemCalls.listDirectory(layout.blobsRoot) {
            let dir = layout.blobsRoot + "/" + String(decoding: fan, as: UTF8.self)
            guard (try? SystemCalls.status(dir))?.isDirectory == true else { continue }
            for name in try SystemCalls.listDirectory(dir) {
                guard let digest = Digest(rawValue: String(decoding: name, as: UTF8.self)),
                    let status = try? SystemCalls.status(layout.blobPath(digest))
                else { continue }
                found.append((digest, status))
            }
        }
        return found
    }

    /// Temp files whose writer is gone: unlocked and older than the grace period.
    public func staleTempFiles() throws(StoreError) -> [String] {
        let now = Clock.nowNs()
        var stale: [String] = []
        for raw in try SystemCalls.listDirectory(layout.tmp) {
            let name = String(decoding: raw, as: UTF8.self)
            guard name.hasPrefix("txn-") else { continue }
            let path = layout.tmp + "/" + name
            guard let status = try? SystemCalls.linkStatus(path), now - status.ctimeNs >= tempGraceNs else { continue }
            guard let fd = try? FileDescriptor.open(path, .readOnly, options: [.closeOnExec, .noFollow]) else { continue }
            defer { try? fd.close() }
            if SystemCalls.tryLock(fd) { stale.append(path) }
        }
        return stale
    }

    /// Removes stale temp files; returns how many.
    @discardableResult
    public func removeStaleTempFiles() throws(StoreError) -> Int {
        let stale = try staleTempFiles()
        for path in stale { try? SystemCalls.remove(path) }
        return stale.count
    }
}

/// Wall-clock helpers.
public enum Clock {
    /// Nanoseconds since the epoch.
    public static func nowNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
