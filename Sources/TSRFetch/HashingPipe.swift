import Foundation
import TSRStore

/// Hands received bytes to a thread of their own that writes and hashes them (through the
/// store transaction), so the transfer thread only copies: hashing inline in libcurl's write
/// callback ran at 0.63× of curl's speed on two cores (REFERENCE §7).
///
/// The transfer thread calls `push`; everything that touches the writer directly (`reset`,
/// `finish`) first waits until the queue is empty and the worker idle.
final class HashingPipe: @unchecked Sendable {
    // @unchecked: `writer` is used by the worker thread only while `busy` or a chunk is queued, and
    // by callers only after `drainLocked` saw both clear; every other field is guarded by `condition`.
    private let writer: BlobWriter
    private let condition = NSCondition()
    private var queue: [[UInt8]] = []
    private var queuedBytes = 0
    private var busy = false
    private var closing = false
    private var exited = false
    private var failure: StoreError?
    /// Bytes held: written by the worker plus queued.
    private var held: Int64

    /// At most this much waits in memory; the transfer thread blocks beyond it (back-pressure).
    static let maxQueuedBytes = 32 << 20

    init(writer: BlobWriter) {
        self.writer = writer
        held = writer.written
        let thread = Thread { [self] in work() }
        thread.name = "tsr-hash-write"
        thread.start()
    }

    /// Bytes the transaction holds, counting those still queued.
    var heldBytes: Int64 { condition.withLock { held } }

    /// Queues a copy of `bytes`; false once writing has failed (the transfer should stop).
    func push(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let copy = [UInt8](bytes)
        condition.lock()
        defer { condition.unlock() }
        while queuedBytes >= Self.maxQueuedBytes && failure == nil { condition.wait() }
        guard failure == nil else { return false }
        queue.append(copy)
        queuedBytes += copy.count
        held += Int64(copy.count)
        condition.broadcast()
        return true
    }

    /// Waits until every queued byte is written; throws the write error, if any.
    func drain() throws(StoreError) {
        condition.lock()
        defer { condition.unlock() }
        try drainLocked()
    }

    private func drainLocked() throws(StoreError) {
        while (!queue.isEmpty || busy) && failure == nil { condition.wait() }
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

    /// Stops the worker after it wrote everything queued and gives the writer back (for commit
    /// or suspend). A write error is thrown; the writer is returned through `writerAfterFailure`.
    func finish() -> (BlobWriter, StoreError?) {
        condition.lock()
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
            while queue.isEmpty && !closing { condition.wait() }
            if queue.isEmpty && closing { break }
            let chunk = queue.removeFirst()
            busy = true
            let failed = failure != nil
            condition.unlock()
            var error: StoreError?
            if !failed {
                do throws(StoreError) { try writer.write(chunk) } catch let e { error = e }
            }
            condition.lock()
            busy = false
            queuedBytes -= chunk.count
            if let error, failure == nil { failure = error }
            condition.broadcast()
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
