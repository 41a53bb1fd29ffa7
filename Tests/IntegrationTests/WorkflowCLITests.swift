import Foundation
import Testing
import TSRStore
import TSRTesting

/// `tsr workflow add|check|show|pull|list|rm` with the Hugging Face emulator, and the mount's
/// `workflows/<name>/` view.
@Suite struct WorkflowCLITests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }
    let checkpoint = SafetensorsBuilder(metadata: ["modelspec.architecture": "stable-diffusion-xl-v1-base"], tensors: [("w", "U8", [1 << 20])], fill: 1).bytes()
    // Larger than the header region registration fetches (else it is verified and stored then).
    let vae = SafetensorsBuilder(tensors: [("decoder.w", "U8", [600_000])], fill: 2).bytes()
    let other = SafetensorsBuilder(tensors: [("w", "U8", [1000])], fill: 9).bytes()

    init() throws { dir = try TempDirectory("tsr-workflow-cli") }

    func tsr(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment.merge(extra) { $1 }
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120)
    }

    /// A ComfyUI UI-format workflow naming two models by Hugging Face URL, no hashes.
    func uiWorkflow(_ hf: HuggingFaceFixture) throws -> String {
        try dir.write("flux-portrait.json", Array("""
            {"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "properties": {"models": [
                {"name": "base.safetensors", "url": "https://huggingface.co/o/r/resolve/main/base.safetensors?download=true", "directory": "checkpoints"}]}}],
             "definitions": {"subgraphs": [{"nodes": [{"properties": {"models": [
                {"name": "ae.safetensors", "url": "https://huggingface.co/o/r/resolve/main/split/ae.safetensors", "directory": "vae"}]}}]}]}}
            """.utf8))
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func addResolvesThroughTheSourceCheckSpeaksTheSeedsFieldsAndPullDownloads() throws {
        defer { dir.remove() }
        let hf = try HuggingFaceFixture(files: ["o/r/base.safetensors": .init(bytes: checkpoint), "o/r/split/ae.safetensors": .init(bytes: vae)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        // The folder view already has a different ae.safetensors: reported, never merged.
        try dir.write("models/vae/ae.safetensors", other)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)

        let added = try tsr(["workflow", "add", try uiWorkflow(hf), "--json"], environment: env)
        #expect(added.status == 0, "\(added.stderr)")
        let result = try json(added.stdout)
        #expect(result["total_download_size"] as? Int == checkpoint.count + vae.count && result["total_saved_size"] as? Int == 0)
        let problems = try #require(result["problems"] as? [[String: Any]])
        #expect(problems.count == 1 && (problems.first?["message"] as? String)?.contains("only in workflows/flux-portrait/") == true)
        let missing = try #require(result["missing"] as? [[String: Any]])
        #expect(Set(missing.compactMap { $0["sha256"] as? String }) == [try SHA256Hasher.digest(checkpoint).rawValue, try SHA256Hasher.digest(vae).rawValue])
        #expect(missing.allSatisfy { $0["action"] as? String == "download" && $0["state"] as? String == "remote" })

        // The folder view lists the checkpoint (so ComfyUI accepts the prompt); vae/ae is still the old file.
        let list = try tsr(["list", "--json"]).stdout
        #expect(list.contains("base.safetensors"))
        let vaeInfo = try json(try tsr(["info", "vae/ae.safetensors", "--json"]).stdout)
        #expect(vaeInfo["sha256"] as? String == (try SHA256Hasher.digest(other)).rawValue)

        let pulled = try tsr(["workflow", "pull", "flux-portrait", "--json", "--pin"], environment: env)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        // --pin: what the workflow needs is never evicted; tsr list and info say so.
        let listedPins = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["list", "--json"]).stdout.utf8)) as? [[String: Any]])
        #expect(listedPins.first { $0["name"] as? String == "base.safetensors" }?["pinned"] as? Bool == true)
        #expect(listedPins.first { $0["name"] as? String == "ae.safetensors" && $0["folder"] as? String == "vae" }?["pinned"] as? Bool == false, "the folder view's own ae is not the workflow's")
        #expect(try json(try tsr(["info", "checkpoints/base.safetensors", "--json"]).stdout)["pinned"] as? Bool == true)
        #expect(try tsr(["unpin", "--workflow", "flux-portrait"]).stdout.contains("unpinned 2 blobs"))
        #expect(try tsr(["pin", "--workflow", "nope"]).status == 1)
        #expect(pulled.stdout.components(separatedBy: "\"completed\"").count == 3)
        #expect(pulled.stdout.contains("\"overall_total_bytes\":\(checkpoint.count + vae.count)"), "progress of the whole pull")
        let check = try json(try tsr(["workflow", "check", "flux-portrait", "--json"]).stdout)
        #expect((check["missing"] as? [Any])?.isEmpty == true && check["total_download_size"] as? Int == 0)
        let existing = try #require(check["existing"] as? [[String: Any]])
        #expect(Set(existing.compactMap { $0["action"] as? String }) == ["use_existing", "symlink"])
        #expect(check["total_saved_size"] as? Int == checkpoint.count + vae.count)

        let listed = try tsr(["workflow", "list"]).stdout
        #expect(listed.contains("flux-portrait  2 models, 0 missing"))
        // Adding it again needs --force; a file not added is checked against the registry only.
        #expect(try tsr(["workflow", "add", try uiWorkflow(hf)], environment: env).stderr.contains("--force"))
        let fileCheck = try json(try tsr(["workflow", "check", try uiWorkflow(hf), "--json"]).stdout)
        // Without hashes, the workflow's URLs are matched to the sources recorded when they were
        // downloaded: both files are here (the vae under workflows/ only, hence "symlink").
        let fileExisting = try #require(fileCheck["existing"] as? [[String: Any]])
        #expect(Set(fileExisting.compactMap { $0["action"] as? String }) == ["use_existing", "symlink"])
        #expect(try tsr(["workflow", "rm", "flux-portrait"]).status == 0)
        #expect(try tsr(["workflow", "show", "flux-portrait"]).stderr.contains("no workflow flux-portrait"))
    }

    @Test func apiFormatNamesResolveAgainstTheRegistryAndTheRestIsReported() throws {
        defer { dir.remove() }
        try dir.write("models/loras/detail.safetensors", other)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        let file = try dir.write("api.json", Array("""
            {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors"}},
             "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "never-heard-of-it.safetensors"}}}
            """.utf8))
        let added = try tsr(["workflow", "add", file, "--name", "api-test", "--json"])
        #expect(added.status == 0, "\(added.stderr)")
        let result = try json(added.stdout)
        #expect((result["existing"] as? [[String: Any]])?.first?["action"] as? String == "use_existing")
        let missing = try #require(result["missing"] as? [[String: Any]])
        #expect(missing.count == 1 && missing.first?["state"] as? String == "unresolved")
        let pulled = try tsr(["workflow", "pull", "api-test"])
        #expect(pulled.status == 1 && pulled.stderr.contains("never-heard-of-it.safetensors"))
        #expect(try tsr(["workflow", "add", file, "--name", "../escape"]).status != 0)
    }

    @Test(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
    func theMountShowsEachWorkflowsModelsAndFetchesThemOnRead() throws {
        defer { dir.remove() }
        let hf = try HuggingFaceFixture(files: ["o/r/base.safetensors": .init(bytes: checkpoint), "o/r/split/ae.safetensors": .init(bytes: vae)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        try TestMount.with(home: home, environment: env) { mount in
            let workflows = mount.mountpoint + "/workflows"
            let before = try FileManager.default.attributesOfItem(atPath: workflows)[.modificationDate] as? Date
            #expect(try tsr(["workflow", "add", try uiWorkflow(hf)], environment: env).status == 0)
            let view = workflows + "/flux-portrait"
            var listed: [String] = []
            for _ in 0..<100 {
                let found = try Shell.run("/usr/bin/find", [view, "-mindepth", "1", "-printf", "%P\\n"])
                listed = found.stdout.split(separator: "\n").map(String.init)
                if listed.count >= 4 { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            #expect(Set(listed) == ["checkpoints", "checkpoints/base.safetensors", "vae", "vae/ae.safetensors"])
            // fts-based walkers (Foundation, coreutils) trust st_nlink to know where subdirectories are.
            #expect(Set(try FileManager.default.subpathsOfDirectory(atPath: view)) == Set(listed))
            // Its cached attributes are refreshed once the mount has read the change (every 200 ms).
            var after = before
            for _ in 0..<40 where after == before {
                after = try FileManager.default.attributesOfItem(atPath: workflows)[.modificationDate] as? Date
                if after == before { Thread.sleep(forTimeInterval: 0.05) }
            }
            #expect(before != after, "workflows/ moved its mtime")
            #expect(try readBytes(view + "/vae/ae.safetensors") == vae, "a read fetches the bytes")
            #expect(open(view + "/vae/new.safetensors", O_CREAT | O_WRONLY, 0o644) == -1 && errno == EROFS, "workflows/ is read-only")
            #expect(try tsr(["workflow", "rm", "flux-portrait"]).status == 0)
            var gone = false
            for _ in 0..<100 where !gone {
                gone = !FileManager.default.fileExists(atPath: view)
                if !gone { Thread.sleep(forTimeInterval: 0.05) }
            }
            #expect(gone)
        }
    }
}

extension WorkflowCLITests {
    /// Issue 18: `--token-stdin` on workflows and bulk pulls exited 64 ("needs sources of one
    /// service") even when every entry was on Hugging Face: the service comes from the entries.
    @Test func aKeyFromStdinServesWorkflowsAndBulkPullsOfOneService() throws {
        defer { dir.remove() }
        let hf = try HuggingFaceFixture(files: [
            "o/gated/base.safetensors": .init(bytes: checkpoint, gated: true), "o/gated/split/ae.safetensors": .init(bytes: vae, gated: true),
        ])
        let env = ["HF_ENDPOINT": hf.endpoint]
        try dir.write("gated.json", Array("""
            {"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "properties": {"models": [
                {"name": "base.safetensors", "url": "https://huggingface.co/o/gated/resolve/main/base.safetensors", "directory": "checkpoints"},
                {"name": "ae.safetensors", "url": "https://huggingface.co/o/gated/resolve/main/split/ae.safetensors", "directory": "vae"}]}}]}
            """.utf8))
        func run(_ arguments: [String], key: String) throws -> Shell.Output {
            var environment = ProcessInfo.processInfo.environment
            environment["TSR_HOME"] = home
            environment.merge(env) { $1 }
            return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120, input: key + "\n")
        }
        let added = try run(["workflow", "add", dir.path + "/gated.json", "--token-stdin"], key: hf.token)
        #expect(added.status == 0, "\(added.stderr)")
        #expect(try tsr(["list", "--json"]).stdout.contains("base.safetensors"), "registered with the key")
        let pulled = try run(["workflow", "pull", "gated", "--token-stdin"], key: hf.token)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        #expect((try? readBytes(home + "/blobs/sha256/\(try SHA256Hasher.digest(vae).prefix)/\(try SHA256Hasher.digest(vae).rawValue)")) == vae)
        // Bulk: a registered name made missing again is pulled with the key from stdin.
        let blob = home + "/blobs/sha256/\(try SHA256Hasher.digest(checkpoint).prefix)/\(try SHA256Hasher.digest(checkpoint).rawValue)"
        try FileManager.default.removeItem(atPath: blob)
        #expect(try tsr(["verify"]).status == 1, "the missing blob is noticed")
        let bulk = try run(["pull", "--all-missing", "--token-stdin"], key: hf.token)
        #expect(bulk.status == 0, "\(bulk.stderr)")
        #expect(try readBytes(blob) == checkpoint)
        // Issue 18 #8: an entry registered from its hash and size while the source wanted a key
        // keeps no "authentication required" note once its bytes are here.
        let lora = SafetensorsBuilder(tensors: [("lora_w", "U8", [700_000])], fill: 3).bytes()
        let digest = try SHA256Hasher.digest(lora)
        let gatedLora = try HuggingFaceFixture(files: ["o/gated/l.safetensors": .init(bytes: lora, gated: true)])
        try dir.write("seed.json", Array("""
            {"dependencies": {"loras": [{"filename": "l.safetensors", "sha256": "\(digest.rawValue)", "size": \(lora.count),
              "urls": ["https://huggingface.co/o/gated/resolve/main/l.safetensors"]}]}}
            """.utf8))
        var gatedEnv = ProcessInfo.processInfo.environment
        gatedEnv["TSR_HOME"] = home
        gatedEnv["HF_ENDPOINT"] = gatedLora.endpoint
        #expect(try Shell.run(BuildProducts.tsr, ["workflow", "add", dir.path + "/seed.json", "--name", "seed"], environment: gatedEnv, cwd: dir.path).status == 0)
        #expect(try Shell.run(BuildProducts.tsr, ["workflow", "check", "seed"], environment: gatedEnv, cwd: dir.path).stdout.contains("authentication required"))
        let seedPull = try Shell.run(BuildProducts.tsr, ["workflow", "pull", "seed", "--token-stdin"], environment: gatedEnv, cwd: dir.path, timeout: 120, input: gatedLora.token + "\n")
        #expect(seedPull.status == 0, "\(seedPull.stderr)")
        let afterPull = try Shell.run(BuildProducts.tsr, ["workflow", "check", "seed", "--json"], environment: gatedEnv, cwd: dir.path).stdout
        let afterCheck = try #require(try JSONSerialization.jsonObject(with: Data(afterPull.utf8)) as? [String: Any])
        #expect(!afterPull.contains("authentication required") && (afterCheck["missing"] as? [Any])?.isEmpty == true, "\(afterPull)")
        let notes = try Shell.run("/usr/bin/python3", ["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM workflow_entries WHERE note IS NOT NULL').fetchone()[0])", home + "/models.db"])
        #expect(notes.stdout == "0\n", "no stale note is stored either: \(notes.stdout)\(notes.stderr)")
        // Nothing on either service: the flag says it has nothing to be for.
        let pointless = try run(["pull", "--all-missing", "--token-stdin"], key: hf.token)
        #expect(pointless.status != 0 && pointless.stderr.contains("none of these files"), "\(pointless.stderr)")
    }
}

extension WorkflowCLITests {
    /// Issue 18 #1: on a terminal, `tsr workflow pull` asks for a key before it starts when the
    /// workflow says its files need one (seed format `requires_auth` / `auth_provider`), and
    /// `tsr pull --all-missing` asks once, after the other files, when downloads are refused.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/script"), "needs script(1) for a pseudo-terminal"))
    func aTerminalIsAskedForAKeyUpFrontOrOnceAfterRefusals() throws {
        defer { dir.remove() }
        let one = SafetensorsBuilder(tensors: [("a", "U8", [600_000])], fill: 5).bytes()
        let two = SafetensorsBuilder(tensors: [("b", "U8", [600_000])], fill: 6).bytes()
        let hf = try HuggingFaceFixture(files: ["o/gated/one.safetensors": .init(bytes: one, gated: true), "o/gated/two.safetensors": .init(bytes: two, gated: true)])
        func entry(_ name: String, _ bytes: [UInt8]) throws -> String {
            """
            {"filename": "\(name)", "sha256": "\(try SHA256Hasher.digest(bytes).rawValue)", "size": \(bytes.count), "requires_auth": true,
             "auth_provider": "huggingface", "urls": ["https://huggingface.co/o/gated/resolve/main/\(name)"]}
            """
        }
        try dir.write("seed.json", Array("{\"dependencies\": {\"loras\": [\(try entry("one.safetensors", one)), \(try entry("two.safetensors", two))]}}".utf8))
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment["HF_ENDPOINT"] = hf.endpoint
        environment["HF_TOKEN"] = nil
        #expect(try Shell.run(BuildProducts.tsr, ["workflow", "add", dir.path + "/seed.json", "--name", "seed"], environment: environment, cwd: dir.path).status == 0,
                "no terminal: no question, the entries are registered from their hash and size")
        func onTerminal(_ arguments: String) throws -> Shell.Output {
            let command = "(sleep 2; printf '%s\\n' \(hf.token)) | /usr/bin/script -qec \"'\(BuildProducts.tsr)' \(arguments)\" /dev/null"
            return try Shell.run("/bin/sh", ["-c", command], environment: environment, timeout: 90)
        }
        let pulled = try onTerminal("workflow pull seed")
        #expect(pulled.status == 0, "\(pulled.stdout)\(pulled.stderr)")
        #expect(pulled.stdout.contains("seed says some of its missing files need a Hugging Face token"), "\(pulled.stdout)")
        #expect(!pulled.stdout.contains("authentication required"), "asked before starting, not after a refusal: \(pulled.stdout)")
        #expect(!pulled.stdout.contains(hf.token), "the key is not echoed")
        let blobs = try [one, two].map { bytes -> String in
            let digest = try SHA256Hasher.digest(bytes)
            return home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)"
        }
        #expect(try blobs.map(readBytes) == [one, two])

        // Both made missing again: a bulk pull meets two refusals and asks once.
        for blob in blobs { try FileManager.default.removeItem(atPath: blob) }
        #expect(try tsr(["verify"]).status == 1)
        let bulk = try onTerminal("pull --all-missing")
        #expect(bulk.status == 0, "\(bulk.stdout)\(bulk.stderr)")
        #expect(bulk.stdout.components(separatedBy: "Hugging Face token (used for this download only, never saved)").count == 2, "one question: \(bulk.stdout)")
        #expect(bulk.stdout.contains("2 files wait for this key"), "\(bulk.stdout)")
        #expect(try blobs.map(readBytes) == [one, two])
        #expect(filesContaining(hf.token, under: home).isEmpty, "the key is nowhere in the home")
    }
}
