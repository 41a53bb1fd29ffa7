import Synchronization

/// Buffers that reads are answered from, kept for reuse. A FUSE read asks up to 128 KiB (more
/// with larger max_pages); allocated per read, a buffer that size sits at malloc's threshold for
/// mapping memory, and malloc mapped and unmapped (and the kernel zeroed) one per read: the
/// daemon's system time grew sixfold and plain-path reads took about 1.6 times as long
/// (docs/PERFORMANCE.md).
final class ReadBuffers: Sendable {
    /// One buffer, page-aligned, of at least the size asked.
    struct Buffer: @unchecked Sendable {
        // @unchecked: a buffer is owned by one reader between `take` and `give`.
        let memory: UnsafeMutableRawBufferPointer
    }

    private let free = Mutex<[Buffer]>([])
    /// Buffers kept at most (one per FUSE worker thread is enough).
    let limit: Int

    init(limit: Int = 32) { self.limit = limit }

    deinit {
        for buffer in free.withLock({ $0 }) { buffer.memory.deallocate() }
    }

    /// A buffer of at least `size` bytes (rounded up to 128 KiB), reused when one is free.
    func take(_ size: Int) -> Buffer {
        if let buffer = free.withLock({ $0.popLast() }) {
            if buffer.memory.count >= size { return buffer }
            buffer.memory.deallocate()
        }
        let rounded = max(1, (size + (128 << 10) - 1) / (128 << 10)) * (128 << 10)
        return Buffer(memory: .allocate(byteCount: rounded, alignment: 4096))
    }

    /// Returns a buffer taken with `take`.
    func give(_ buffer: Buffer) {
        let kept = free.withLock { list -> Bool in
            guard list.count < limit else { return false }
            list.append(buffer)
            return true
        }
        if !kept { buffer.memory.deallocate() }
    }

    /// Runs `body` with `size` bytes of a buffer that goes back to the pool after it.
    func with<T>(_ size: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> T) rethrows -> T {
        let buffer = take(size)
        defer { give(buffer) }
        return try body(UnsafeMutableRawBufferPointer(rebasing: buffer.memory[0..<size]))
    }
}
