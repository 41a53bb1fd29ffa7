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

    /// Issue 18 #2: files registered in place are linked (local_files' CivitAI columns, the seed's
    /// views), listed, forgotten when gone, and their duplicates named.
    @Test func scannedFilesAreLinkedListedInTheSeedsViewsForgottenWhenGoneAndDuplicatesNamed() throws {
        defer { dir.remove() }
        let civitai = try emulator()
        try dir.write("models/loras/mine.safetensors", lora)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        try dir.write("scan/loras/a.safetensors", lora)
        try dir.write("scan/loras/b.safetensors", lora)
        let other = SafetensorsBuilder(tensors: [("w", "F16", [2])], fill: 8).bytes()
        try dir.write("scan/other/x.safetensors", other)
        try dir.write("scan/other/y.safetensors", other)

        let scan = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["db", "scan", "scan", "-j"]).stdout.utf8)) as? [String: Any])
        #expect(scan["hashed"] as? Int == 4 && scan["duplicates"] as? Int == 3, "a and b are in the store, y repeats x: \(scan)")
        let groups = try #require(scan["duplicate_groups"] as? [[String: Any]])
        let loraGroup = try #require(groups.first { $0["sha256"] as? String == (try? SHA256Hasher.digest(lora).rawValue) })
        // The file import read is a file tensors hashed where it is, too: every copy is named.
        #expect(loraGroup["paths"] as? [String] == [dir.path + "/models/loras/mine.safetensors", dir.path + "/scan/loras/a.safetensors", dir.path + "/scan/loras/b.safetensors"])
        #expect(loraGroup["names"] as? [String] == ["loras/mine.safetensors"])
        #expect(groups.count == 2)
        let text = try tsr(["db", "scan", "scan"]).stdout
        #expect(text.contains("4 unchanged") && text.contains("duplicates: 3") && text.contains("stored as loras/mine.safetensors"), "\(text)")

        let linked = try tsr(["db", "link", "--json"], environment: ["TSR_CIVITAI_URL": civitai.base])
        #expect(linked.status == 0, "\(linked.stderr)")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["db", "list", "--json"]).stdout.utf8)) as? [[String: Any]])
        let scanned = items.filter { $0["kind"] as? String == "file" }
        #expect(scanned.count == 5 && items.count == 6, "4 scanned, the file import read, and the name it made: \(items)")
        let a = try #require(scanned.first { $0["name"] as? String == dir.path + "/scan/loras/a.safetensors" })
        #expect(a["model"] as? String == "Pony Style" && a["version_id"] as? Int == 501 && a["creator"] as? String == "tsr-maker")
        #expect(scanned.first { $0["name"] as? String == dir.path + "/scan/other/x.safetensors" }?["model"] == nil)
        #expect(try tsr(["db", "list", "-t", "lora"]).stdout.contains(dir.path + "/scan/loras/b.safetensors  Pony  Pony Style"))

        // The seed's views, read with another SQLite client.
        let views = try Shell.run("/usr/bin/python3", ["-c", """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            for row in db.execute("SELECT file_path, model_name, model_type, version_name, base_model, creator FROM v_local_files_full WHERE model_name IS NOT NULL ORDER BY file_path"):
                print("|".join(str(v) for v in row))
            for row in db.execute("SELECT civitai_id, name, creator, latest_version FROM v_models_with_latest"):
                print("latest|" + "|".join(str(v) for v in row))
            """, home + "/models.db"])
        let lines = views.stdout.split(separator: "\n").map(String.init)
        #expect(lines.filter { !$0.hasPrefix("latest|") } == [
            dir.path + "/models/loras/mine.safetensors|Pony Style|LORA|v501|Pony|tsr-maker",
            dir.path + "/scan/loras/a.safetensors|Pony Style|LORA|v501|Pony|tsr-maker",
            dir.path + "/scan/loras/b.safetensors|Pony Style|LORA|v501|Pony|tsr-maker",
        ], "\(views.stdout)\(views.stderr)")
        #expect(lines.contains("latest|50|Pony Style|tsr-maker|v501"), "\(views.stdout)")

        // A rescan forgets what is gone; a newly scanned copy is linked at once from the cache.
        try FileManager.default.removeItem(atPath: dir.path + "/scan/loras/b.safetensors")
        try dir.write("scan/loras/c.safetensors", lora)
        let rescan = try tsr(["db", "scan", "scan"]).stdout
        #expect(rescan.contains("1 hashed") && rescan.contains("1 gone (forgotten)"), "\(rescan)")
        let after = try tsr(["db", "list", "-t", "lora"]).stdout
        #expect(!after.contains("b.safetensors") && after.contains(dir.path + "/scan/loras/c.safetensors  Pony  Pony Style"), "\(after)")
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

