import Foundation
import Synchronization
import TSRStore

/// A file being written through the mount: a store write transaction and the name it will get.
/// Shared by every handle open for writing on that name. Thread-safe through `lock`, which a
/// commit holds while it hashes (minutes for a large file): what others ask of a write on their
/// way — its name, its size — is kept outside it (`keyLock`, `shownSize`), so a stat, a listing or
/// a rename elsewhere never waits for that hash.
final class PendingWrite: @unchecked Sendable {
    // @unchecked: every mutable field is only touched while holding `lock` (`key`: `keyLock`,
    // which is taken inside `lock` or alone, never the other way round).
    let lock = NSLock()
    private let keyLock = NSLock()
    private var writer: BlobWriter?
    /// The name it becomes on commit; nil once unlinked (the bytes are then discarded). Read it
    /// with `name` and change it with `rename(to:)` from outside.
    private var key: AliasKey?
    /// The size to show, updated with every change.
    private let shownSize = Atomic<Int64>(0)
    /// What this write last committed (recorded under `key` by the mount), for reads after it.
    private(set) var lastCommit: Committed?
    /// The content last committed from this write.
    var committed: Digest? { lastCommit?.digest }
    var openHandles = 0
    /// The last handle is gone (see `leave`): nothing may join it any more.
    private(set) var finished = false
    /// The content it was copied from (copy-on-write of an existing file), for an open that
    /// comes too late to join.
    let base: Digest?
    var dirty = false
    /// Who changed the bytes since the last commit (lock owners of their writes; see `commit`).
    private var changers: Set<UInt64> = []
    /// A change whose process the kernel did not name.
    private var unknownChanger = false
    /// A write or truncate failed (a full disk, say): the bytes so far are discarded at once, and
    /// every later write, truncate and commit of this transaction fails the same way, so a file
    /// with a hole or a missing tail never gets a name. A new open for writing starts afresh.
    private var failure: (any Error)?

    init(key: AliasKey, writer: BlobWriter, base: Digest? = nil) {
        self.key = key
        self.writer = writer
        self.base = base
        shownSize.store(writer.written, ordering: .relaxed)
    }

    /// The name it has now (nil once unlinked).
    var name: AliasKey? { keyLock.withLock { key } }

    /// Gives it another name (a rename), or none (an unlink: its bytes will be discarded).
    func rename(to name: AliasKey?) { keyLock.withLock { key = name } }

    /// Adds an open handle; false when the write is finished (its last handle was released).
    func join() -> Bool {
        lock.withLock {
            if finished { return false }
            openHandles += 1
            return true
        }
    }

    /// Removes an open handle; true for the last one, after which the write is finished.
    func leave() -> Bool {
        lock.withLock {
            openHandles -= 1
            if openHandles <= 0 { finished = true }
            return finished
        }
    }

    /// The name and size to show as being written: set while there are uncommitted changes.
    var beingWritten: (key: AliasKey, size: Int64)? {
        lock.withLock {
            guard dirty, let key = name else { return nil }
            return (key, sizeLocked)
        }
    }

    /// What an open that comes after the last close should read: the committed content, else
    /// the content it started from (nil: a new file that never got a name).
    var outcome: Digest? { lock.withLock { committed ?? base } }

    /// The size to show; never waits for a commit's hash.
    var size: Int64 { shownSize.load(ordering: .relaxed) }
    /// Holds `lock`.
    private var sizeLocked: Int64 { writer?.written ?? lastCommit?.size ?? 0 }
    /// Holds `lock`: publishes the size after a change.
    private func showSize() { shownSize.store(sizeLocked, ordering: .relaxed) }

    /// Nothing uncommitted any more (committed, aborted or failed). Holds `lock`.
    private func markClean() {
        dirty = false
        changers.removeAll()
        unknownChanger = false
    }

    /// Writes at an offset for the process `owner` (a lock owner, 0 when unknown); starts a new
    /// transaction seeded from the last commit if needed. Returns whether this is the first change
    /// since the open or the last commit (the name is then shown as being written).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64, store: BlobStore, owner: UInt64) throws -> Bool {
        try lock.withLock {
            if let failure { throw failure }
            let first = !dirty
            try failing {
                let writer = try currentWriter(store: store)
                try writer.write(bytes, at: offset)
            }
            showSize()
            dirty = true
            if owner == 0 { unknownChanger = true } else { changers.insert(owner) }
            return first
        }
    }

    /// Truncates or extends; returns whether this is the first change (as `write`).
    func truncate(to size: Int64, store: BlobStore) throws -> Bool {
        try lock.withLock {
            if let failure { throw failure }
            let first = !dirty
            try failing { try currentWriter(store: store).truncate(to: size) }
            showSize()
            dirty = true
            return first
        }
    }

    /// Runs `body`; if it throws, the transaction is poisoned (see `failure`). Holds `lock`.
    private func failing(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch {
            failure = error
            writer?.abort()
            writer = nil
            markClean()
            showSize()
            throw error
        }
    }

    /// Forgets an earlier failure: the next write starts a new transaction (a new open for
    /// writing, e.g. after the user freed space).
    func clearFailure() {
        lock.withLock { failure = nil }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, store: BlobStore) throws -> Int {
        try lock.withLock {
            if let writer { return try writer.read(into: buffer, at: offset) }
            guard let committed else { return 0 }
            let fd = try SystemCallsBridge.openBlob(store: store, digest: committed)
            defer { try? fd.close() }
            return try fd.read(fromAbsoluteOffset: offset, into: buffer)
        }
    }

    /// Commits the bytes; returns the result, or nil when there was nothing new to commit.
    ///
    /// `closedBy` is the lock owner of a close(2) that is not the last one (a FUSE flush): it
    /// commits only if that process changed the bytes, or nobody the kernel named did (a new
    /// empty file, a truncate). A child that inherited the descriptor across fork and exits
    /// closes it too; it must not commit the half a parent has written so far. The last close
    /// (`closedBy` nil) always commits.
    func commit(closedBy owner: UInt64? = nil) throws -> Committed? {
        try lock.withLock {
            if let failure { throw failure }
            guard dirty, let writer else { return nil }
            if let owner, !unknownChanger, !changers.isEmpty, !changers.contains(owner) { return nil }
            self.writer = nil
            markClean()
            let result = try writer.commit()
            lastCommit = result
            showSize()
            return result
        }
    }

    func abort() {
        lock.withLock {
            writer?.abort()
            writer = nil
            markClean()
            showSize()
        }
    }

    private func currentWriter(store: BlobStore) throws -> BlobWriter {
        if let writer { return writer }
        // Written again after a commit: copy-on-write from what was committed.
        let fresh = try store.begin()
        if let committed { try Seed.copy(from: committed, into: fresh, store: store, limit: nil) }
        writer = fresh
        return fresh
    }
}

/// Copies a blob's bytes into a write transaction (copy-on-write of an existing file).
enum Seed {
    static func copy(from digest: Digest, into writer: BlobWriter, store: BlobStore, limit: Int64?) throws {
        let fd = try SystemCallsBridge.openBlob(store: store, digest: digest)
        defer { try? fd.close() }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while limit.map({ offset < $0 }) ?? true {
            let want = limit.map { min(Int64(chunk), $0 - offset) } ?? Int64(chunk)
            let count = try fd.read(fromAbsoluteOffset: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(want)]))
            if count == 0 { break }
            try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            offset += Int64(count)
        }
        if let limit, limit > offset { try writer.truncate(to: limit) }
    }
}
