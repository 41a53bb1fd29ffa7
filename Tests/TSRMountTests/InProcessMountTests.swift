import Foundation
import Logging
import Testing
import TSRLibrary
import TSRStore
import TSRTesting
@testable import TSRMount

/// The daemon's object graph built by `MountDaemon.make` and served from inside the test
/// process (the other mount tests run the `tsr` binary).
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse and fusermount3"))
struct InProcessMountTests {
    @Test func aMountServedInProcessReadsAndWrites() throws {
        let dir = try TempDirectory("tsr-inproc")
        defer { dir.remove() }
        try DemoTree.write(to: dir.path + "/models")
        var options = ImportOptions()
        options.mode = .copy
        _ = try Importer(library: try Library(home: dir.path + "/home")).run(root: dir.path + "/models", options: options)
        let mountpoint = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)

        let daemon = try MountDaemon.make(MountRequest(home: dir.path + "/home", mountpoint: mountpoint), logger: Logger(label: "test"))
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            _ = try? daemon.run(handleSignals: false)
            finished.signal()
        }
        thread.start()
        defer {
            daemon.stop()
            if finished.wait(timeout: .now() + 10) == .timedOut { Unmount.detach(mountpoint) }
        }
        let deadline = Date().addingTimeInterval(10)
        while !TestMount.isMounted(mountpoint) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(TestMount.isMounted(mountpoint))

        let vae = DemoTree.files()[7].bytes
        #expect(try readBytes(mountpoint + "/vae/demo-vae.safetensors") == vae)
        let bytes = Array("written in process".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: mountpoint + "/loras/inproc.txt"))
        let alias = try daemon.fileSystem.library.registry.alias(folder: "loras", path: "inproc.txt")
        #expect(alias?.sha256 == (try SHA256Hasher.digest(bytes)))
        #expect(daemon.fileSystem.namespace.node(at: "loras/inproc.txt")?.file?.size == Int64(bytes.count))
    }
}
