import Foundation
import TSRStore

/// A fresh directory under the system temp dir, removed by `remove()`.
public struct TempDirectory: Sendable {
    public let path: String

    public init(_ label: String = "tsr-test") throws {
        let template = NSTemporaryDirectory() + "\(label)-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: made)
    }

    /// Deletes the directory and everything below it (read-only blobs included).
    public func remove() {
        _ = try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes bytes to a path below the directory, creating parents.
    @discardableResult
    public func write(_ relative: String, _ bytes: [UInt8]) throws -> String {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: full))
        return full
    }

    /// Runs `body` with a new temp directory and removes it afterwards, even on failure.
    public static func with<T>(_ label: String = "tsr-test", _ body: (TempDirectory) throws -> T) throws -> T {
        let dir = try TempDirectory(label)
        defer { dir.remove() }
        return try body(dir)
    }
}

/// A small tmpfs mounted for the duration of a closure: a second filesystem (for cross-device
/// imports) or a disk that fills up. Needs root; `isAvailable` tells.
public enum Tmpfs {
    public static var isAvailable: Bool { getuid() == 0 && FileManager.default.fileExists(atPath: "/bin/mount") }

    public static func with<T>(sizeBytes: Int, _ body: (String) throws -> T) throws -> T {
        let dir = try TempDirectory("tsr-tmpfs")
        defer { dir.remove() }
        let mounted = try Shell.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(sizeBytes)", "tmpfs", dir.path])
        guard mounted.status == 0 else { throw ShellError(message: "mount tmpfs failed: \(mounted.stderr)") }
        defer {
            if (try? Shell.run("/bin/umount", [dir.path]))?.status != 0 { _ = try? Shell.run("/bin/umount", ["-l", dir.path]) }
        }
        return try body(dir.path)
    }
}

/// A small btrfs filesystem on a loop device, for the reflink path. Needs root and btrfs-progs.
public enum Btrfs {
    public static var isAvailable: Bool {
        getuid() == 0 && FileManager.default.fileExists(atPath: "/sbin/mkfs.btrfs") && FileManager.default.fileExists(atPath: "/dev/loop-control")
    }

    public static func with<T>(sizeBytes: Int = 128 << 20, _ body: (String) throws -> T) throws -> T {
        let dir = try TempDirectory("tsr-btrfs")
        defer { dir.remove() }
        let image = dir.path + "/fs.img"
        let mountpoint = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: image, contents: nil), truncate(image, off_t(sizeBytes)) == 0 else {
            throw ShellError(message: "cannot create \(image)")
        }
        let made = try Shell.run("/sbin/mkfs.btrfs", ["-q", image])
        guard made.status == 0 else { throw ShellError(message: "mkfs.btrfs failed: \(made.stderr)") }
        let mounted = try Shell.run("/bin/mount", ["-o", "loop", image, mountpoint])
        guard mounted.status == 0 else { throw ShellError(message: "mount btrfs failed: \(mounted.stderr)") }
        defer {
            if (try? Shell.run("/bin/umount", [mountpoint]))?.status != 0 { _ = try? Shell.run("/bin/umount", ["-l", mountpoint]) }
        }
        return try body(mountpoint)
    }
}

public struct ShellError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Runs programs and captures their output.
public enum Shell {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `executable` with `arguments`, waiting at most `timeout` seconds (then SIGKILL).
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           cwd: String? = nil, timeout: TimeInterval = 300, input: String? = nil) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so a chatty child never blocks on a full pipe.
        let errData = LockedData()
        let reader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        let killer = DispatchWorkItem { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        while !errData.isSet { Thread.sleep(forTimeInterval: 0.001) }
        return Output(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData.value, as: UTF8.self))
    }
}

final class LockedData: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var data: Data?
    func set(_ value: Data) { lock.withLock { data = value } }
    var isSet: Bool { lock.withLock { data != nil } }
    var value: Data { lock.withLock { data ?? Data() } }
}

/// Where the package's build products are (for tests that run the `tsr` binary).
public enum BuildProducts {
    /// The package root, found from this source file's location.
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The `tsr` binary: `$TSR_BINARY`, else the debug build.
    public static var tsr: String {
        if let explicit = ProcessInfo.processInfo.environment["TSR_BINARY"], !explicit.isEmpty { return explicit }
        return packageRoot + "/.build/debug/tsr"
    }
}

/// Reads a whole file.
public func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Deterministic pseudo-random bytes (xorshift), the same for the same seed.
public func testBytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

/// Every file under `root`, read whole and concatenated (for "no secret written" checks).
public func everyByte(under root: String) -> [UInt8] {
    var all: [UInt8] = []
    let walker = FileManager.default.enumerator(atPath: root)
    while let relative = walker?.nextObject() as? String {
        var isDirectory: ObjCBool = false
        let path = root + "/" + relative
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
        if let data = FileManager.default.contents(atPath: path) { all += data }
    }
    return all
}

extension [UInt8] {
    /// True when the UTF-8 bytes of `needle` occur somewhere in these bytes.
    public func contains(_ needle: String) -> Bool {
        let n = Array(needle.utf8)
        guard !n.isEmpty, count >= n.count else { return false }
        for i in 0...(count - n.count) where self[i] == n[0] && Array(self[i..<(i + n.count)]) == n { return true }
        return false
    }
}
