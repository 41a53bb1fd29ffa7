import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// S06 and S07: a reader killed while it waits on a stalled download; unmounting with files open,
/// a daemon crash, and mounting again over the same point.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
struct MountLifecycleScenarios {
    @Test func s06AReaderBlockedOnAStalledDownloadDiesPromptlyAndTheMountStaysHealthy() throws {
        let world = try ScenarioWorld("tsr-s06")
        defer { world.remove() }
        let stalled = SafetensorsBuilder(tensors: [("w", "U8", [4 << 20])], fill: 2).bytes()
        let release = Flag()
        let server = try FixtureServer { request, connection in
            // Registration's header-region reads name their end; the download does not, and
            // stalls (a 200 with the first MiB) until the test lets go.
            if let range = request.header("range"), !range.hasSuffix("-") || release.isSet {
                return connection.serveFile(stalled, request: request, etag: "\"v1\"")
            }
            _ = connection.head(200, [("Content-Length", "\(stalled.count)"), ("ETag", "\"v1\"")])
            _ = connection.write(Array(stalled.prefix(1 << 20)))
            while !release.isSet { Thread.sleep(forTimeInterval: 0.05) }
        }
        defer {
            release.set(true)
            server.stop()
        }
        let digest = try SHA256Hasher.digest(stalled)
        #expect(try world.tsr(["add", server.baseURL + "/stalled.safetensors", "--folder", "checkpoints", "--sha256", digest.rawValue]).status == 0)
        let here = SafetensorsBuilder(tensors: [("h", "U8", [3 << 20])], fill: 6).bytes()
        _ = try world.dir.write("models/loras/here.safetensors", here)
        #expect(try world.tsr(["import", world.dir.path + "/models", "--copy"]).status == 0)

        try TestMount.with(home: world.home) { mount in
            let reader = Process()
            reader.executableURL = URL(fileURLWithPath: "/bin/cat")
            reader.arguments = [mount.mountpoint + "/checkpoints/stalled.safetensors"]
            reader.standardOutput = FileHandle.nullDevice
            reader.standardError = FileHandle.nullDevice
            try reader.run()
            #expect(eventually(10) { server.requests.contains { $0.header("range")?.hasSuffix("-") ?? true } }, "the read started the download")
            Thread.sleep(forTimeInterval: 0.3)
            let killed = Date()
            kill(reader.processIdentifier, SIGKILL)
            reader.waitUntilExit()
            let took = Date().timeIntervalSince(killed)
            #expect(took < 2, "the killed reader died within \(took) s")
            // The mount answers everything else at once.
            let started = Date()
            #expect(try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint + "/checkpoints") == ["stalled.safetensors"])
            #expect(try readBytes(mount.mountpoint + "/loras/here.safetensors") == here)
            #expect(xattr(mount.mountpoint + "/checkpoints/stalled.safetensors", "user.tsr.state") == "fetching")
            #expect(Date().timeIntervalSince(started) < 2)
            // The download goes on for the next reader.
            release.set(true)
            #expect(try readBytes(mount.mountpoint + "/checkpoints/stalled.safetensors") == stalled)
            ScenarioRecord(id: "S06", title: "a reader blocked on a stalled download SIGKILLed", faultsInjected: 2,
                           bytesChecked: Int64(stalled.count + here.count)).record()
        }
    }

    @Test func s07UnmountWithOpenFilesADaemonCrashAndARemountOverTheSamePoint() throws {
        let world = try ScenarioWorld("tsr-s07")
        defer { world.remove() }
        let model = SafetensorsBuilder(tensors: [("v", "U8", [5 << 20])], fill: 7).bytes()
        _ = try world.dir.write("models/vae/v.safetensors", model)
        #expect(try world.tsr(["import", world.dir.path + "/models", "--copy"]).status == 0)
        let mountpoint = world.dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        defer { if TestMount.isMounted(mountpoint) { _ = try? Shell.run("/bin/fusermount3", ["-uz", mountpoint]) } }
        func listedByStatus() -> Bool {
            let status = try? world.tsr(["status", "--json"])
            return status?.stdout.contains(mountpoint) ?? false
        }

        // A background mount (as users run it); a file held open.
        let mounted = try world.tsr(["mount", mountpoint])
        #expect(mounted.status == 0, "\(mounted.stderr)")
        let path = mountpoint + "/vae/v.safetensors"
        let held = open(path, O_RDONLY)
        #expect(held >= 0)
        let busy = try world.tsr(["umount", mountpoint])
        #expect(busy.status == 1 && busy.stderr.contains("--lazy"), "a busy mount says how to go on: \(busy.stderr)")
        #expect(TestMount.isMounted(mountpoint))
        let lazy = try world.tsr(["umount", mountpoint, "--lazy"])
        #expect(lazy.status == 0, "\(lazy.stderr)")
        #expect(!TestMount.isMounted(mountpoint), "detached at once")
        var buffer = [UInt8](repeating: 0, count: model.count)
        #expect(pread(held, &buffer, buffer.count, 0) == model.count && buffer == model, "the open file still reads right")
        close(held)
        #expect(eventually(10) { !listedByStatus() && !((try? Shell.run("/usr/bin/pgrep", ["-f", "tsr mount \(mountpoint)"]))?.stdout.isEmpty == false) },
                "the daemon exits once the last file closes")

        // A crash: the mount point is dead until cleared; then a remount over the same point.
        #expect(try world.tsr(["mount", mountpoint]).status == 0)
        let pids = try Shell.run("/usr/bin/pgrep", ["-f", "tsr mount \(mountpoint)"]).stdout.split(separator: "\n").compactMap { Int32($0) }
        #expect(!pids.isEmpty)
        for pid in pids { kill(pid, SIGKILL) }
        #expect(eventually(5) {
            var info = stat()
            return stat(mountpoint + "/vae", &info) != 0 && errno == ENOTCONN
        }, "a dead daemon leaves 'Transport endpoint is not connected'")
        let doctor = try world.tsr(["doctor"])
        #expect((doctor.stdout + doctor.stderr).contains(mountpoint), "tsr doctor names the dead mount")
        #expect(try Shell.run("/bin/fusermount3", ["-u", mountpoint]).status == 0)
        let again = try world.tsr(["mount", mountpoint])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try readBytes(path) == model)
        #expect(try world.tsr(["umount", mountpoint]).status == 0)
        ScenarioRecord(id: "S07", title: "unmount with files open, daemon crash, remount", faultsInjected: 2, bytesChecked: Int64(model.count * 2)).record()
    }
}
