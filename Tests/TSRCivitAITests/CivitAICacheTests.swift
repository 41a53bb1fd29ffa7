import Foundation
import Testing
import TSRCivitAI
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRTesting

/// The CivitAI cache against an emulator serving the real responses of shared/fixtures/civitai,
/// unchanged. Expected rows are computed from the same JSON, so every field is checked.
@Suite struct CivitAICacheTests {
    static let modelFixtures = [
        "model-1102-wiki2023.json", "model-1231067.json", "model-1580878.json", "models-item-1394-2023.json", "models-item-58390-2023.json",
    ]

    let dir: TempDirectory
    let library: Library
    let civitai: CivitAIFixture

    init() throws {
        dir = try TempDirectory("tsr-civitai")
        library = try Library(home: dir.path + "/home")
        civitai = try CivitAIFixture()
    }

    func client(_ base: String? = nil) -> CivitAIClient {
        var settings = FetchSettings()
        settings.civitaiBase = base ?? civitai.base
        settings.backoffBase = .milliseconds(10)
        settings.maxAttempts = 3
        return CivitAIClient(settings: settings, credentials: Credentials(), registry: library.registry)
    }

    static func json(_ name: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(try CivitAIFixture.sharedFixture(name).utf8)) as? [String: Any])
    }

    /// Every model fixture and every item of the list fixture, served as `/models/{id}`.
    func serveAllModels() throws -> [[String: Any]] {
        var models: [[String: Any]] = []
        for name in Self.modelFixtures {
            let text = try CivitAIFixture.sharedFixture(name)
            let object = try Self.json(name)
            civitai.addModel(try #require(object["id"] as? Int), json: text)
            models.append(object)
        }
        let list = try Self.json("models-list-types-TextualInversion-limit3-wiki2023.json")
        for item in try #require(list["items"] as? [[String: Any]]) {
            let data = try JSONSerialization.data(withJSONObject: item)
            civitai.addModel(try #require(item["id"] as? Int), json: String(decoding: data, as: UTF8.self))
            models.append(item)
        }
        return models
    }

    func count(_ sql: String, _ arguments: [any DatabaseValueConvertibleLike] = []) throws -> Int {
        try library.registry.count(sql, arguments.map { $0.value })
    }

    @Test func everyFixtureIsCachedWithEveryVersionFileHashWordTagAndImage() throws {
        defer { dir.remove() }
        let models = try serveAllModels()
        for model in models { try client().cacheModel(Int64(try #require(model["id"] as? Int))) }
        #expect(try count("SELECT COUNT(*) FROM models") == models.count)
        for model in models {
            let id = try #require(model["id"] as? Int)
            let versions = model["modelVersions"] as? [[String: Any]] ?? []
            #expect(try count("SELECT COUNT(*) FROM model_versions mv JOIN models m ON m.id = mv.model_id WHERE m.civitai_id = ?", [id]) == versions.count)
            for (index, version) in versions.enumerated() {
                let vid = try #require(version["id"] as? Int)
                #expect(try count("SELECT version_index FROM model_versions WHERE civitai_id = ?", [vid]) == index, "modelVersions[0] is the newest")
                let words = (version["trainedWords"] as? [String] ?? []).filter { !$0.isEmpty }
                #expect(try library.registry.triggerWords(versionId: Int64(vid)) == words, "trigger words in order")
                let files = version["files"] as? [[String: Any]] ?? []
                #expect(try count("SELECT COUNT(*) FROM version_files vf JOIN model_versions mv ON mv.id = vf.version_id WHERE mv.civitai_id = ?", [vid]) == files.count)
                for file in files {
                    for (type, value) in file["hashes"] as? [String: String] ?? [:] {
                        #expect(try count("SELECT COUNT(*) FROM file_hashes WHERE hash_type = ? AND hash_value = ?", [type, value.uppercased()]) >= 1)
                    }
                }
                let images = version["images"] as? [[String: Any]] ?? []
                #expect(try count("SELECT COUNT(*) FROM version_images vi JOIN model_versions mv ON mv.id = vi.version_id WHERE mv.civitai_id = ?", [vid]) == images.count)
                let prompts = images.compactMap { ($0["meta"] as? [String: Any])?["prompt"] as? String }
                let stored = try library.registry.examplePrompts(versionIds: [Int64(vid)]).compactMap { $0.params["prompt"] }
                #expect(stored == prompts, "every example prompt, in order (images without meta have none)")
            }
            let tags = (model["tags"] as? [Any] ?? []).compactMap { ($0 as? String) ?? (($0 as? [String: Any])?["name"] as? String) }
            #expect(try count("SELECT COUNT(*) FROM model_tags mt JOIN models m ON m.id = mt.model_id WHERE m.civitai_id = ?", [id]) == Set(tags).count)
            if let creator = (model["creator"] as? [String: Any])?["username"] as? String {
                #expect(try count("SELECT COUNT(*) FROM models m JOIN creators c ON c.id = m.creator_id WHERE m.civitai_id = ? AND c.username = ?", [id, creator]) == 1)
            }
        }
        // Drifting shapes are stored, not rejected: allowCommercialUse as string and as array.
        #expect(try count("SELECT COUNT(*) FROM models WHERE civitai_id = 1231067 AND allow_commercial_use LIKE '%,%'") == 1)
        #expect(try count("SELECT COUNT(*) FROM models WHERE civitai_id = 1394 AND allow_commercial_use IS NOT NULL") == 1)
    }

    @Test func recachingUpdatesEveryFieldAndEveryVersion() throws {
        defer { dir.remove() }
        func model(name: String, words: [String], versions: [Int]) -> String {
            let list = versions.map { """
                {"id": \($0), "name": "v\($0)-\(name)", "baseModel": "SDXL 1.0", "trainedWords": \(words.debugDescription),
                 "files": [{"id": \($0 * 10), "name": "f\($0).safetensors", "hashes": {"SHA256": "\(String(repeating: "a", count: 63))\($0 % 10)"}, "primary": true}],
                 "images": []}
                """ }
            return #"{"id": 77, "name": "\#(name)", "type": "LORA", "creator": {"username": "maker"}, "tags": ["a"], "stats": null, "modelVersions": [\#(list.joined(separator: ","))]}"#
        }
        civitai.addModel(77, json: model(name: "First", words: ["one", "two"], versions: [2, 1]))
        try client().cacheModel(77)
        civitai.addModel(77, json: model(name: "Second", words: ["three"], versions: [3, 2]))
        try client().cacheModel(77)
        #expect(try count("SELECT COUNT(*) FROM models WHERE name = 'Second'") == 1)
        #expect(try library.registry.triggerWords(versionId: 2) == ["three"], "an existing version is updated, not kept stale")
        #expect(try count("SELECT COUNT(*) FROM model_versions WHERE civitai_id = 2 AND name = 'v2-Second' AND version_index = 1") == 1)
        #expect(try count("SELECT COUNT(*) FROM model_versions WHERE civitai_id = 1 AND version_index IS NULL") == 1, "a version no longer listed is marked")
        #expect(try library.registry.searchModels(query: "second", type: nil, baseModel: nil, limit: 5).map(\.civitaiId) == [77])
        #expect(try library.registry.searchModels(query: "first", type: nil, baseModel: nil, limit: 5).isEmpty, "the index follows")
    }

    @Test func linkFindsRemembersMissesBacksOffAndFillsInTheWholeModel() throws {
        defer { dir.remove() }
        let known = try #require(Digest(rawValue: "9753338ab693ca82bf89ed77a5d1912879e40051463ec6e330fb9866ce798668"))
        let unknown = try SHA256Hasher.digest(Array("not on civitai".utf8))
        civitai.addByHash(known.rawValue, json: try CivitAIFixture.sharedFixture("version-1387174.json"))
        civitai.addModel(1231067, json: try CivitAIFixture.sharedFixture("model-1231067.json"))
        for digest in [known, unknown] {
            _ = try library.registerRemote(digest: digest, size: 1, folder: "loras", path: "\(digest.short).safetensors", replace: false, url: "https://example.org/x", kind: "url", prefix: nil)
        }
        #expect(try library.registry.civitaiLinkCandidates(retryUnknown: false).count == 2)
        civitai.rateLimitNext(1)
        #expect(try client().link(known) == .linked(modelId: 1231067, versionId: 1387174, complete: true), "a 429 waits and asks again")
        #expect(try client().link(unknown) == .notFound)
        #expect(try library.registry.civitaiLinkCandidates(retryUnknown: false).isEmpty, "a 404 is remembered")
        #expect(try library.registry.civitaiLinkCandidates(retryUnknown: true) == [unknown])
        let link = try #require(try library.registry.civitaiLink(known))
        #expect(link.creator == "PixelPawsAI" && link.baseModel == "Flux.1 D" && link.type == "LORA")
        #expect(try library.registry.triggerWords(versionId: link.versionId) == ["ppstorybook"])
        let prompt = try #require(try library.registry.examplePrompts(versionIds: [link.versionId]).first)
        for key in ["prompt", "sampler", "steps", "cfgScale", "seed"] { #expect(prompt.params[key] != nil, "prompt lacks \(key)") }

        // The mount's views read the link.
        let snapshot = try library.registry.mountSnapshot()
        let entry = try #require(snapshot.entries.first { $0.sha256 == known })
        #expect(entry.creator == "PixelPawsAI" && entry.baseModel == "Flux.1 D")
    }

    @Test func aServiceThatCannotBeReachedIsAClearErrorAndKeepsWhatWasDone() throws {
        defer { dir.remove() }
        let closed = try FixtureServer { _, _ in }
        let base = closed.localhostURL
        closed.stop()
        let digest = try SHA256Hasher.digest(Array("x".utf8))
        #expect { try client(base).link(digest) } throws: { error in
            guard let error = error as? CivitAIError else { return false }
            return error.isUnreachable && "\(error)".contains("localhost")
        }
        #expect(try library.registry.civitaiLinkCandidates(retryUnknown: false).isEmpty == true)
    }

    @Test func searchRanksNamesTagsCreatorsAndTriggerWordsOffline() throws {
        defer { dir.remove() }
        let models = try serveAllModels()
        for model in models { try client().cacheModel(Int64(try #require(model["id"] as? Int))) }
        let byName = try library.registry.searchModels(query: "synthwave", type: nil, baseModel: nil, limit: 10)
        #expect(byName.first?.civitaiId == 1102)
        let byWord = try library.registry.searchModels(query: "ppstory", type: nil, baseModel: nil, limit: 10)
        #expect(byWord.map(\.civitaiId) == [1231067], "trigger word prefixes match")
        let byCreator = try library.registry.searchModels(query: "justmaier", type: nil, baseModel: nil, limit: 10)
        #expect(byCreator.map(\.civitaiId).contains(1102))
        let loras = try library.registry.searchModels(query: nil, type: "lora", baseModel: nil, limit: 50)
        #expect(Set(loras.map(\.civitaiId)) == [1231067, 1580878, 58390])
        let illustrious = try library.registry.searchModels(query: nil, type: nil, baseModel: "Illustrious", limit: 50)
        #expect(illustrious.map(\.civitaiId) == [1580878])
        #expect(try library.registry.searchModels(query: "\"; DROP TABLE models; --", type: nil, baseModel: nil, limit: 5).isEmpty)
    }
}

/// A value for the test's small SQL helper.
protocol DatabaseValueConvertibleLike { var value: String { get } }
extension Int: DatabaseValueConvertibleLike { var value: String { String(self) } }
extension String: DatabaseValueConvertibleLike { var value: String { self } }

extension CivitAICacheTests {
    @Test(arguments: ["version-1255556-with-creator.json", "version-1318-wiki2023.json", "version-1387174.json"])
    func everyVersionFixtureLinksByHash(_ name: String) throws {
        defer { dir.remove() }
        let object = try Self.json(name)
        let files = try #require(object["files"] as? [[String: Any]])
        let sha = try #require(((files.first?["hashes"] as? [String: String])?["SHA256"]).flatMap { Digest(rawValue: $0.lowercased()) })
        civitai.addByHash(sha.rawValue, json: try CivitAIFixture.sharedFixture(name))
        // The model itself is not served: the version alone must be enough to link.
        #expect(try client().link(sha) == .linked(modelId: Int64(try #require(object["modelId"] as? Int)), versionId: Int64(try #require(object["id"] as? Int)), complete: false))
        let link = try #require(try library.registry.civitaiLink(sha))
        #expect(link.baseModel == object["baseModel"] as? String)
        #expect(link.type == (object["model"] as? [String: Any])?["type"] as? String)
        #expect(link.creator == (object["creator"] as? [String: Any])?["username"] as? String, "a creator key, where a client added one, is kept")
        #expect(try library.registry.triggerWords(versionId: link.versionId) == (object["trainedWords"] as? [String] ?? []))
        let prompts = (object["images"] as? [[String: Any]] ?? []).compactMap { ($0["meta"] as? [String: Any])?["prompt"] as? String }
        #expect(try library.registry.examplePrompts(versionIds: [link.versionId]).compactMap { $0.params["prompt"] } == prompts)
    }
}

extension CivitAICacheTests {
    /// Issue 18: a by-hash answer was counted as a link without looking at it. One whose files
    /// do not carry the hash asked for links nothing and caches nothing: not on CivitAI.
    @Test func aByHashAnswerWithoutTheHashAskedForIsNoLink() throws {
        defer { dir.remove() }
        let asked = try SHA256Hasher.digest(Array("a file CivitAI answers for with another".utf8))
        civitai.addByHash(asked.rawValue, json: try CivitAIFixture.sharedFixture("version-1387174.json"))
        _ = try library.registerRemote(digest: asked, size: 1, folder: "loras", path: "x.safetensors", replace: false, url: "https://example.org/x", kind: "url", prefix: nil)
        #expect(try client().link(asked) == .notFound)
        #expect(try library.registry.civitaiLink(asked) == nil, "nothing links it")
        #expect(try library.registry.civitaiLinkCandidates(retryUnknown: true) == [asked], "asked again with --retry-unknown")
        #expect(try library.registry.civitaiLinkCandidates(retryUnknown: false).isEmpty)
    }
}
