import Foundation
import Synchronization
import Testing
import TSRStore
import TSRTesting

/// S05: 32 workers for $TSR_SOAK_SECONDS (default 60) on one real mount: 20 readers of imported
/// models, 10 writers creating, rewriting and removing their own files through the mount, and 2
/// CLI processes adding and removing names in the registry meanwhile. No deadlock (a watchdog
/// ends the run), no error, every byte read compared with its SHA-256, every file a writer
/// committed found afterwards with the right content.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
struct SoakScenario {
    @Test func s05ConcurrentReadersWritersAndRegistryChanges() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["TSR_SOAK_SECONDS"] ?? "") ?? 60
        let dir = try TempDirectory("tsr-s05")
        defer { dir.remove() }
        let home = dir.path + "/home"
        var models: [String: Digest] = [:]
        // 256 KiB to 2 MiB: the larger half is read by kernel passthrough (SEMANTICS §10), the
        // rest through the daemon, and twenty readers open and close them all the time.
        for i in 0..<8 {
            let bytes = SafetensorsBuilder(tensors: [("w", "U8", [UInt64(256 << 10) * UInt64(i + 1)])], fill: UInt8(i + 1)).bytes()
            try dir.write("models/loras/m\(i).safetensors", bytes)
            models["loras/m\(i).safetensors"] = try SHA256Hasher.digest(bytes)
        }
        let imported = try Shell.run(BuildProducts.tsr, ["import", dir.path + "/models", "--copy", "--home", home])
        #expect(imported.status == 0, "\(imported.stderr)")
        let tally = WorkerTally()
        let committed = Mutex<[String: Digest]>([:])

        try TestMount.with(home: home) { mount in
            let root = mount.mountpoint
            try FileManager.default.createDirectory(atPath: root + "/loras/soak", withIntermediateDirectories: false)
            let deadline = Date().addingTimeInterval(seconds)
            let group = DispatchGroup()
            let expected = models
            let names = Array(expected.keys).sorted()
            for reader in 0..<20 {
                spawnWorker(group) {
                    var n = reader
                    while Date() < deadline {
                        let name = names[n % names.count]
                        n += 7
                        guard let data = FileManager.default.contents(atPath: root + "/" + name) else {
                            tally.fail("read \(name) failed: errno \(errno)")
                            continue
                        }
                        tally.checked.add(Int64(data.count), ordering: .relaxed)
                        if (try? SHA256Hasher.digest(data)) != expected[name] { tally.wrong.add(Int64(data.count), ordering: .relaxed) }
                        tally.operations.add(1, ordering: .relaxed)
                    }
                }
            }
            for writer in 0..<10 {
                spawnWorker(group) {
                    var round = 0
                    while Date() < deadline {
                        let name = "loras/soak/w\(writer)-\(round % 3).safetensors"
                        let bytes = SafetensorsBuilder(tensors: [("w", "U8", [UInt64(16 << 10 + round * 4096 + writer)])], fill: UInt8(truncatingIfNeeded: round &+ writer)).bytes()
                        // create or rewrite in place (copy-on-write), then read back through the mount.
                        guard FileManager.default.createFile(atPath: root + "/" + name, contents: Data(bytes)) else {
                            tally.fail("write \(name) failed: errno \(errno)")
                            round += 1
                            continue
                        }
                        let digest = try? SHA256Hasher.digest(bytes)
                        committed.withLock { $0[name] = digest }
                        tally.writes.add(1, ordering: .relaxed)
                        if let back = FileManager.default.contents(atPath: root + "/" + name) {
                            tally.checked.add(Int64(back.count), ordering: .relaxed)
                            if (try? SHA256Hasher.digest(back)) != digest { tally.wrong.add(Int64(back.count), ordering: .relaxed) }
                        } else {
                            tally.fail("read back \(name) failed: errno \(errno)")
                        }
                        if round % 5 == 4 {
                            let gone = "loras/soak/w\(writer)-\((round + 1) % 3).safetensors"
                            // Written two rounds ago, so there to remove: a failure is an error.
                            do {
                                try FileManager.default.removeItem(atPath: root + "/" + gone)
                                committed.withLock { $0[gone] = nil }
                            } catch {
                                tally.fail("remove \(gone) failed: \(error)")
                            }
                        }
                        tally.operations.add(1, ordering: .relaxed)
                        round += 1
                    }
                }
            }
            for cli in 0..<2 {
                spawnWorker(group) {
                    var round = 0
                    while Date() < deadline {
                        let alias = "checkpoints/cli\(cli)-\(round % 4).safetensors"
                        let add = try? Shell.run(BuildProducts.tsr, ["alias", "add", alias, names[round % names.count], "--force", "--home", home], timeout: 60)
                        if add?.status != 0 { tally.fail("tsr alias add: \(add?.stderr ?? "did not run")") }
                        if round % 2 == 1 {
                            let rm = try? Shell.run(BuildProducts.tsr, ["alias", "rm", alias, "--home", home], timeout: 60)
                            if rm?.status != 0 { tally.fail("tsr alias rm: \(rm?.stderr ?? "did not run")") }
                        }
                        tally.operations.add(1, ordering: .relaxed)
                        round += 1
                    }
                }
            }
            // The watchdog: a deadlocked mount never lets the workers finish.
            guard workersFinished(group, seconds: seconds, mount: mount, tally: tally) else { return }
            // Every file a writer committed is there, with its content, after all that.
            var lost: Int64 = 0
            var missing: [String] = []
            for (name, digest) in committed.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
                let data = FileManager.default.contents(atPath: root + "/" + name)
                if data.flatMap({ try? SHA256Hasher.digest($0) }) != digest {
                    lost += Int64(data?.count ?? 1)
                    missing.append("\(name): \(data.map { "\($0.count) bytes, other content" } ?? "unreadable, errno \(errno)")")
                }
            }
            // Every temp file of an atomic write was renamed or removed: no temp name is left.
            let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/loras/soak")) ?? []).filter { !$0.hasPrefix("w") }
            #expect(leftovers.isEmpty, "temp names left behind: \(leftovers)")
            let errors = tally.errors.withLock { $0 }
            #expect(errors.isEmpty, "\(errors)")
            #expect(tally.wrong.load(ordering: .relaxed) == 0, "wrong bytes served")
            if !missing.isEmpty {
                let listing = (try? FileManager.default.contentsOfDirectory(atPath: root + "/loras/soak"))?.sorted() ?? []
                let registry = try? Shell.run(BuildProducts.tsr, ["list", "--folder", "loras", "--home", home], timeout: 60)
                let log = (try? String(contentsOfFile: mount.log, encoding: .utf8))?.split(separator: "\n").suffix(40).joined(separator: "\n") ?? ""
                Issue.record("lost \(missing); the mount lists \(listing); the registry says \(registry?.stdout ?? "?"); the mount log ends with:\n\(log)")
            }
            #expect(lost == 0, "committed files lost or changed")
            #expect(tally.operations.load(ordering: .relaxed) > 100, "the workers made progress")
            #expect(tally.writes.load(ordering: .relaxed) >= 10, "the writers wrote (\(tally.writes.load(ordering: .relaxed)) files, \(tally.operations.load(ordering: .relaxed)) operations)")
            ScenarioRecord(
                id: "S05", title: "32 concurrent readers, writers and CLI registry changes for \(Int(seconds)) s",
                faultsInjected: 0, bytesChecked: tally.checked.load(ordering: .relaxed), bytesLost: lost,
                wrongBytesServed: tally.wrong.load(ordering: .relaxed)
            ).record()
        }
    }
}
