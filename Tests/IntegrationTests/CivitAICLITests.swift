import Foundation
import Testing
import TSRStore
import TSRTesting

/// `tsr db link|cache|search|list|triggers|prompts|stats` against the CivitAI emulator, and the
/// mount's by-base/ and by-creator/ views following a link.
@Suite struct CivitAICLITests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }
    let lora = SafetensorsBuilder(metadata: ["ss_base_model_version": "sd_v1"], tensors: [("lora_unet_w", "F16", [8, 8])], fill: 4).bytes()

    init() throws { dir = try TempDirectory("tsr-civitai-cli") }

    func tsr(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment.merge(extra) { $1 }
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120)
    }

    /// An emulator that knows the LoRA's hash as version 501 of model 50 by "tsr-maker", base Pony.
    func emulator() throws -> CivitAIFixture {
        let civitai = try CivitAIFixture()
        let version = CivitAIFixture.versionJSON(id: 501, modelId: 50, type: "LORA", fileName: "pony-style.safetensors", bytes: lora, baseModel: "Pony")
        civitai.addByHash(try SHA256Hasher.digest(lora).rawValue, json: version)
        civitai.addModel(50, json: CivitAIFixture.modelJSON(id: 50, name: "Pony Style", type: "LORA", creator: "tsr-maker", tags: ["style"], versions: [version]))
        civitai.addModel(1102, json: try CivitAIFixture.sharedFixture("model-1102-wiki2023.json"))
        return civitai
    }

    @Test func linkCachesSearchListsTriggersAndPromptsAndRemembersMisses() throws {
        defer { dir.remove() }
        let civitai = try emulator()
        let env = ["TSR_CIVITAI_URL": civitai.base]
        try dir.write("models/loras/mine.safetensors", lora)
        try dir.write("models/loras/unknown.safetensors", SafetensorsBuilder(tensors: [("w", "F16", [2])], fill: 8).bytes())
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)

        let linked = try tsr(["db", "link", "--json"], environment: env)
        #expect(linked.status == 0, "\(linked.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(linked.stdout.utf8)) as? [String: Any])
        #expect(summary["linked"] as? Int == 1 && summary["not_found"] as? Int == 1 && summary["checked"] as? Int == 2)

        #expect(try tsr(["db", "triggers", "loras/mine.safetensors"]).stdout == "tsrstyle\n")
        // tsr info shows what the cache knows of a linked file (issue 18).
        let info = try tsr(["info", "loras/mine.safetensors"]).stdout
        #expect(info.contains("civitai:      Pony Style") && info.contains("model 50, version 501") && info.contains("creator:      tsr-maker"), "\(info)")
        #expect(info.contains("trigger words: tsrstyle") && info.contains("newest:       this is the newest version"), "\(info)")
        let infoJSON = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["info", "loras/mine.safetensors", "--json"]).stdout.utf8)) as? [String: Any])
        let civitaiInfo = try #require(infoJSON["civitai"] as? [String: Any])
        #expect(civitaiInfo["model_id"] as? Int == 50 && civitaiInfo["newest_version_id"] as? Int == 501 && civitaiInfo["trigger_words"] as? [String] == ["tsrstyle"])
        #expect(try tsr(["info", "loras/unknown.safetensors"]).stdout.contains("civitai:") == false)
        let list = try tsr(["db", "list", "--json", "-t", "lora"]).stdout
        #expect(list.contains("\"creator\" : \"tsr-maker\"") && list.contains("\"base_model\" : \"Pony\"") && !list.contains("unknown.safetensors"))
        #expect(try tsr(["db", "search", "pony"]).stdout.contains("50  Pony Style  [LORA, Pony] by tsr-maker"))
        #expect(try tsr(["db", "search", "tsrstyle", "--json"]).stdout.contains("\"civitai_id\" : 50"))

        // A model cached by id: its example prompts.
        #expect(try tsr(["db", "cache", "1102"], environment: env).stdout.contains("SynthwavePunk"))
        let prompts = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["db", "prompts", "1102", "--json"]).stdout.utf8)) as? [[String: Any]])
        #expect(!prompts.isEmpty && prompts.allSatisfy { $0["prompt"] is String && $0["sampler"] != nil && $0["seed"] != nil })
        #expect(try tsr(["db", "stats", "--json"]).stdout.contains("\"models\" : 2"))

        // Misses are remembered: a second run asks nothing.
        let before = civitai.api.requests.count
        #expect(try tsr(["db", "link"], environment: env).stdout.contains("checked 0 of 0"))
        #expect(civitai.api.requests.count == before)
        #expect(try tsr(["db", "link", "--retry-unknown"], environment: env).stdout.contains("checked 1 of 1"))
        #expect(try tsr(["db", "triggers", "loras/unknown.safetensors"]).stderr.contains("not linked to CivitAI"))
    }

    @Test func withoutNetworkLinkSaysSoAndKeepsNothingHalfDone() throws {
        defer { dir.remove() }
        try dir.write("models/loras/mine.safetensors", lora)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        let offline = try tsr(["db", "link"], environment: ["TSR_CIVITAI_URL": "http://localhost:9", "TSR_FETCH_ATTEMPTS": "1"])
        #expect(offline.status == 1 && offline.stderr.contains("run `tsr db link` again later"))
        let civitai = try emulator()
        #expect(try tsr(["db", "link"], environment: ["TSR_CIVITAI_URL": civitai.base]).stdout.contains("1 linked"), "nothing was remembered as missing")
    }

    @Test(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
    func theMountsByCreatorAndByBaseFollowALinkWithinASecond() throws {
        defer { dir.remove() }
        let civitai = try emulator()
        try dir.write("models/loras/mine.safetensors", lora)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        try TestMount.with(home: home) { mount in
            let byCreator = mount.mountpoint + "/by-creator/tsr-maker/loras/mine.safetensors"
            let byBase = mount.mountpoint + "/by-base/Pony/loras/mine.safetensors"
            #expect(FileManager.default.fileExists(atPath: mount.mountpoint + "/by-creator/unknown/loras/mine.safetensors"))
            let linked = try tsr(["db", "link"], environment: ["TSR_CIVITAI_URL": civitai.base])
            #expect(linked.status == 0)
            let start = Date()
            let unknown = mount.mountpoint + "/by-creator/unknown/loras/mine.safetensors"
            // New names show at once; names cached by the kernel go once the mount has read the change.
            while !(FileManager.default.fileExists(atPath: byCreator) && FileManager.default.fileExists(atPath: byBase) && !FileManager.default.fileExists(atPath: unknown)),
                Date().timeIntervalSince(start) < 3
            {
                Thread.sleep(forTimeInterval: 0.02)
            }
            #expect(Date().timeIntervalSince(start) < 1.0, "by-creator/ and by-base/ changed within a second")
            let read = try readBytes(byCreator)
            #expect(read == lora)
            #expect(!FileManager.default.fileExists(atPath: mount.mountpoint + "/by-creator/unknown/loras/mine.safetensors"))
        }
    }
}

