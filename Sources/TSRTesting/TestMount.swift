import Foundation

/// A real `tsr mount --foreground` in a temp directory, for tests. `stop()` always leaves no
/// mount behind: `fusermount3 -u`, then a lazy unmount and SIGKILL if the daemon does not go.
public final class TestMount: @unchecked Sendable {
    // @unchecked: `process` is replaced only by `restart`, from the test's own thread.
    public let home: String
    public let mountpoint: String
    public let arguments: [String]
    private var process: Process
    public let log: String

    /// True where FUSE mounts can be made (/dev/fuse and fusermount3 exist).
    public static var isAvailable: Bool {
        FileManager.default.fileExists(atPath: "/dev/fuse") && FileManager.default.fileExists(atPath: "/bin/fusermount3")
    }

    /// Variables added to the daemon's environment (HF_ENDPOINT, tokens…).
    public let environment: [String: String]

    public init(home: String, mountpoint: String, arguments: [String] = [], environment: [String: String] = [:]) throws {
        self.home = home
        self.mountpoint = mountpoint
        self.arguments = arguments
        self.environment = environment
        self.log = mountpoint + ".log"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        process = try Self.launch(home: home, mountpoint: mountpoint, arguments: arguments, environment: environment, log: log)
        try waitUntilMounted()
    }

    static func launch(home: String, mountpoint: String, arguments: [String], environment: [String: String], log: String) throws -> Process {
        let process = Process()
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.executableURL = URL(fileURLWithPath: BuildProducts.tsr)
        process.arguments = ["mount", mountpoint, "--foreground", "--home", home] + arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// The daemon's pid.
    public var pid: Int32 { process.processIdentifier }

    public static func isMounted(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        let escaped = path.replacingOccurrences(of: " ", with: "\\040")
        return text.split(separator: "\n").contains { line in
            let parts = line.split(separator: " ")
            return parts.count > 4 && parts[4] == escaped && line.contains(" - fuse.tsr ")
        }
    }

    private func waitUntilMounted() throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if Self.isMounted(mountpoint) { return }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        stop()
        throw ShellError(message: "mount did not come up: \(output)")
    }

    /// Unmounts and waits for the daemon to exit; never leaves a mount behind.
    public func stop() {
        if Self.isMounted(mountpoint) {
            _ = try? Shell.run("/bin/fusermount3", ["-u", mountpoint], timeout: 10)
        }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            let killed = Date().addingTimeInterval(5)
            while process.isRunning && Date() < killed { Thread.sleep(forTimeInterval: 0.05) }
            // Still there: a thread stuck in the kernel; aborting the connection frees it.
            if process.isRunning { Self.abortConnection(of: mountpoint) }
            let aborted = Date().addingTimeInterval(10)
            while process.isRunning && Date() < aborted { Thread.sleep(forTimeInterval: 0.05) }
        }
        if Self.isMounted(mountpoint) { _ = try? Shell.run("/bin/fusermount3", ["-uz", mountpoint], timeout: 10) }
    }

    /// Kills the daemon with SIGKILL (the mount is left dead: "Transport endpoint is not connected").
    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// For a watchdog that found the mount frozen: a daemon thread stuck in the kernel cannot die
    /// of SIGKILL, so the FUSE connection is aborted first (fusectl), which fails every request
    /// in flight; then the daemon is killed and the mount detached. Never waits unbounded.
    public func abortFrozen() {
        Self.abortConnection(of: mountpoint)
        kill(process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if Self.isMounted(mountpoint) { _ = try? Shell.run("/bin/fusermount3", ["-uz", mountpoint], timeout: 10) }
    }

    /// Writes 1 to `/sys/fs/fuse/connections/<minor>/abort` for the FUSE mount at `path`
    /// (mounting fusectl there first if needed; as root only).
    public static func abortConnection(of path: String) {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return }
        let escaped = path.replacingOccurrences(of: " ", with: "\\040")
        guard let line = text.split(separator: "\n").first(where: { $0.split(separator: " ").count > 4 && $0.split(separator: " ")[4] == escaped }),
            let device = line.split(separator: " ").dropFirst(2).first, let minor = device.split(separator: ":").last
        else { return }
        let connections = "/sys/fs/fuse/connections"
        if !FileManager.default.fileExists(atPath: "\(connections)/\(minor)") {
            _ = try? Shell.run("/bin/mount", ["-t", "fusectl", "none", connections], timeout: 10)
        }
        try? "1".write(toFile: "\(connections)/\(minor)/abort", atomically: false, encoding: .utf8)
    }

    /// Mounts again on the same point with the same home.
    public func restart() throws {
        stop()
        process = try Self.launch(home: home, mountpoint: mountpoint, arguments: arguments, environment: environment, log: log)
        try waitUntilMounted()
    }

    /// The last lines of the daemon's log, for a failure message.
    public func logTail(_ lines: Int = 20) -> String {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Runs `body` with a mount of `home` in a fresh temp directory, always unmounting.
    public static func with<T>(
        home: String, arguments: [String] = [], environment: [String: String] = [:], _ body: (TestMount) throws -> T
    ) throws -> T {
        let dir = try TempDirectory("tsr-mnt")
        defer { dir.remove() }
        let mount = try TestMount(home: home, mountpoint: dir.path + "/models", arguments: arguments, environment: environment)
        defer { mount.stop() }
        return try body(mount)
    }
}
