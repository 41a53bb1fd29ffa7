import FUSE
import Foundation
import Logging
import Synchronization
import TSRLibrary
import TSRStore

/// Options of `tsr mount`.
public struct MountRequest: Sendable {
    public var home: String
    public var mountpoint: String
    public var readOnly = false
    public var allowOther = false
    public var settings = MountSettings()
    /// Downloads bytes that are not local yet (the fetch engine); nil: such reads answer EIO.
    public var fetcher: (any BlobFetcher)?
    /// Builds the fetcher from the daemon's own library (one registry connection per process);
    /// used when `fetcher` is nil.
    public var makeFetcher: (@Sendable (Library) -> any BlobFetcher)?

    public init(home: String, mountpoint: String) {
        self.home = home
        self.mountpoint = mountpoint
    }
}

/// Why a mount could not start.
public enum MountError: Error, CustomStringConvertible {
    case notADirectory(String)
    case library(LibraryError)
    case registry(String)
    case session(SessionError)

    public var description: String {
        switch self {
        case let .notADirectory(path): return "\(path) is not a directory (create it first)"
        case let .library(error): return error.description
        case let .registry(message): return message
        case let .session(error): return error.description
        }
    }
}

/// A running (or ready to run) tensors mount: the filesystem core, its FUSE adapter and session and the thread
/// that polls the registry. `make` is the one place the daemon's object graph is built, for
/// `tsr mount` and for tests alike.
public final class MountDaemon: @unchecked Sendable {
    // @unchecked: `poller` is only touched by `run` on one thread.
    public let core: MountCore
    public let session: Session
    private let stopping = Atomic<Bool>(false)
    private var poller: Thread?
    private let pollerDone = DispatchSemaphore(value: 0)

    public static func make(_ request: MountRequest, logger: Logger) throws(MountError) -> MountDaemon {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: request.mountpoint, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .notADirectory(request.mountpoint)
        }
        let library: Library
        do { library = try Library(home: request.home) } catch { throw .library(error) }
        var settings = request.settings
        settings.readOnly = request.readOnly || settings.readOnly
        let core: MountCore
        do {
            core = try MountCore(library: library, settings: settings, logger: logger, fetcher: request.fetcher ?? request.makeFetcher?(library))
        } catch {
            throw .registry("\(error)")
        }
        var options = MountOptions(fsName: library.layout.home, subtype: "tsr")
        options.readOnly = settings.readOnly
        options.allowOther = request.allowOther
        options.passthrough = settings.passthrough
        let session: Session
        do { session = try Session(handler: TensorsFileSystem(core: core), mountpoint: request.mountpoint, options: options) } catch { throw .session(error) }
        core.kernel = session
        return MountDaemon(core: core, session: session)
    }

    init(core: MountCore, session: Session) {
        self.core = core
        self.session = session
    }

    /// Mounts and serves until unmounted (`fusermount3 -u`, `tsr umount`, a signal with
    /// `handleSignals`, or `stop()`). Returns the loop's status.
    @discardableResult
    public func run(handleSignals: Bool) throws(MountError) -> Int32 {
        do { try session.mount() } catch { throw .session(error) }
        let fs = core
        let interval = fs.settings.pollInterval
        let thread = Thread { [self] in
            while !stopping.load(ordering: .relaxed) {
                fs.poll()
                Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18 + Double(interval.components.seconds))
            }
            pollerDone.signal()
        }
        thread.name = "tsr-registry-poller"
        poller = thread
        thread.start()
        fs.logger.info("mounted \(fs.library.layout.home) at \(session.mountpoint)")
        let status = session.run(maxThreads: core.settings.threads, handleSignals: handleSignals)
        stopping.store(true, ordering: .relaxed)
        pollerDone.wait()
        fs.flushAccess()
        session.unmount()
        fs.logger.info("unmounted \(session.mountpoint)")
        return status
    }

    /// Ends a `run` from another thread: the kernel connection is detached, the loop returns.
    public func stop() {
        session.exit()
        Unmount.detach(session.mountpoint)
    }
}

/// Unmounting from outside the loop.
public enum Unmount {
    /// `fusermount3 -u` (or `-uz` when `lazy`); the exit status and its message.
    @discardableResult
    public static func run(_ mountpoint: String, lazy: Bool) -> (Int32, String) {
        let tool = "/bin/fusermount3"
        guard FileManager.default.isExecutableFile(atPath: tool) else { return (127, "\(tool) not found: install fuse3") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = [lazy ? "-uz" : "-u", mountpoint]
        // Launched from a directory anyone can enter: the caller's may be private (a clone in
        // /root, a user's home) and the launch would fail there for another user.
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return (126, "could not start \(tool): \(error.localizedDescription)")
        }
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, message.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Detaches a mount even while files are open (root: umount2 MNT_DETACH; else fusermount3 -uz).
    public static func detach(_ mountpoint: String) {
        if getuid() == 0, umount2(mountpoint, Int32(MNT_DETACH)) == 0 { return }
        run(mountpoint, lazy: true)
    }
}

/// Mounts of tsr listed by the kernel.
public struct LiveMount: Sendable, Codable, Equatable {
    public var mountpoint: String
    public var home: String
    public var readOnly: Bool

    enum CodingKeys: String, CodingKey {
        case mountpoint, home
        case readOnly = "read_only"
    }

    /// Reads /proc/self/mountinfo for `fuse.tsr` mounts.
    public static func all(mountinfo: String = "/proc/self/mountinfo") -> [LiveMount] {
        guard let text = try? String(contentsOfFile: mountinfo, encoding: .utf8) else { return [] }
        var out: [LiveMount] = []
        for line in text.split(separator: "\n") {
            // id parent major:minor root mountpoint options [optional…] - fstype source superoptions
            let parts = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard let dash = parts.firstIndex(of: "-"), dash + 2 < parts.count, parts.count > 5 else { continue }
            guard parts[dash + 1] == "fuse.tsr" else { continue }
            let options = parts[5].split(separator: ",")
            out.append(LiveMount(mountpoint: unescape(parts[4]), home: unescape(parts[dash + 2]), readOnly: options.contains("ro")))
        }
        return out
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ text: String) -> String {
        var bytes: [UInt8] = []
        let raw = Array(text.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == 0x5c, i + 3 < raw.count,
                let value = UInt8(String(decoding: raw[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
