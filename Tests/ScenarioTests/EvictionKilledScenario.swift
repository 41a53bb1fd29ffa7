import Foundation
import Testing
import TSRStore
import TSRTesting

/// S14: `tsr gc --evict-to 0` is killed with SIGKILL while it evicts 300 models. Afterwards the
/// registry never calls a model present whose bytes are gone, every blob left holds its own bytes,
/// and every name comes back: a read (`tsr pull`) fetches the evicted ones again, verified.
@Suite struct EvictionKilledScenario {
    @Test func s14EvictionKilledMidRunLeavesStoreAndRegistryInStep() throws {
        let world = try ScenarioWorld("tsr-s14")
        defer { world.remove() }
        var files: [String: [UInt8]] = [:]
        for index in 0..<300 {
            files["m\(index).bin"] = testBytes(64 << 10, seed: UInt64(1000 + index))
        }
        let hf = try HuggingFaceFixture(files: Dictionary(uniqueKeysWithValues: files.map { ("o/r/\($0.key)", .init(bytes: $0.value)) }))
        let env = ["HF_ENDPOINT": hf.endpoint]
        let pulled = try world.tsr(["pull"] + files.keys.sorted().map { "hf://o/r/\($0)" } + ["--folder", "loras"], environment: env, timeout: 300)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let total = files.values.reduce(0) { $0 + $1.count }

        // Evict everything, and kill the process once some blobs are gone.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuildProducts.tsr)
        process.arguments = ["gc", "--evict-to", "0", "--home", world.home]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let blobs = world.home + "/blobs/sha256"
        let count = { (FileManager.default.enumerator(atPath: blobs)?.allObjects.compactMap { $0 as? String }.filter { $0.contains("/") }.count) ?? 0 }
        let before = count()
        try process.run()
        _ = eventually(30) { count() <= before - 20 }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let evicted = before - count()
        #expect(process.terminationReason == .uncaughtSignal && evicted < files.count, "killed mid-run (\(evicted) evicted)")

        // The registry and the store agree: nothing present without its bytes.
        let listed = try world.tsr(["list", "--json"])
        let items = (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]) ?? []
        var inconsistent: [String] = []
        for item in items {
            guard let sha = item["sha256"] as? String, let digest = Digest(rawValue: sha) else { continue }
            let here = FileManager.default.fileExists(atPath: world.blobPath(digest))
            if item["state"] as? String == "present" && !here { inconsistent.append("\(item["name"] ?? sha): present without bytes") }
        }
        #expect(inconsistent.isEmpty, "\(inconsistent)")
        #expect(try world.blobsWithWrongBytes().isEmpty)

        // Every name comes back, verified.
        let again = try world.tsr(["pull", "--all-missing"], environment: env)
        #expect(again.status == 0, "\(again.stderr)")
        var lost: Int64 = 0
        for (name, bytes) in files {
            let digest = try SHA256Hasher.digest(bytes)
            if (try? readBytes(world.blobPath(digest))) != bytes { lost += Int64(bytes.count); inconsistent.append(name) }
        }
        #expect(lost == 0, "every model back after the kill: \(inconsistent.prefix(5))")
        ScenarioRecord(
            id: "S14", title: "tsr gc --evict-to 0 killed mid-run, every model pulled back", faultsInjected: 1,
            bytesChecked: Int64(total), bytesLost: lost
        ).record()
    }
}
