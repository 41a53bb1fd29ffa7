import CLinux
import Foundation

/// Why a background mount daemon could not be started or did not mount.
public struct DaemonLaunchError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Starting the mount daemon in the background: this same executable with the arguments given
/// (`mount … --foreground`), in a session of its own, working from `/`, its output appended to the
/// home's mount log; and waiting until the kernel lists its mount.
public enum DaemonLauncher {
    public static func logPath(_ home: String) -> String { home + "/logs/mount.log" }

    /// `stdin`: a line the daemon reads first (a token; it passes through a pipe, never argv or
    /// the environment).
    public static func spawn(arguments: [String], home: String, stdin: String? = nil) throws(DaemonLaunchError) -> pid_t {
        do {
            try FileManager.default.createDirectory(atPath: home + "/logs", withIntermediateDirectories: true)
        } catch {
            throw DaemonLaunchError("could not start the mount daemon: cannot create \(home)/logs: \(error.localizedDescription)")
        }
        closeInheritedDescriptorsOnExec()
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeEnds: [Int32] = [-1, -1]
        if stdin != nil {
            guard pipe(&pipeEnds) == 0 else { throw DaemonLaunchError("could not start the mount daemon: \(String(cString: strerror(errno)))") }
            for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        defer {
            for end in pipeEnds where end >= 0 { close(end) }
        }
        posix_spawn_file_actions_addopen(&actions, 1, logPath(home), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // The daemon works from /, never the caller's directory: that may be private to the
        // caller, or on a filesystem someone wants to unmount later.
        tsr_spawn_add_chdir(&actions, "/")
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // POSIX_SPAWN_SETSID (glibc's 0x80): the daemon outlives the terminal that started it.
        posix_spawnattr_setflags(&attributes, 0x80)
        let argv = [executable] + arguments
        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let status = cArgs.withUnsafeBufferPointer { buffer in
            posix_spawn(&pid, executable, &actions, &attributes, UnsafeMutablePointer(mutating: buffer.baseAddress!), environ)
        }
        guard status == 0 else { throw DaemonLaunchError("could not start the mount daemon: \(String(cString: strerror(status)))") }
        if let stdin {
            close(pipeEnds[0])
            pipeEnds[0] = -1
            let line = Array((stdin + "\n").utf8)
            _ = line.withUnsafeBytes { write(pipeEnds[1], $0.baseAddress, $0.count) }
        }
        return pid
    }

    /// A daemon must not keep descriptors it inherited (a caller's pipe would never see EOF):
    /// mark every descriptor above stderr close-on-exec before spawning.
    static func closeInheritedDescriptorsOnExec() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for name in names {
            guard let fd = Int32(name), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// The text after `marker` on the last log line past `offset` that has it (the address the
    /// daemon announced for its API), else nil.
    public static func loggedValue(after marker: String, home: String, from offset: Int) -> String? {
        guard let handle = FileHandle(forReadingAtPath: logPath(home)) else { return nil }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: UInt64(max(offset, 0)))) != nil, let data = try? handle.readToEnd() else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let line = text.split(separator: "\n").last(where: { $0.contains(marker) }),
              let range = line.range(of: marker) else { return nil }
        return line[range.upperBound...].trimmingCharacters(in: .whitespaces)
    }

    /// Waits until the kernel lists the mount, or the daemon exits (its log says why). A large
    /// registry takes a while to load: after 15 s `slow` is told once and the wait goes on while
    /// the daemon lives (10 minutes at most, then the daemon is stopped so nothing mounts behind
    /// the user's back).
    public static func waitForMount(_ mountpoint: String, pid: pid_t, home: String, slow: (String) -> Void) throws(DaemonLaunchError) {
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: mountpoint)) ?? mountpoint
        let resolved = URL(fileURLWithPath: target).standardizedFileURL.path
        let start = Date()
        var told = false
        while Date().timeIntervalSince(start) < 600 {
            if LiveMount.all().contains(where: { $0.mountpoint == resolved || $0.mountpoint == mountpoint }) { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let log = (try? String(contentsOfFile: logPath(home), encoding: .utf8)) ?? ""
                let tail = log.split(separator: "\n").suffix(3).joined(separator: "\n")
                throw DaemonLaunchError("the mount daemon exited before mounting:\n\(tail)")
            }
            if !told && Date().timeIntervalSince(start) > 15 {
                told = true
                slow("still loading the registry (pid \(pid)); waiting for the mount to appear (log: \(logPath(home)))")
            }
            usleep(50_000)
        }
        kill(pid, SIGTERM)
        throw DaemonLaunchError("the mount did not appear within 10 minutes; the daemon was stopped; see \(logPath(home))")
    }
}