extension CivitAICLITests {
    @Test func onlineSearchPagesWithTheCursorAndCachesWhatItSees() throws {
        defer { dir.remove() }
        let civitai = try CivitAIFixture()
        for name in ["model-1102-wiki2023.json", "model-1231067.json", "model-1580878.json", "models-item-1394-2023.json", "models-item-58390-2023.json"] {
            let text = try CivitAIFixture.sharedFixture(name)
            let id = try #require((try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["id"] as? Int)
            civitai.addModel(id, json: text)
        }
        let env = ["TSR_CIVITAI_URL": civitai.base]
        let first = try tsr(["search", "-t", "LORA", "--limit", "2", "--json"], environment: env)
        #expect(first.status == 0, "\(first.stderr)")
        let page = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        #expect((page["items"] as? [Any])?.count == 2 && page["next_cursor"] as? String == "2")
        let rest = try tsr(["search", "-t", "LORA", "--limit", "2", "--cursor", "2"], environment: env)
        #expect(rest.stdout.split(separator: "\n").count == 1, "the third LoRA, and no further cursor")
        #expect(civitai.api.requests.allSatisfy { $0.query["page"] == nil }, "paging uses the cursor")
        // Everything seen is searchable offline.
        let offline = try tsr(["db", "search", "-t", "lora", "--json"])
        #expect(offline.stdout.components(separatedBy: "\"civitai_id\"").count == 4)
    }
}

extension CivitAICLITests {
    /// Issue 18: `tsr db search` repeated a model's trigger words once per version.
    @Test func searchShowsEachTriggerWordOnce() throws {
        defer { dir.remove() }
        let civitai = try CivitAIFixture()
        let versions = [601, 602, 603].map { CivitAIFixture.versionJSON(id: $0, modelId: 60, type: "LORA", fileName: "v\($0).safetensors", bytes: Array("v\($0)".utf8)) }
        civitai.addModel(60, json: CivitAIFixture.modelJSON(id: 60, name: "Three Versions", type: "LORA", creator: "tsr-maker", versions: versions))
        #expect(try tsr(["db", "cache", "60"], environment: ["TSR_CIVITAI_URL": civitai.base]).status == 0)
        let hits = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["db", "search", "three", "--json"]).stdout.utf8)) as? [[String: Any]])
        #expect(hits.first?["trigger_words"] as? [String] == ["tsrstyle"], "\(hits)")
    }
}
