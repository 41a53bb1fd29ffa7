import Foundation
import TSRStore

/// Reads a safetensors header the ways model browsers do, through whatever `path` is (a mount):
/// with read(2) — 8 bytes, then the JSON — and through a shared read-only mapping of the whole
/// file (`safe_open(...).metadata()`), both with the kernel's own readahead. nil when the file
/// cannot be opened or read that far.
public enum HeaderPeek {
    public static func byRead(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var length = [UInt8](repeating: 0, count: 8)
        guard read(fd, &length, 8) == 8 else { return nil }
        var header = [UInt8](repeating: 0, count: Int(Safetensors.headerLength(length)))
        var filled = 0
        while filled < header.count {
            let n = header.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            guard n > 0 else { return nil }
            filled += n
        }
        return length + header
    }

    public static func byMmap(_ path: String, size: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let base = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else { return nil }
        defer { munmap(base, size) }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let end = 8 + Int(Safetensors.headerLength(Array(UnsafeBufferPointer(start: bytes, count: 8))))
        return Array(UnsafeBufferPointer(start: bytes, count: end))
    }
}
