#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import SystemPackage

/// Hashes files: one file on one core (SHA-256 cannot be split), many files on all cores.
public enum FileHasher {
    /// Read size: large enough that the system call cost vanishes beside hashing.
    public static let chunkSize = 1 << 20

    /// Reads `fd` from its current offset to the end, feeding every chunk to `hasher` and to
    /// `consume`; returns the byte count. `progress` receives each chunk's length.
    public static func stream(
        _ fd: FileDescriptor, path: String, into hasher: SHA256Hasher,
        progress: (@Sendable (Int) -> Void)? = nil,
        consume: ((UnsafeRawBufferPointer) throws(StoreError) -> Void)? = nil
    ) throws(StoreError) -> Int64 {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        var total: Int64 = 0
        while true {
            let count = try SystemCalls.wrap("read", path) { try fd.read(into: buffer) }
            if count == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            hasher.update(chunk)
            try consume?(chunk)
            total += Int64(count)
            progress?(count)
        }
        return total
    }

    /// The SHA-256 of a file and the status it had while being read.
    ///
    /// - Throws: `StoreError.changedDuringRead` when size, mtime or identity moved while hashing.
    public static func hash(path: String, progress: (@Sendable (Int) -> Void)? = nil) throws(StoreError) -> (Digest, Stat) {
        let fd = try SystemCalls.openForReading(path)
        defer { try? fd.close() }
        let before = try SystemCalls.status(of: fd, path: path)
        guard before.isRegularFile else { throw .notRegularFile(path: path) }
        let hasher = try SHA256Hasher()
        let count = try stream(fd, path: path, into: hasher, progress: progress)
        let after = try SystemCalls.status(of: fd, path: path)
        guard after.sameFile(as: before), count == before.size else { throw .changedDuringRead(path: path) }
        return (hasher.finalize(), before)
    }

    /// Hashes many files on `workers` threads; results come back in input order.
    public static func hashAll(
        paths: [String], workers: Int = Machine.coreCount,
        progress: (@Sendable (Int) -> Void)? = nil
    ) -> [Result<(Digest, Stat), StoreError>] {
        Parallel.map(paths, workers: workers) { path in
            Result { () throws(StoreError) in try hash(path: path, progress: progress) }
        }
    }
}

/// Facts about this machine.
public enum Machine {
    /// Online cores, at least 1.
    public static var coreCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// Bounded parallel map on plain threads (Dispatch), for blocking work such as hashing files.
public enum Parallel {
    /// Applies `transform` to every element on up to `workers` threads; output keeps input order.
    public static func map<Element: Sendable, Output: Sendable>(
        _ items: [Element], workers: Int, _ transform: @Sendable (Element) -> Output
    ) -> [Output] {
        if items.isEmpty { return [] }
        let results = Mutex<[Output?]>(Array(repeating: nil, count: items.count))
        let next = Atomic<Int>(0)
        let threads = max(1, min(workers, items.count))
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while true {
                let index = next.add(1, ordering: .relaxed).oldValue
                if index >= items.count { return }
                let output = transform(items[index])
                results.withLock { $0[index] = output }
            }
        }
        return results.withLock { $0.compactMap { $0 } }
    }
}
