#if canImport(Glibc)
import Glibc
#endif
import CLinux
import SystemPackage

/// One write transaction: bytes stream into a locked temp file under `tmp/` and are hashed as
/// they go; `commit` checks them and renames them into place, `abort` (or deinit) deletes them.
///
/// Not thread-safe: one writer belongs to one thread at a time.
public final class BlobWriter {
    let store: BlobStore
    let fd: FileDescriptor
    let tempPath: String
    private var hasher: SHA256Hasher
    /// The digest the bytes must hash to, when known.
    public let expected: Digest?
    /// The exact size the bytes must have, when known.
    public let expectedSize: Int64?
    /// Bytes written so far (the file's size).
    public private(set) var written: Int64 = 0
    /// How far the incremental hash reaches; equal to `written` while every write appended.
    private var hashedThrough: Int64 = 0
    /// False once a write landed anywhere but the end, or the file was truncated: the hash is then
    /// computed from the file at commit.
    private var sequential = true
    private var open = true
    /// Appends are hashed by whoever took the hasher (`takeHasher`), on a thread of their own.
    private var externallyHashed = false
    /// Where the writeback started by appends reaches (see `startWriteback`).
    private var writebackFrom: Int64 = 0

    /// Appended bytes are handed to the disk in steps of this size while writing goes on.
    static let writebackStep: Int64 = 8 << 20

    init(store: BlobStore, fd: FileDescriptor, tempPath: String, expected: Digest?, expectedSize: Int64?) throws(StoreError) {
        self.store = store
        self.fd = fd
        self.tempPath = tempPath
        self.expected = expected
        self.expectedSize = expectedSize
        do {
            self.hasher = try SHA256Hasher()
        } catch {
            try? fd.close()
            try? SystemCalls.remove(tempPath)
            throw error
        }
    }

    deinit { abort() }

    /// Re-opens a resumable transaction: the bytes already in the temp file are hashed again (a
    /// partial file is never trusted), and writing continues at its end.
    convenience init(resuming store: BlobStore, fd: FileDescriptor, tempPath: String, expected: Digest?, expectedSize: Int64?) throws(StoreError) {
        try self.init(store: store, fd: fd, tempPath: tempPath, expected: expected, expectedSize: expectedSize)
        do throws(StoreError) {
            _ = try SystemCalls.wrap("seek", tempPath) { try fd.seek(offset: 0, from: .start) }
            let count = try FileHasher.stream(fd, path: tempPath, into: hasher)
            written = count
            hashedThrough = count
            writebackFrom = count
        } catch {
            abandon()
            throw error
        }
    }

    /// Throws the bytes written so far away and starts again from zero (a server that answered a
    /// resume with the whole file, or content that changed at the source).
    public func restart() throws(StoreError) {
        guard open else { throw .transactionClosed }
        try SystemCalls.retrying("ftruncate", tempPath) { ftruncate(fd.rawValue, 0) }
        hasher = try SHA256Hasher()
        written = 0
        writebackFrom = 0
        hashedThrough = 0
        sequential = true
        externallyHashed = false
    }

    /// Hands the running hash to the caller, who must feed it exactly the bytes appended from now
    /// on, in order, and be done before `commit` (which finalizes it). Lets hashing run on another
    /// thread than writing. nil when the bytes so far are not hashed in order (then commit hashes
    /// the file). `restart` makes a new hasher: take it again.
    public func takeHasher() -> SHA256Hasher? {
        guard sequential, hashedThrough == written else { return nil }
        externallyHashed = true
        return hasher
    }

    /// Closes the transaction but keeps its temp file, so a later `BlobStore.resume` continues it
    /// (an interrupted download).
    public func suspend() {
        guard open else { return }
        try? SystemCalls.sync(fd, path: tempPath)
        abandon()
    }

