import Foundation
import Logging
import TSRMount

/// A mount served from inside the calling process through `MountDaemon.make` (the tests' and
/// benchmarks' way to inject a `BlobFetcher`). `stop()` always leaves no mount behind.
public final class InProcessMount: @unchecked Sendable {
    // @unchecked: immutable after init; `finished` is a semaphore.
    public let daemon: MountDaemon
    public let mountpoint: String
    private let finished = DispatchSemaphore(value: 0)

    /// Mounts `home` on `mountpoint` (created if needed) and waits until the kernel lists it.
    public init(home: String, mountpoint: String, fetcher: (any BlobFetcher)? = nil) throws {
        self.mountpoint = mountpoint
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        var request = MountRequest(home: home, mountpoint: mountpoint)
        request.fetcher = fetcher
        var logger = Logger(label: "tsr.test-mount")
        logger.logLevel = .critical
        daemon = try MountDaemon.make(request, logger: logger)
        let daemon = self.daemon
        let finished = self.finished
        Thread {
            _ = try? daemon.run(handleSignals: false)
            finished.signal()
        }.start()
        let deadline = Date().addingTimeInterval(10)
        while !TestMount.isMounted(mountpoint) {
            guard Date() < deadline else {
                stop()
                throw ShellError(message: "in-process mount on \(mountpoint) did not come up")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Unmounts and waits for the loop to end (detaching lazily if it does not within 10 s).
    public func stop() {
        daemon.stop()
        if finished.wait(timeout: .now() + 10) == .timedOut { Unmount.detach(mountpoint) }
    }
}
