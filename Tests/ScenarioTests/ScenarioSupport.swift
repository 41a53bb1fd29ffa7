import CLinux
import Foundation
import Synchronization
import TSRStore
import TSRTesting

/// A scenario's temporary world: a directory, a home in it, and `tsr` run against that home.
struct ScenarioWorld {
    let dir: TempDirectory
    let home: String
    var environment: [String: String]

    init(_ label: String, home: String? = nil, environment: [String: String] = [:]) throws {
        dir = try TempDirectory(label)
        self.home = home ?? dir.path + "/home"
        self.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        self.environment["TSR_HOME"] = self.home
        self.environment["TSR_LOW_SPEED_TIME"] = "2"
    }

    func tsr(_ arguments: [String], environment extra: [String: String] = [:], input: String? = nil, timeout: TimeInterval = 120) throws -> Shell.Output {
        try Shell.run(BuildProducts.tsr, arguments, environment: environment.merging(extra) { $1 }, cwd: dir.path, timeout: timeout, input: input)
    }

    func blobPath(_ digest: Digest) -> String { home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)" }

    /// Every blob file in the store with its real digest (a blob named for other bytes is wrong).
    func blobsWithWrongBytes() throws -> [String] {
        var wrong: [String] = []
        let root = home + "/blobs/sha256"
        for relative in (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? [] {
            let path = root + "/" + relative
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let name = (relative as NSString).lastPathComponent
            if try SHA256Hasher.digest(readBytes(path)).rawValue != name { wrong.append(relative) }
        }
        return wrong
    }

    func remove() { dir.remove() }
}

/// Every path under `root` (relative), for "nothing created outside" checks.
func tree(_ root: String) -> Set<String> {
    Set((FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? [])
}

/// The extended attribute `name` of `path` as text ("" when absent).
func xattr(_ path: String, _ name: String) -> String {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = getxattr(path, name, &buffer, buffer.count)
    return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : ""
}

/// Waits until `condition` holds or `timeout` passes; returns whether it held.
func eventually(_ timeout: TimeInterval = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return condition()
}

/// What concurrent workers of a scenario count: operations, bytes compared and found wrong, and
/// the first errors.
final class WorkerTally: Sendable {
    let checked = Atomic<Int64>(0)
    let wrong = Atomic<Int64>(0)
    let operations = Atomic<Int>(0)
    let writes = Atomic<Int>(0)
    let errors = Mutex<[String]>([])
    func fail(_ message: String) { errors.withLock { if $0.count < 20 { $0.append(message) } } }
}

/// Runs `body` on a thread of its own in `group`: GCD's global queue on Linux runs only about
/// as many blocking work items at once as there are cores, which would serialise the workers.
func spawnWorker(_ group: DispatchGroup, _ body: @escaping @Sendable () -> Void) {
    group.enter()
    Thread {
        body()
        group.leave()
    }.start()
}

/// The watchdog: workers still blocked `grace` seconds after their `seconds` mean a frozen mount.
/// It is aborted (a daemon stuck in the kernel ignores SIGKILL), so the run never hangs; false.
func workersFinished(_ group: DispatchGroup, seconds: Double, grace: Double = 60, mount: TestMount, tally: WorkerTally) -> Bool {
    guard group.wait(timeout: .now() + seconds + grace) == .timedOut else { return true }
    tally.fail("the mount froze: workers still blocked \(Int(seconds + grace)) s after the start")
    mount.abortFrozen()
    _ = group.wait(timeout: .now() + 30)
    return false
}
