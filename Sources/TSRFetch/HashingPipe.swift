import Foundation
import TSRStore

/// Hands received bytes to a thread of their own that writes and hashes them (through the
/// store transaction), so the transfer thread only copies: hashing inline in libcurl's write
/// callback ran at 0.63× of curl's speed on two cores (REFERENCE §7).
///
/// Bytes are copied into a fixed pool of 1 MiB buffers that go round between the two threads:
/// no allocation per chunk (a fresh 512 KiB array per callback cost an mmap and a page fault per
/// page), and the worker writes in 1 MiB pieces. The transfer thread calls `push`; everything
/// that touches the writer directly (`reset`, `finish`) first waits until the worker is idle.
final class HashingPipe: @unchecked Sendable {
    // @unchecked: `writer` and the buffers' bytes are used by one thread at a time, handed over
    // under `condition` (a full buffer belongs to the worker until it is back in `free`); every
    // other field is guarded by `condition`.
    private let writer: BlobWriter
    private let condition = NSCondition()
    private let buffers: [UnsafeMutableRawBufferPointer]
    /// Buffers the transfer thread may fill, full buffers waiting for the worker (index, length).
    private var free: [Int]
    private var full: [(Int, Int)] = []
    /// The buffer being filled and how much of it is.
    private var filling: Int?
    private var fillCount = 0
    private var busy = false
    private var closing = false
    private var exited = false
    private var failure: StoreError?
    /// Bytes held: written by the worker plus waiting in buffers.
    private var held: Int64

    static let bufferSize = 1 << 20
    /// 16 MiB in flight at most; beyond it the transfer thread waits (back-pressure).
    static let bufferCount = 16

    init(writer: BlobWriter) {
        self.writer = writer
        held = writer.written
        buffers = (0..<Self.bufferCount).map { _ in .allocate(byteCount: Self.bufferSize, alignment: 4096) }
        free = Array(buffers.indices)
        let thread = Thread { [self] in work() }
        thread.name = "tsr-hash-write"
        thread.start()
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
            // Copying under the lock is safe and short: the worker never touches a filling buffer.
            UnsafeMutableRawBufferPointer(rebasing: buffers[index][fillCount..<(fillCount + take)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: rest.prefix(take)))
            fillCount += take
            held += Int64(take)
            rest = rest.dropFirst(take)
            if fillCount == Self.bufferSize { handOver() }
        }
        return true
    }

    /// Queues the buffer being filled for the worker. Called with `condition` held.
    private func handOver() {
        guard let index = filling else { return }
        filling = nil
        if fillCount > 0 { full.append((index, fillCount)) } else { free.append(index) }
        fillCount = 0
        condition.broadcast()
    }

    /// Waits until every byte pushed is written; throws the write error, if any.
    func drain() throws(StoreError) {
        condition.lock()
        defer { condition.unlock() }
        try drainLocked()
    }

    private func drainLocked() throws(StoreError) {
        handOver()
        while (!full.isEmpty || busy) && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    /// Throws the bytes held away and starts from zero.
    func reset() throws(StoreError) {
        condition.lock()
        defer { condition.unlock() }
        try drainLocked()
        try writer.restart()
        held = 0
    }

    /// Writes what is queued, stops the worker and gives the writer back (for commit or
    /// suspend), with the write error if there was one.
    func finish() -> (BlobWriter, StoreError?) {
        condition.lock()
        handOver()
        closing = true
        condition.broadcast()
        while !exited { condition.wait() }
        let failure = self.failure
        condition.unlock()
        return (writer, failure)
    }

    private func work() {
        condition.lock()
        while true {
            while full.isEmpty && !closing { condition.wait() }
            if full.isEmpty && closing { break }
            let (index, count) = full.removeFirst()
            busy = true
            let failed = failure != nil
            condition.unlock()
            var error: StoreError?
            if !failed {
                do throws(StoreError) {
                    try writer.write(UnsafeRawBufferPointer(rebasing: buffers[index][0..<count]))
                } catch let e { error = e }
            }
            condition.lock()
            busy = false
            free.append(index)
            if let error, failure == nil { failure = error }
            condition.broadcast()
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
