import Foundation
import Synchronization
import Testing
import TSRStore
import TSRTesting

/// S11 and S12: what an outside tester broke with many writers (issue 25). Each runs on a real
/// mount with a watchdog: a frozen mount is killed (so the run never hangs) and the test fails.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"), .serialized)
struct WriterStormScenario {
    /// The whole content of a file through open/read/close, or nil with errno.
    static func readAll(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { return bytes }
            bytes += buffer[0..<n]
        }
    }

    /// S11: 32 threads (twice the daemon's 16 workers) create, write and close files in one
    /// folder, while a probe creates a file in another folder, reads one and lists a third. The
    /// mount froze here when flush sent its entry invalidation from the worker.
    @Test func s11MoreWritersInOneFolderThanWorkerThreads() throws {
        let seconds = min(Double(ProcessInfo.processInfo.environment["TSR_SOAK_SECONDS"] ?? "") ?? 20, 20)
        let world = try ScenarioWorld("tsr-s11")
        defer { world.remove() }
        let model = SafetensorsBuilder(tensors: [("w", "U8", [200_000])], fill: 7).bytes()
        try world.dir.write("models/upscale_models/x.safetensors", model)
        #expect(try world.tsr(["import", world.dir.path + "/models", "--copy"]).status == 0)
        let tally = WorkerTally()
        let probes = Atomic<Int>(0)
        try TestMount.with(home: world.home) { mount in
            let root = mount.mountpoint
            try FileManager.default.createDirectory(atPath: root + "/loras/storm", withIntermediateDirectories: false)
            let deadline = Date().addingTimeInterval(seconds)
            let group = DispatchGroup()
            for writer in 0..<32 {
                spawnWorker(group) {
                    var round = 0
                    while Date() < deadline {
                        let name = root + "/loras/storm/w\(writer)-\(round % 4).bin"
                        let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: writer &+ round), count: 1000 + round % 7)
                        let fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                        if fd < 0 {
                            tally.fail("create \(name): errno \(errno)")
                        } else {
                            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                            if written != bytes.count { tally.fail("write \(name): \(written), errno \(errno)") }
                            if close(fd) != 0 { tally.fail("close \(name): errno \(errno)") }
                            let back = Self.readAll(name)
                            tally.checked.add(Int64(bytes.count), ordering: .relaxed)
                            if back != bytes { tally.wrong.add(Int64(bytes.count), ordering: .relaxed) }
                        }
                        tally.operations.add(1, ordering: .relaxed)
                        round += 1
                    }
                }
            }
            spawnWorker(group) {
                var round = 0
                while Date() < deadline {
                    let probe = root + "/vae/probe-\(round % 3).bin"
                    if !FileManager.default.createFile(atPath: probe, contents: Data([1, 2, 3])) { tally.fail("create in vae/: errno \(errno)") }
                    if Self.readAll(root + "/upscale_models/x.safetensors") != model { tally.fail("cat upscale_models/x.safetensors") }
                    if (try? FileManager.default.contentsOfDirectory(atPath: root + "/checkpoints")) == nil { tally.fail("ls checkpoints") }
                    probes.add(1, ordering: .relaxed)
                    round += 1
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
            _ = workersFinished(group, seconds: seconds, mount: mount, tally: tally)
            let errors = tally.errors.withLock { $0 }
            #expect(errors.isEmpty, "\(errors)")
            #expect(tally.wrong.load(ordering: .relaxed) == 0, "a file read back after close(2) held other bytes")
            #expect(tally.operations.load(ordering: .relaxed) > 320, "the writers made progress: \(tally.operations.load(ordering: .relaxed))")
            #expect(probes.load(ordering: .relaxed) > 10, "the probe in other folders made progress")
        }
        ScenarioRecord(
            id: "S11", title: "32 writers in one folder (twice the worker threads) and a probe elsewhere for \(Int(seconds)) s",
            faultsInjected: 0, bytesChecked: tally.checked.load(ordering: .relaxed), bytesLost: 0,
            wrongBytesServed: tally.wrong.load(ordering: .relaxed)
        ).record()
    }

    /// S12: 8 writers patch their own files in place (open r+, write, close) or replace them
    /// (write a temp name, rename it over) and read each one back at once, while 8 readers read,
    /// list and stat the same folder. Every write close(2)
    /// acknowledged must be what the name then reads, and what user.tsr.sha256 says.
    @Test func s12EveryAcknowledgedPatchReadsBack() throws {
        let seconds = min(Double(ProcessInfo.processInfo.environment["TSR_SOAK_SECONDS"] ?? "") ?? 30, 30)
        let world = try ScenarioWorld("tsr-s12")
        defer { world.remove() }
        let tally = WorkerTally()
        let patches = Atomic<Int>(0)
        let mismatches = Mutex<[String]>([])
        try TestMount.with(home: world.home) { mount in
            let root = mount.mountpoint
            try FileManager.default.createDirectory(atPath: root + "/loras/patch", withIntermediateDirectories: false)
            var initial: [String: [UInt8]] = [:]
            for writer in 0..<8 {
                for file in 0..<3 {
                    let name = root + "/loras/patch/w\(writer)-\(file).bin"
                    let bytes = [UInt8](repeating: UInt8(writer * 3 + file), count: 64 << 10)
                    #expect(FileManager.default.createFile(atPath: name, contents: Data(bytes)))
                    initial[name] = bytes
                }
            }
            let names = initial.keys.sorted()
            let deadline = Date().addingTimeInterval(seconds)
            let group = DispatchGroup()
            for writer in 0..<8 {
                let mine = (0..<3).map { root + "/loras/patch/w\(writer)-\($0).bin" }
                let start = mine.map { initial[$0]! }
                spawnWorker(group) {
                    var contents = start
                    var round = 0
                    while Date() < deadline {
                        let index = round % 3
                        let name = mine[index]
                        if round % 4 == 3 {
                            // An atomic replace: the whole new content in a temp name, renamed over.
                            let temp = name + ".tmp"
                            var replaced = contents[index]
                            replaced.replaceSubrange(0..<8, with: Array(String(format: "R%07d", round).utf8))
                            let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                            let written = fd < 0 ? -1 : replaced.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                            let closed = fd < 0 ? -1 : close(fd)
                            guard written == replaced.count, closed == 0, rename(temp, name) == 0 else {
                                tally.fail("replace \(name): wrote \(written), close \(closed), errno \(errno)")
                                round += 1
                                continue
                            }
                            contents[index] = replaced
                            let back = Self.readAll(name)
                            tally.checked.add(Int64(replaced.count), ordering: .relaxed)
                            if back != replaced {
                                tally.wrong.add(Int64(replaced.count), ordering: .relaxed)
                                mismatches.withLock { if $0.count < 10 { $0.append("\(name) round \(round): after rename over it, read back \(back.map { "other bytes (\($0.count))" } ?? "error \(errno)")") } }
                            }
                            patches.add(1, ordering: .relaxed)
                            round += 1
                            continue
                        }
                        let patch = Array("PATCH\(round)".utf8)
                        let offset = (round * 4099) % (contents[index].count - patch.count)
                        let fd = open(name, O_RDWR | O_CLOEXEC)
                        guard fd >= 0 else {
                            tally.fail("open r+ \(name): errno \(errno)")
                            round += 1
                            continue
                        }
                        let written = patch.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
                        let closed = close(fd)
                        guard written == patch.count, closed == 0 else {
                            tally.fail("patch \(name): wrote \(written), close \(closed), errno \(errno)")
                            round += 1
                            continue
                        }
                        contents[index].replaceSubrange(offset..<offset + patch.count, with: patch)
                        patches.add(1, ordering: .relaxed)
                        let expected = try? SHA256Hasher.digest(contents[index]).rawValue
                        let back = Self.readAll(name)
                        tally.checked.add(Int64(contents[index].count), ordering: .relaxed)
                        if back != contents[index] {
                            tally.wrong.add(Int64(contents[index].count), ordering: .relaxed)
                            let later = { Thread.sleep(forTimeInterval: 0.3); return Self.readAll(name) == contents[index] }()
                            mismatches.withLock {
                                if $0.count < 10 {
                                    $0.append("\(name) round \(round): read back \(back.map { "other bytes (\($0.count))" } ?? "error \(errno)"), right 0.3 s later: \(later), sha256 xattr \(xattr(name, "user.tsr.sha256") == expected ? "right" : "wrong")")
                                }
                            }
                        } else if xattr(name, "user.tsr.sha256") != expected {
                            mismatches.withLock { if $0.count < 10 { $0.append("\(name) round \(round): user.tsr.sha256 is not the patched content's") } }
                        }
                        tally.operations.add(1, ordering: .relaxed)
                        round += 1
                    }
                }
            }
            for reader in 0..<8 {
                spawnWorker(group) {
                    var n = reader
                    while Date() < deadline {
                        let name = names[n % names.count]
                        n += 5
                        // Hold the file open across a listing, as a browsing tool does.
                        let fd = open(name, O_RDONLY | O_CLOEXEC)
                        if fd < 0 { tally.fail("open \(name): errno \(errno)"); continue }
                        var buffer = [UInt8](repeating: 0, count: 64 << 10)
                        let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                        if got < 0 { tally.fail("read \(name): errno \(errno)") }
                        _ = try? FileManager.default.contentsOfDirectory(atPath: root + "/loras/patch")
                        var status = stat()
                        if stat(name, &status) != 0 { tally.fail("stat \(name): errno \(errno)") }
                        close(fd)
                        tally.operations.add(1, ordering: .relaxed)
                    }
                }
            }
            _ = workersFinished(group, seconds: seconds, mount: mount, tally: tally)
            let errors = tally.errors.withLock { $0 }
            #expect(errors.isEmpty, "\(errors)")
            let found = mismatches.withLock { $0 }
            #expect(found.isEmpty, "acknowledged writes not read back (\(found.count) shown of \(tally.wrong.load(ordering: .relaxed) / (64 << 10))): \(found)")
            #expect(patches.load(ordering: .relaxed) > 100, "the writers made progress: \(patches.load(ordering: .relaxed)) patches")
        }
        ScenarioRecord(
            id: "S12", title: "8 writers patching in place and renaming over, each change read back at once, beside 8 readers for \(Int(seconds)) s",
            faultsInjected: 0, bytesChecked: tally.checked.load(ordering: .relaxed), bytesLost: 0,
            wrongBytesServed: tally.wrong.load(ordering: .relaxed)
        ).record()
    }
}