    /// Appends bytes. On failure (disk full…) the transaction stays open for the caller to abort.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        guard open else { throw .transactionClosed }
        try write(bytes, at: written)
    }

    /// Writes bytes at an offset (a hole before it reads as zeros). Appends keep hashing as they
    /// go; any other write makes `commit` hash the whole file instead.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(StoreError) {
        guard open else { throw .transactionClosed }
        _ = try SystemCalls.wrap("write", tempPath) { try fd.writeAll(toAbsoluteOffset: offset, bytes) }
        if sequential && offset == hashedThrough {
            if !externallyHashed { hasher.update(bytes) }
            hashedThrough += Int64(bytes.count)
        } else {
            sequential = false
        }
        written = max(written, offset + Int64(bytes.count))
        if sequential && written - writebackFrom >= Self.writebackStep { startWriteback() }
    }

    /// Starts writing the appended bytes to disk (sync_file_range, SYNC_FILE_RANGE_WRITE) without
    /// waiting: the fsync at commit, which a blob needs before it is published, then waits only
    /// for the last step instead of the whole file. Only for appends: bytes that may be written
    /// again would go to disk twice. Failure is harmless (commit's fsync writes them anyway).
    private func startWriteback() {
        _ = tsr_start_writeback(fd.rawValue, writebackFrom, written - writebackFrom)
        writebackFrom = written
    }

    /// Sets the size (ftruncate); shrinking or growing both make the hash come from the file.
    public func truncate(to size: Int64) throws(StoreError) {
        guard open else { throw .transactionClosed }
        try SystemCalls.retrying("ftruncate", tempPath) { ftruncate(fd.rawValue, off_t(size)) }
        if size != hashedThrough { sequential = false }
        written = size
    }

    /// Reads back bytes written so far (a reader of a file still being written).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(StoreError) -> Int {
        guard open else { throw .transactionClosed }
        return try SystemCalls.wrap("read", tempPath) { try fd.read(fromAbsoluteOffset: offset, into: buffer) }
    }

    /// Appends the bytes of an array.
    public func write(_ bytes: [UInt8]) throws(StoreError) {
        let result: Result<Void, StoreError> = bytes.withUnsafeBytes { raw in
            Result { () throws(StoreError) in try write(raw) }
        }
        try result.get()
    }

    /// fsyncs, checks size and digest, and renames the bytes into their blob path (or discards
    /// them when the blob already exists). A digest mismatch moves the bytes to quarantine/.
    public func commit() throws(StoreError) -> Committed {
        guard open else { throw .transactionClosed }
        open = false
        defer { try? fd.close() }
        do throws(StoreError) {
            if let expectedSize, written != expectedSize {
                throw StoreError.sizeMismatch(path: expected.map { "blob \($0.short)" } ?? "download", expected: expectedSize, actual: written)
            }
            try SystemCalls.sync(fd, path: tempPath)
            let actual: Digest
            if sequential && hashedThrough == written {
                actual = hasher.finalize()
            } else {
                let rehash = try SHA256Hasher()
                _ = try SystemCalls.wrap("seek", tempPath) { try fd.seek(offset: 0, from: .start) }
                _ = try FileHasher.stream(fd, path: tempPath, into: rehash)
                actual = rehash.finalize()
            }
            if let expected, actual != expected {
                let aside = store.quarantine(path: tempPath, actual: actual)
                throw StoreError.digestMismatch(expected: expected, actual: actual, quarantined: aside)
            }
            return try store.publish(tempPath: tempPath, fd: fd, digest: actual, size: written)
        } catch {
            try? SystemCalls.remove(tempPath)
            throw error
        }
    }

    /// Closes the descriptor and leaves the temp file behind, as a process killed mid-write
    /// would: tests use it to check crash recovery.
    func abandon() {
        open = false
        try? fd.close()
    }

    /// Discards the bytes. Safe to call more than once.
    public func abort() {
        guard open else { return }
        open = false
        try? fd.close()
        try? SystemCalls.remove(tempPath)
    }
}