extension CivitAICLITests {
    /// Issue 18 #4: version tracking. CivitAI from the cache (--refresh asks), Hugging Face by
    /// whether the revision serves other content now; `tsr update` beside the old name or in place.
    @Test func outdatedFindsNewerVersionsAndUpdateFetchesThemBesideOrInPlace() throws {
        defer { dir.remove() }
        let civitai = try emulator()
        let newer = SafetensorsBuilder(metadata: ["ss_base_model_version": "sd_v1"], tensors: [("lora_unet_w", "F16", [8, 8])], fill: 9).bytes()
        let original = SafetensorsBuilder(tensors: [("model.w", "U8", [500_000])], fill: 1).bytes()
        let changed = SafetensorsBuilder(tensors: [("model.w", "U8", [500_000])], fill: 2).bytes()
        let hf = try HuggingFaceFixture(files: ["o/r/ckpt.safetensors": .init(bytes: original)])
        let env = ["TSR_CIVITAI_URL": civitai.base, "HF_ENDPOINT": hf.endpoint]
        try dir.write("models/loras/mine.safetensors", lora)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        #expect(try tsr(["db", "link"], environment: env).status == 0)
        #expect(try tsr(["pull", "hf://o/r/ckpt.safetensors", "--folder", "checkpoints"], environment: env).status == 0)
        let none = try tsr(["outdated"], environment: env)
        #expect(none.status == 0 && none.stdout.contains("nothing newer found (1 name checked)") && none.stdout.contains("1 name from Hugging Face not asked"), "\(none.stdout)")

        // CivitAI publishes v502; Hugging Face's main now serves other bytes.
        let v501 = CivitAIFixture.versionJSON(id: 501, modelId: 50, type: "LORA", fileName: "pony-style.safetensors", bytes: lora, baseModel: "Pony")
        let v502 = CivitAIFixture.versionJSON(id: 502, modelId: 50, type: "LORA", fileName: "pony-style-2.safetensors", bytes: newer, baseModel: "Pony")
        civitai.addModel(50, json: CivitAIFixture.modelJSON(id: 50, name: "Pony Style", type: "LORA", creator: "tsr-maker", versions: [v502, v501]))
        civitai.addVersion(502, json: v502)
        civitai.addDownload(502, .init(bytes: newer, fileName: "pony-style-2.safetensors"))
        hf.set("o/r/ckpt.safetensors", .init(bytes: changed))
        #expect(try tsr(["outdated"], environment: env).stdout.contains("nothing newer found"), "offline, the cache does not know yet")
        // CivitAI answers the refresh's first request 429 (Retry-After: 1): it waits and asks again.
        civitai.rateLimitNext(1)
        let refreshed = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["outdated", "--refresh", "--json"], environment: env).stdout.utf8)) as? [String: Any])
        #expect(refreshed["stopped_early"] == nil)
        let items = try #require(refreshed["outdated"] as? [[String: Any]])
        #expect(items.count == 2, "\(refreshed)")
        let civitaiItem = try #require(items.first { $0["source"] as? String == "civitai" })
        #expect(civitaiItem["name"] as? String == "loras/mine.safetensors" && civitaiItem["current"] as? String == "v501" && civitaiItem["newest"] as? String == "v502")
        let hfItem = try #require(items.first { $0["source"] as? String == "huggingface" })
        let changedDigest = try SHA256Hasher.digest(changed).rawValue
        #expect(hfItem["name"] as? String == "checkpoints/ckpt.safetensors" && hfItem["newest_sha256"] as? String == changedDigest)
        // Offline again: the cache now knows v502; info and db list say so.
        #expect(try tsr(["outdated"]).stdout.contains("loras/mine.safetensors  civitai  v501 → v502"))
        #expect(try tsr(["info", "loras/mine.safetensors"]).stdout.contains("newest:       v502 (version 502): an update is available"))
        #expect(try tsr(["db", "list"]).stdout.contains("loras/mine.safetensors  Pony  Pony Style / v501 [LORA] by tsr-maker  (update: v502)"))

        // Beside: a new name that says its version; the old name keeps the old bytes.
        let beside = try tsr(["update", "loras/mine.safetensors"], environment: env)
        #expect(beside.status == 0, "\(beside.stdout)\(beside.stderr)")
        #expect(beside.stdout.contains("loras/mine.safetensors: v502 is loras/mine.v502.safetensors, beside it"), "\(beside.stdout)")
        #expect(try tsr(["info", "loras/mine.v502.safetensors", "--json"]).stdout.contains(try SHA256Hasher.digest(newer).rawValue))
        #expect(try tsr(["info", "loras/mine.safetensors", "--json"]).stdout.contains(try SHA256Hasher.digest(lora).rawValue))
        #expect(try tsr(["info", "loras/mine.safetensors"]).stdout.contains("v502 (version 502), which is here already"))
        #expect(try tsr(["outdated"]).stdout.contains("nothing newer found"), "the newer version is here now")

        // In place: the name points at the new content; the old blob waits for gc.
        // --all: only the Hugging Face name is still outdated (v502 of the LoRA is here now).
        let inPlace = try tsr(["update", "--all", "--replace"], environment: env)
        #expect(!inPlace.stdout.contains("loras/mine"), "\(inPlace.stdout)")
        #expect(inPlace.status == 0, "\(inPlace.stdout)\(inPlace.stderr)")
        #expect(try tsr(["info", "checkpoints/ckpt.safetensors", "--json"]).stdout.contains(try SHA256Hasher.digest(changed).rawValue))
        #expect(try tsr(["gc", "--dry-run"]).stdout.contains(try SHA256Hasher.digest(original).rawValue))
        #expect(try tsr(["outdated", "--refresh"], environment: env).stdout.contains("nothing newer found (3 names checked)"), "mine, mine.v502 and ckpt")
        // CivitAI that keeps answering 429 stops the asking, says so, and the cache answers.
        civitai.rateLimitNext(100)
        let limited = try tsr(["outdated", "--refresh"], environment: env.merging(["TSR_FETCH_ATTEMPTS": "2"]) { $1 })
        #expect(limited.status == 1 && limited.stderr.contains("run `tsr outdated --refresh` again later"), "\(limited.stdout)\(limited.stderr)")
        #expect(limited.stdout.contains("nothing newer found"), "\(limited.stdout)")
        civitai.rateLimitNext(0)

        // Bad input: nothing named, or a name that does not exist.
        #expect(try tsr(["update"]).status == 64)
        let unknown = try tsr(["update", "loras/nothing.safetensors"], environment: env)
        #expect(unknown.status == 1 && unknown.stderr.contains("loras/nothing.safetensors: no such name"))
    }
}
