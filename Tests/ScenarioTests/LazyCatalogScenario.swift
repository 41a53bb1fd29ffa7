import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// S13 (issue 17): a catalogue of 50 remote models browsed by header the way ComfyUI's model
/// library and `safe_open(...).metadata()` do (read and mmap, the kernel's own readahead): no
/// download. Then one model loaded whole: exactly one download. One model whose source serves
/// wrong bytes: one attempt per back-off period, at most one quarantined copy, never served.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
struct LazyCatalogScenario {
    @Test func s13BrowsingFiftyRemoteModelsDownloadsNone() throws {
        let world = try ScenarioWorld("tsr-s13")
        defer { world.remove() }
        var files: [String: HuggingFaceFixture.File] = [:]
        var models: [(name: String, bytes: [UInt8])] = []
        for i in 0..<50 {
            // Headers of 20 KB to 400 KB (checkpoints' are ~155 KB).
            let header = 20_000 + i * 7_800
            let bytes = SafetensorsBuilder(metadata: ["notes": String(repeating: "h", count: header)], tensors: [("w", "U8", [UInt64(1 << 20)])], fill: UInt8(i)).bytes()
            files["o/catalogue/m\(i).safetensors"] = .init(bytes: bytes)
            models.append(("m\(i).safetensors", bytes))
        }
        let good = SafetensorsBuilder(tensors: [("w", "U8", [UInt64(2 << 20)])], fill: 200).bytes()
        var wrong = good
        wrong[wrong.count - 1] ^= 0x55
        files["o/catalogue/bad.safetensors"] = .init(bytes: good, served: wrong)
        let hf = try HuggingFaceFixture(files: files)
        let env = ["HF_ENDPOINT": hf.endpoint]
        for name in files.keys.sorted() {
            let added = try world.tsr(["add", "hf://" + name, "--folder", "checkpoints"], environment: env)
            #expect(added.status == 0, "\(added.stderr)")
        }
        func gets(_ bytes: [UInt8]) -> Int {
            let digest = (try? SHA256Hasher.digest(bytes).rawValue) ?? ""
            return hf.cdn.requests.filter { $0.method == "GET" && $0.path.hasSuffix(digest) }.count
        }
        let registered = models.map { gets($0.bytes) }
        let registeredBytes = models.reduce(0) { $0 + hf.cdnBytes(of: (try? SHA256Hasher.digest($1.bytes).rawValue) ?? "", size: $1.bytes.count) }
        var checked: Int64 = 0
        var wrongServed: Int64 = 0
        try TestMount.with(home: world.home, environment: env.merging(["TSR_MOUNT_TUNING": "retry_backoff=2,retry_backoff_max=2"]) { $1 }) { mount in
            let root = mount.mountpoint + "/checkpoints/"
            // Browse twice, as a model manager does, by read and by mmap.
            for _ in 0..<2 {
                for model in models {
                    let end = 8 + Int(Safetensors.headerLength(model.bytes))
                    let expected = Array(model.bytes.prefix(end))
                    let byRead = HeaderPeek.byRead(root + model.name)
                    let byMap = HeaderPeek.byMmap(root + model.name, size: model.bytes.count)
                    checked += Int64(2 * end)
                    if byRead != expected { wrongServed += Int64(end) }
                    if byMap != expected { wrongServed += Int64(end) }
                }
            }
            let afterBrowsing = models.map { gets($0.bytes) }
            #expect(afterBrowsing == registered, "browsing 50 models by header downloaded none")
            #expect(models.allSatisfy { xattr(root + $0.name, "user.tsr.state") == "remote" })

            // One loaded whole: exactly one download.
            let loaded = models[17]
            let read = try readBytes(root + loaded.name)
            checked += Int64(read.count)
            if read != loaded.bytes { wrongServed += Int64(read.count) }
            #expect(gets(loaded.bytes) == registered[17] + 1, "one download for the model loaded")

            // One bad: one attempt per back-off period, one quarantined copy, never served.
            // An attempt is one download from byte 0 (the first also tries to continue after the
            // registered header region, which may be what was wrong).
            let badDigest = try SHA256Hasher.digest(good).rawValue
            func attempts() -> Int { hf.cdn.requests.filter { $0.method == "GET" && $0.path.hasSuffix(badDigest) && $0.header("range") == nil }.count }
            for _ in 0..<10 { if let served = try? readBytes(root + "bad.safetensors") { wrongServed += Int64(served.count) } }
            #expect(attempts() == 1, "ten reads in one period: one attempt")
            Thread.sleep(forTimeInterval: 2.5)
            for _ in 0..<10 { if let served = try? readBytes(root + "bad.safetensors") { wrongServed += Int64(served.count) } }
            #expect(attempts() == 2, "the next period: one more")
            let quarantined = (try? FileManager.default.contentsOfDirectory(atPath: world.home + "/quarantine")) ?? []
            #expect(quarantined.count == 1, "one copy of the wrong bytes: \(quarantined)")
        }
        #expect(wrongServed == 0)
        ScenarioRecord(
            id: "S13", title: "50 remote models browsed by header (0 downloads, \(registeredBytes / 1024) KiB fetched at registration), one loaded (1 download), one bad (1 attempt per back-off)",
            faultsInjected: 1, bytesChecked: checked, bytesLost: 0, wrongBytesServed: wrongServed
        ).record()
    }
}
