import Foundation
import Testing
import TSRStore
import TSRTesting

/// S02: `tsr import --move` is killed with SIGKILL mid-run. Every model must exist either at its
/// original path (whole) or as a committed blob (whole); running the import again finishes the job.
@Suite struct ImportKilledScenario {
    @Test func s02ImportMoveKilledMidRunLosesNothing() throws {
        let world = try ScenarioWorld("tsr-s02")
        defer { world.remove() }
        let source = world.dir.path + "/models"
        var files: [String: (Digest, Int)] = [:]
        for index in 0..<240 {
            let folder = ["checkpoints", "loras", "vae"][index % 3]
            let bytes = SafetensorsBuilder(tensors: [("w\(index)", "U8", [UInt64((512 << 10) + index)])], fill: UInt8(index % 251)).bytes()
            let relative = "\(folder)/model-\(index).safetensors"
            _ = try world.dir.write("models/" + relative, bytes)
            files[relative] = (try SHA256Hasher.digest(bytes), bytes.count)
        }
        let total = files.values.reduce(0) { $0 + $1.1 }

        // Start the import and kill it once some files are in the store.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuildProducts.tsr)
        process.arguments = ["import", source, "--move", "--home", world.home]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let blobs = world.home + "/blobs/sha256"
        _ = eventually(30) { ((FileManager.default.enumerator(atPath: blobs)?.allObjects.count) ?? 0) >= 30 }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "killed mid-run (not finished before the kill)")

        var lost: Int64 = 0
        var moved = 0
        for (relative, (digest, size)) in files {
            let original = source + "/" + relative
            let originalWhole = (try? SHA256Hasher.digest(readBytes(original))) == digest
            let blobWhole = (try? SHA256Hasher.digest(readBytes(world.blobPath(digest)))) == digest
            if blobWhole && !originalWhole { moved += 1 }
            if !originalWhole && !blobWhole { lost += Int64(size) }
        }
        #expect(lost == 0, "every model is whole at its original path or as a blob")
        #expect(moved < files.count, "the kill came before the end")
        #expect(try world.blobsWithWrongBytes().isEmpty)

        // Running it again finishes: every model a blob with its name, the source tree emptied.
        let again = try world.tsr(["import", source, "--move"])
        #expect(again.status == 0, "\(again.stderr)")
        let listed = try world.tsr(["list", "--json"])
        let items = (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]) ?? []
        let names = Set(items.compactMap { item -> String? in
            guard let folder = item["folder"] as? String, let name = item["name"] as? String else { return nil }
            return folder + "/" + name
        })
        #expect(names == Set(files.keys))
        for (relative, (digest, _)) in files {
            #expect(!FileManager.default.fileExists(atPath: source + "/" + relative), "\(relative) moved")
            #expect((try? SHA256Hasher.digest(readBytes(world.blobPath(digest)))) == digest)
        }
        ScenarioRecord(id: "S02", title: "import --move killed mid-run, run again", faultsInjected: 1, bytesChecked: Int64(total) * 2, bytesLost: lost).record()
    }
}
