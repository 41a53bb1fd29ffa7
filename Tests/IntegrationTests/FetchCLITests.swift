import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// `tsr add` / `tsr pull` and lazy reads through `tsr mount`, against the Hugging Face and
/// CivitAI emulators (HF_ENDPOINT and TSR_CIVITAI_URL point at them).
@Suite struct FetchCLITests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }
    let model = SafetensorsBuilder(
        metadata: ["modelspec.architecture": "stable-diffusion-xl-v1-base", "modelspec.title": "Lazy SDXL"],
        tensors: [("model.diffusion_model.input_blocks.0.0.weight", "U8", [3 << 20])], fill: 7
    ).bytes()
    var digest: Digest { try! SHA256Hasher.digest(model) }

    init() throws { dir = try TempDirectory("tsr-fetch-cli") }

    func tsr(_ arguments: [String], environment extra: [String: String] = [:], input: String? = nil) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment["TSR_LOW_SPEED_TIME"] = "2"
        environment.merge(extra) { $1 }
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120, input: input)
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func addRegistersBeforeDownloadingAndPullAllMissingFetches() throws {
        defer { dir.remove() }
        let hf = try HuggingFaceFixture(files: ["stabilityai/sdxl/unet/lazy.safetensors": .init(bytes: model)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        let added = try tsr(["add", "hf://stabilityai/sdxl/unet/lazy.safetensors", "--folder", "checkpoints", "--json"], environment: env)
        #expect(added.status == 0, "\(added.stderr)")
        let entry = try json(added.stdout)
        #expect(entry["sha256"] as? String == digest.rawValue && entry["size"] as? Int == model.count && entry["state"] as? String == "remote")
        #expect(entry["source"] as? String == "https://huggingface.co/stabilityai/sdxl/resolve/main/unet/lazy.safetensors")

        // Header facts without a download: only the header region left the CDN.
        let info = try json(try tsr(["info", "checkpoints/lazy.safetensors", "--json"]).stdout)
        #expect(info["base_model"] as? String == "SDXL 1.0" && info["tensor_count"] as? Int == 1)
        #expect(hf.cdn.requests.filter { $0.method == "GET" }.map { $0.header("range") } == ["bytes=0-131071", "bytes=131072-393215"])

        let pulled = try tsr(["pull", "--all-missing", "--json"], environment: env)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let events = pulled.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(events.allSatisfy { $0 != nil }, "every line is JSON")
        #expect(events.contains { $0?["status"] as? String == "completed" && $0?["sha256"] as? String == digest.rawValue })
        #expect(events.contains { $0?["total_bytes"] as? Int == model.count && $0?["progress"] != nil })
        #expect(try readBytes(home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)") == model)
        let list = try tsr(["list", "--json"])
        #expect(list.stdout.contains("\"present\"") && !list.stdout.contains("\"remote\""))
        let again = try tsr(["pull", "--all-missing"], environment: env)
        #expect(again.status == 0 && again.stdout.contains("nothing to pull"))

        // A flipped byte: verify quarantines it, and the next pull fetches it again from its source.
        let blob = home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)"
        chmod(blob, 0o644)
        var damaged = try readBytes(blob)
        damaged[damaged.count / 2] ^= 0x40
        try Data(damaged).write(to: URL(fileURLWithPath: blob))
        #expect(try tsr(["verify"]).status == 1)
        #expect(!FileManager.default.fileExists(atPath: blob), "the bad bytes left the blob path")
        let refetched = try tsr(["pull", "--all-missing"], environment: env)
        #expect(refetched.status == 0 && refetched.stdout.contains(digest.rawValue), "\(refetched.stderr)")
        #expect(try readBytes(blob) == model)
        #expect(try tsr(["verify"]).status == 0)
    }

    @Test func badInputGetsClearErrorsAndChangesNothing() throws {
        defer { dir.remove() }
        let hf = try HuggingFaceFixture(files: ["o/r/m.safetensors": .init(bytes: model), "o/r/cfg.yaml": .init(bytes: Array("a: 1".utf8), lfs: false), "o/r/tool.exe": .init(bytes: model)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        let noFolder = try tsr(["add", "hf://o/r/m.safetensors"], environment: env)
        #expect(noFolder.status != 0 && noFolder.stderr.contains("--folder"))
        let traversal = try tsr(["add", "hf://o/r/m.safetensors", "--folder", "loras", "--name", "../../etc/x.safetensors"], environment: env)
        #expect(traversal.status != 0 && traversal.stderr.contains(".."))
        let badFolder = try tsr(["add", "hf://o/r/m.safetensors", "--folder", "../x"], environment: env)
        #expect(badFolder.status != 0)
        let wrongExtension = try tsr(["add", "hf://o/r/tool.exe", "--folder", "loras"], environment: env)
        #expect(wrongExtension.status != 0 && wrongExtension.stderr.contains("would not be listed by ComfyUI"))
        let noDigest = try tsr(["add", "hf://o/r/cfg.yaml", "--folder", "configs"], environment: env)
        #expect(noDigest.status == 1 && noDigest.stderr.contains("--sha256") && noDigest.stderr.contains("tsr pull"))
        let offList = try tsr(["add", "https://downloads.example.net/m.safetensors", "--folder", "loras"])
        #expect(offList.status == 1 && offList.stderr.contains("allowlist"))
        let wrongSHA = try tsr(["add", "hf://o/r/m.safetensors", "--folder", "loras", "--sha256", String(repeating: "ab", count: 32)], environment: env)
        #expect(wrongSHA.status == 1 && wrongSHA.stderr.contains("says its SHA-256 is"))
        #expect(try tsr(["add", "hf://o/r/m.safetensors", "--folder", "loras"], environment: env).status == 0)
        let other = try FixtureServer { request, connection in connection.serveFile(Array("other".utf8), request: request) }
        let clash = try tsr(["pull", other.baseURL + "/m.safetensors", "--folder", "loras"])
        #expect(clash.status == 1 && clash.stderr.contains("--force"), "\(clash.stderr)")
        let list = try tsr(["list", "--json"])
        #expect(list.stdout.components(separatedBy: "\"name\"").count == 2, "exactly the one good entry")
    }

    @Test func trustOnFirstDownloadAndCivitAIWithAKeyFromStdinThatIsWrittenNowhere() throws {
        defer { dir.remove() }
        let plain = try FixtureServer { request, connection in connection.serveFile(Array("yaml: true\n".utf8), request: request) }
        let pulled = try tsr(["pull", plain.baseURL + "/configs/v1.yaml", "--folder", "configs"])
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let yamlDigest = try SHA256Hasher.digest(Array("yaml: true\n".utf8)).rawValue
        #expect(pulled.stdout.contains("configs/v1.yaml") && pulled.stdout.contains(yamlDigest))

        let civitai = try CivitAIFixture()
        civitai.addVersion(42, json: CivitAIFixture.versionJSON(id: 42, modelId: 4, type: "LORA", fileName: "detail.safetensors", bytes: model))
        civitai.addDownload(42, .init(bytes: model, fileName: "detail.safetensors", requiresKey: true))
        let env = ["TSR_CIVITAI_URL": civitai.base]
        let refused = try tsr(["pull", "civitai:4@42"], environment: env)
        #expect(refused.status == 1 && refused.stderr.contains("requires you to be logged in") && refused.stderr.contains("CIVITAI_API_KEY"))
        let withKey = try tsr(["pull", "civitai:4@42", "--token-stdin", "--json"], environment: env, input: civitai.key + "\n")
        #expect(withKey.status == 0, "\(withKey.stderr)")
        #expect(withKey.stdout.contains("\"completed\"") && withKey.stdout.contains("loras/detail.safetensors"))
        #expect(civitai.storage.requests.allSatisfy { $0.header("authorization") == nil })

        // The key is nowhere in the home: database, WAL, blobs, temp files, logs.
        let found = filesContaining(civitai.key, under: home)
        #expect(found.isEmpty, "the key was written to \(found)")
        #expect(!withKey.stdout.contains(civitai.key) && !withKey.stderr.contains(civitai.key))
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/script"), "needs script(1) for a pseudo-terminal"))
    func aRefusedDownloadAsksForTheKeyWithoutEchoingIt() throws {
        defer { dir.remove() }
        let civitai = try CivitAIFixture()
        civitai.addVersion(42, json: CivitAIFixture.versionJSON(id: 42, modelId: 4, type: "LORA", fileName: "detail.safetensors", bytes: model))
        civitai.addDownload(42, .init(bytes: model, fileName: "detail.safetensors", requiresKey: true))
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment["TSR_CIVITAI_URL"] = civitai.base
        environment["CIVITAI_API_KEY"] = nil
        // script(1) gives tsr a terminal; the key is typed once the prompt is up (typeahead
        // would be echoed by the terminal before tsr could switch echo off, as for any program).
        let command = "(sleep 2; printf '%s\\n' \(civitai.key)) | /usr/bin/script -qec \"'\(BuildProducts.tsr)' pull civitai:4@42\" /dev/null"
        let out = try Shell.run("/bin/sh", ["-c", command], environment: environment, timeout: 60)
        #expect(out.status == 0, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout.contains("CivitAI API key (used for this download only, never saved)"))
        #expect(out.stdout.contains("loras/detail.safetensors"))
        #expect(!out.stdout.contains(civitai.key), "the key is not echoed")
        #expect(filesContaining(civitai.key, under: home).isEmpty)
    }


    @Test(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
    func aGatedFileReadThroughTheMountUsesTheTokenAndWritesItNowhere() throws {
        defer { dir.remove() }
        let hf = try HuggingFaceFixture(files: ["o/gated/g.safetensors": .init(bytes: model, gated: true)])
        let env = ["HF_ENDPOINT": hf.endpoint, "HF_TOKEN": hf.token]
        let refused = try tsr(["add", "hf://o/gated/g.safetensors", "--folder", "loras"], environment: ["HF_ENDPOINT": hf.endpoint])
        #expect(refused.status == 1 && refused.stderr.contains("HF_TOKEN") && refused.stderr.contains("restricted"))
        #expect(try tsr(["add", "hf://o/gated/g.safetensors", "--folder", "loras"], environment: env).status == 0)
        var daemonLog = ""
        try TestMount.with(home: home, environment: env.merging(["TSR_LOG_LEVEL": "trace"]) { $1 }) { mount in
            let read = try readBytes(mount.mountpoint + "/loras/g.safetensors")
            #expect(read == model)
            daemonLog = (try? String(contentsOfFile: mount.log, encoding: .utf8)) ?? ""
        }
        #expect(hf.hub.requests.filter { $0.header("authorization") == "Bearer \(hf.token)" }.count >= 2, "the token went to the hub")
        #expect(hf.cdn.requests.allSatisfy { $0.header("authorization") == nil }, "and never to the CDN")
        #expect(filesContaining(hf.token, under: home).isEmpty, "not in the database, blobs, temp files or logs/")
        #expect(!daemonLog.isEmpty && !daemonLog.contains(hf.token), "not in the daemon's own output")
    }

    /// Issue 18: a failed `tsr pull SOURCE` left its name registered while saying "nothing was
    /// stored under the name". A new name goes; a name that was there keeps what it had.
    @Test func aFailedPullLeavesTheNameAsItWas() throws {
        defer { dir.remove() }
        var wrong = model
        wrong[wrong.count - 1] ^= 0xFF
        let hf = try HuggingFaceFixture(files: ["o/r/bad.safetensors": .init(bytes: model, served: wrong)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        let pulled = try tsr(["pull", "hf://o/r/bad.safetensors", "--folder", "checkpoints"], environment: env)
        #expect(pulled.status == 1 && pulled.stderr.contains("nothing was stored under the name"), "\(pulled.stderr)")
        #expect(!(try tsr(["list", "--json"]).stdout.contains("bad.safetensors")), "no name was left behind")
        // A name that stood for other content before a forced pull keeps it.
        let olderBytes = SafetensorsBuilder(tensors: [("w", "U8", [64])], fill: 42).bytes()
        try dir.write("models/checkpoints/bad.safetensors", olderBytes)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        let older = try SHA256Hasher.digest(olderBytes).rawValue
        let forced = try tsr(["pull", "hf://o/r/bad.safetensors", "--folder", "checkpoints", "--force"], environment: env)
        #expect(forced.status == 1)
        let info = try json(try tsr(["info", "checkpoints/bad.safetensors", "--json"]).stdout)
        #expect(info["sha256"] as? String == older, "the name still stands for what it had")
    }

    @Test(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
    func aLazyEntryReadsItsHeaderWithoutDownloadingAndItsBytesOnFirstRead() throws {
        defer { dir.remove() }
        let hf = try HuggingFaceFixture(files: ["o/r/lazy.safetensors": .init(bytes: model)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        #expect(try tsr(["add", "hf://o/r/lazy.safetensors", "--folder", "checkpoints"], environment: env).status == 0)
        try TestMount.with(home: home, environment: env) { mount in
            let path = mount.mountpoint + "/checkpoints/lazy.safetensors"
            let before = try FileManager.default.attributesOfItem(atPath: path)
            #expect((before[.size] as? Int) == model.count, "§2: exact size before the bytes are here")
            // A header reader (ComfyUI's preview, LoRA managers): 8 bytes, then the JSON.
            let handle = try #require(FileHandle(forReadingAtPath: path))
            let length = try handle.read(upToCount: 8) ?? Data()
            let headerLength = Int(Safetensors.headerLength([UInt8](length)))
            let header = try handle.read(upToCount: headerLength) ?? Data()
            try handle.close()
            #expect([UInt8](length + header) == Array(model.prefix(8 + headerLength)))
            #expect(hf.cdn.requests.filter { $0.method == "GET" }.count == 2, "§3: only the registration's header-region requests, no download")
            #expect(try readBytes(path) == model, "§3: the first full read downloads and verifies")
            // The download continues after the bytes registration has.
            #expect(hf.cdn.requests.filter { $0.method == "GET" }.dropFirst(2).map { $0.header("range") } == ["bytes=393216-"])
            let after = try FileManager.default.attributesOfItem(atPath: path)
            #expect(after[.systemFileNumber] as? Int == before[.systemFileNumber] as? Int && after[.modificationDate] as? Date == before[.modificationDate] as? Date)
        }
        let list = try tsr(["list", "--json"])
        #expect(list.stdout.contains("\"present\""))
    }
}

/// Files under `root` whose bytes contain `secret`.
func filesContaining(_ secret: String, under root: String) -> [String] {
    var found: [String] = []
    let walker = FileManager.default.enumerator(atPath: root)
    while let relative = walker?.nextObject() as? String {
        if let data = FileManager.default.contents(atPath: root + "/" + relative), data.range(of: Data(secret.utf8)) != nil { found.append(relative) }
    }
    return found
}
