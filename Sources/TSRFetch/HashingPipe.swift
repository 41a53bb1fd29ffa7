import Foundation
import TSRStore

/// Takes received bytes off the transfer thread: one thread writes them through the store
/// transaction, another hashes them, so the transfer thread only copies (hashing inline in
/// libcurl's write callback ran at 0.63× of curl's speed on two cores, as measured, and one
/// thread doing both writing and hashing needs longer per GiB than the transfer itself).
///
/// Bytes are copied into a fixed pool of 1 MiB buffers that go round: no allocation per chunk
/// (a fresh array per callback cost an mmap and a page fault per page). A full buffer goes to
/// both workers and returns to the pool when both are done with it. Everything that touches the
/// writer directly (`reset`, `finish`) first waits until both workers are idle.
final class HashingPipe: @unchecked Sendable {
    // @unchecked: the writer is used by the write worker only while it holds a buffer, the hasher
    // by the hash worker only; callers touch either only after `drainLocked` saw both idle. A full
    // buffer's bytes are only read. Every other field is guarded by `condition`.
    private let writer: BlobWriter
    /// The writer's running hash, fed here; nil when the bytes held are not hashed in order
    /// (then the writer hashes the file at commit).
    private var hasher: SHA256Hasher?
    private let condition = NSCondition()
    private let buffers: [UnsafeMutableRawBufferPointer]
    private var free: [Int]
    /// Full buffers (index, length) waiting for the write and the hash worker.
    private var toWrite: [(Int, Int)] = []
    private var toHash: [(Int, Int)] = []
    /// How many workers still need each buffer.
    private var users: [Int]
    private var filling: Int?
    private var fillCount = 0
    private var writing = false
    private var hashing = false
    private var closing = false
    private var running = 2
    private var failure: StoreError?
    /// Bytes held: written by the worker plus waiting in buffers.
    private var held: Int64

    static let bufferSize = 1 << 20
    /// 16 MiB in flight at most; beyond it the transfer thread waits (back-pressure).
    static let bufferCount = 16

    init(writer: BlobWriter) {
        self.writer = writer
        hasher = writer.takeHasher()
        held = writer.written
        buffers = (0..<Self.bufferCount).map { _ in .allocate(byteCount: Self.bufferSize, alignment: 4096) }
        free = Array(buffers.indices)
        users = Array(repeating: 0, count: Self.bufferCount)
        let write = Thread { [self] in work(writes: true) }
        write.name = "tsr-write"
        let hash = Thread { [self] in work(writes: false) }
        hash.name = "tsr-hash"
        write.start()
        hash.start()
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    /// Bytes the transaction holds, counting those still queued.
    var heldBytes: Int64 { condition.withLock { held } }

    /// Copies `bytes` into the pool; false once writing has failed (the transfer should stop).
    func push(_ bytes: UnsafeRawBufferPointer) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        var rest = bytes[...]
        while !rest.isEmpty {
            guard failure == nil else { return false }
            if filling == nil {
                while free.isEmpty && failure == nil { condition.wait() }
                guard failure == nil else { return false }
                filling = free.removeLast()
                fillCount = 0
            }
            guard let index = filling else { return false }
            let take = min(rest.count, Self.bufferSize - fillCount)
            // Copying under the lock is safe and short: no worker touches a filling buffer.
            UnsafeMutableRawBufferPointer(rebasing: buffers[index][fillCount..<(fillCount + take)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: rest.prefix(take)))
            fillCount += take
            held += Int64(take)
            rest = rest.dropFirst(take)
            if fillCount == Self.bufferSize { handOver() }
        }
        return true
    }

    /// Queues the buffer being filled for the workers. Called with `condition` held.
    private func handOver() {
        guard let index = filling else { return }
        filling = nil
        if fillCount > 0 {
            toWrite.append((index, fillCount))
            if hasher != nil {
                toHash.append((index, fillCount))
                users[index] = 2
            } else {
                users[index] = 1
            }
        } else {
            free.append(index)
        }
        fillCount = 0
        condition.broadcast()
    }

    /// Waits until every byte pushed is written and hashed; throws the write error, if any.
    func drain() throws(StoreError) {
        condition.lock()
        defer { condition.unlock() }
        try drainLocked()
    }

    private func drainLocked() throws(StoreError) {
        handOver()
        while (!toWrite.isEmpty || !toHash.isEmpty || writing || hashing) && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    /// Throws the bytes held away and starts from zero.
    func reset() throws(StoreError) {
        condition.lock()
        defer { condition.unlock() }
        try drainLocked()
        try writer.restart()
        hasher = writer.takeHasher()
        held = 0
    }

    /// Writes and hashes what is queued, stops the workers and gives the writer back (for commit
    /// or suspend), with the write error if there was one.
    func finish() -> (BlobWriter, StoreError?) {
        condition.lock()
        handOver()
        closing = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        let failure = self.failure
        condition.unlock()
        return (writer, failure)
    }

    private func work(writes: Bool) {
        condition.lock()
        while true {
            while (writes ? toWrite : toHash).isEmpty && !closing { condition.wait() }
            if (writes ? toWrite : toHash).isEmpty && closing { break }
            let (index, count) = writes ? toWrite.removeFirst() : toHash.removeFirst()
            if writes { writing = true } else { hashing = true }
            let failed = failure != nil
            let hasher = self.hasher
            condition.unlock()
            var error: StoreError?
            let bytes = UnsafeRawBufferPointer(rebasing: buffers[index][0..<count])
            if writes {
                if !failed {
                    do throws(StoreError) { try writer.write(bytes) } catch let e { error = e }
                }
            } else {
                hasher?.update(bytes)
            }
            condition.lock()
            if writes { writing = false } else { hashing = false }
            users[index] -= 1
            if users[index] == 0 { free.append(index) }
            if let error, failure == nil { failure = error }
            condition.broadcast()
        }
        running -= 1
        condition.broadcast()
        condition.unlock()
    }
}
