import Foundation
import Testing
import TSRCivitAI
import TSRFetch
import TSRLibrary
import TSRRegistry
@testable import TSRServer
import TSRStore
import TSRTesting

/// The API against a live server on port 0, with the Hugging Face emulator behind it.
@Suite(.serialized) struct APITests {
    @Test func seedDownloadStreamsProgressThenCompletesAndTheLibraryShowsIt() async throws {
        try await onAPIThreads {
            let bytes = safetensors(metadata: ["ss_base_model_version": "sdxl_base_v1-0"], payload: 6 << 20)
            let hf = try HuggingFaceFixture(files: ["org/repo/styles/ink.safetensors": .init(bytes: bytes)])
            let api = try await APIHarness(settings: APIHarness.settings(hf: hf))
            let digest = try SHA256Hasher.digest(bytes).rawValue
            let reply = try await api.request("POST", "/models/download", json: [
                "url": "https://huggingface.co/org/repo/resolve/main/styles/ink.safetensors?download=true", "folder": "loras", "sha256": digest,
            ])
            #expect(reply.status == 200 && reply.headers["content-type"] == "application/x-ndjson")
            let lines = reply.lines
            let last = try #require(lines.last)
            #expect(last["status"] as? String == "completed" && last["sha256"] as? String == digest, "\(reply.text)")
            #expect(last["path"] as? String == "loras/ink.safetensors" && (last["total_bytes"] as? Int) == bytes.count)
            #expect(lines.dropLast().contains { $0["status"] as? String == "downloading" && $0["total_bytes"] as? Int == bytes.count })
            #expect(lines.dropLast().allSatisfy { $0["status"] as? String == "downloading" })
            #expect(api.library.store.contains(try #require(Digest(rawValue: digest))))

            let list = try await api.request("GET", "/models?folder=loras").json
            let models = try #require(list["models"] as? [[String: Any]])
            #expect(list["total"] as? Int == 1 && models.first?["sha256"] as? String == digest && models.first?["state"] as? String == "present")
            #expect(models.first?["base_model"] as? String == "SDXL 1.0")
            #expect((list["facets"] as? [String: Any])?["folders"] as? [String: Int] == ["loras": 1])

            let detail = try await api.request("GET", "/models/\(digest)").json
            #expect((detail["names"] as? [[String: String]]) == [["folder": "loras", "path": "ink.safetensors"]])
            #expect((detail["metadata"] as? [String: String])?["ss_base_model_version"] == "sdxl_base_v1-0" && detail["tensor_count"] as? Int == 1)
            #expect((detail["sources"] as? [[String: String]])?.first?["url"] == "https://huggingface.co/org/repo/resolve/main/styles/ink.safetensors")
            #expect(detail["pinned"] as? Bool == false && models.first?["pinned"] as? Bool == false)
            // A pin (tsr pin) shows in both bodies.
            try api.library.registry.pin([try #require(Digest(rawValue: digest))])
            #expect(try await api.request("GET", "/models/\(digest)").json["pinned"] as? Bool == true)
            #expect((try await api.request("GET", "/models").json["models"] as? [[String: Any]])?.first?["pinned"] as? Bool == true)
            let stats = try await api.request("GET", "/stats").json
            #expect(stats["blobs"] as? Int == 1 && stats["aliases"] as? Int == 1 && stats["bytes_stored"] as? Int == bytes.count)
            #expect(try await api.request("GET", "/downloads").json["downloads"].flatMap { $0 as? [[String: Any]] }?.first?["state"] as? String == "completed")
            await api.stop()
        }
    }

    @Test func aGatedFileAsksForTheKeyTheKeyWorksForThatRequestAndIsNeverWritten() async throws {
        try await onAPIThreads {
            let bytes = safetensors(payload: 300_000)
            let hf = try HuggingFaceFixture(files: ["org/gated/m.safetensors": .init(bytes: bytes, gated: true)])
            let api = try await APIHarness(settings: APIHarness.settings(hf: hf))
            let refused = try await api.request("POST", "/models/download", json: ["url": "hf://org/gated/m.safetensors", "folder": "checkpoints"])
            // A key that is needed is an error line of the 200 stream, saying which service's key
            // (docs/API.md), not a 403: the stream has started before the source answers.
            #expect(refused.status == 200)
            let error = try #require(refused.lines.last)
            #expect(error["status"] as? String == "error" && error["requires_auth"] as? String == "huggingface", "\(refused.text)")
            let listed = try await api.request("GET", "/downloads")
            #expect(listed.text.contains("\"requires_auth\":\"huggingface\"") || listed.text.contains("\"requires_auth\" : \"huggingface\""), "\(listed.text)")
            #expect((error["error"] as? String)?.contains("send huggingface_token") == true, "\(refused.text)")
            #expect((error["error"] as? String)?.contains("--token-stdin") == false)

            let done = try await api.request("POST", "/models/download", json: [
                "url": "hf://org/gated/m.safetensors", "folder": "checkpoints", "huggingface_token": hf.token,
            ])
            #expect(done.lines.last?["status"] as? String == "completed", "\(done.text)")
            // The key was not kept: the next request without it is refused again.
            try api.library.registry.setState(try SHA256Hasher.digest(bytes), .remote)
            _ = try? FileManager.default.removeItem(atPath: api.library.layout.blobPath(try SHA256Hasher.digest(bytes)))
            let again = try await api.request("POST", "/models/download", json: ["url": "hf://org/gated/m.safetensors", "folder": "checkpoints"])
            #expect(again.lines.last?["status"] as? String == "error")
            #expect(!api.everyByte().contains(hf.token), "the key is nowhere in the home")
            #expect(hf.cdn.requests.allSatisfy { $0.header("authorization") == nil }, "the key goes to its own origin only")
            await api.stop()
        }
    }

    @Test func checkDependenciesAnswersInTheSeedsShape() async throws {
        try await onAPIThreads {
            let here = safetensors(payload: 4096)
            let api = try await APIHarness()
            let dir = try TempDirectory("tsr-api-files")
            defer { dir.remove() }
            _ = try dir.write("models/checkpoints/base.safetensors", here)
            var options = ImportOptions()
            options.mode = .copy
            _ = try Importer(library: api.library).run(root: dir.path + "/models", options: options)
            let hereDigest = try SHA256Hasher.digest(here).rawValue
            let missingDigest = String(repeating: "ab", count: 32)
            let reply = try await api.request("POST", "/models/check-dependencies", json: [
                "dependencies": [
                    "checkpoints": [
                        ["filename": "base.safetensors", "sha256": hereDigest, "size": here.count, "urls": []],
                        ["filename": "other-name.safetensors", "sha256": hereDigest, "size": here.count, "urls": []],
                    ],
                    "loras": [["filename": "new.safetensors", "sha256": missingDigest, "size": 1234, "urls": ["https://huggingface.co/o/r/resolve/main/new.safetensors"]]],
                ],
            ])
            #expect(reply.status == 200)
            let json = reply.json
            let existing = try #require(json["existing"] as? [[String: Any]])
            let missing = try #require(json["missing"] as? [[String: Any]])
            #expect(Set(existing.compactMap { $0["action"] as? String }) == ["use_existing", "symlink"])
            #expect(missing.count == 1 && missing.first?["filename"] as? String == "new.safetensors" && missing.first?["action"] as? String == "download")
            #expect(json["total_download_size"] as? Int == 1234 && json["total_saved_size"] as? Int == 2 * here.count)
            // Nothing was stored by a check.
            #expect(try api.library.registry.blob(try #require(Digest(rawValue: missingDigest))) == nil)
            let bad = try await api.request("POST", "/models/check-dependencies", json: ["nodes": []])
            #expect(bad.status == 400 && (bad.json["error"] as? String)?.contains("dependencies") == true)
            await api.stop()
        }
    }

    @Test func aWorkflowIsAddedCheckedAndPulledWithLiveEvents() async throws {
        try await onAPIThreads {
            let model = safetensors(payload: 2 << 20)
            let hf = try HuggingFaceFixture(files: ["org/repo/vae/tiny_vae.safetensors": .init(bytes: model)])
            let api = try await APIHarness(settings: APIHarness.settings(hf: hf))
            let workflow: [String: Any] = [
                "nodes": [["id": 1, "type": "VAELoader", "properties": ["models": [
                    ["name": "tiny_vae.safetensors", "url": "https://huggingface.co/org/repo/resolve/main/vae/tiny_vae.safetensors", "directory": "vae"],
                ]]]],
            ]
            let preview = try await api.request("POST", "/workflows/check", json: workflow).json
            #expect((preview["missing"] as? [[String: Any]])?.count == 1 && (preview["existing"] as? [Any])?.isEmpty == true)
            #expect(try api.library.registry.workflows().isEmpty, "a check stores nothing")

            let added = try await api.request("POST", "/workflows?name=portrait", json: workflow)
            #expect(added.status == 201 && added.json["format"] as? String == "ui", "\(added.text)")
            #expect(((added.json["check"] as? [String: Any])?["total_download_size"] as? Int) == model.count)
            let twice = try await api.request("POST", "/workflows?name=portrait", json: workflow)
            #expect(twice.status == 409 && (twice.json["error"] as? String)?.contains("replace=true") == true)
            let listed = try await api.request("GET", "/workflows").json["workflows"] as? [[String: Any]]
            #expect(listed?.first?["name"] as? String == "portrait" && listed?.first?["missing"] as? Int == 1)

            // Watch the event stream while the pull runs.
            let digest = try SHA256Hasher.digest(model).rawValue
            let stream = Task(executorPreference: ThreadExecutor.api) { [api] in
                try await onThread { try api.raw("GET /downloads/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", until: { $0.contains("\"state\":\"completed\"") }) }
            }
            try await Task.sleep(for: .milliseconds(300))
            let pull = try await api.request("POST", "/workflows/portrait/pull")
            #expect(pull.status == 202)
            let started = try #require(pull.json["downloads"] as? [[String: Any]])
            #expect(started.count == 1 && started.first?["workflow"] as? String == "portrait")
            let events = try await stream.value
            #expect(events.hasPrefix("HTTP/1.1 200") && events.lowercased().contains("content-type: text/event-stream"))
            #expect(events.contains("event: download\ndata: {") && events.contains("\"sha256\":\"\(digest)\""))
            #expect(events.contains("\"state\":\"downloading\""), "progress events arrive before the end")

            let check = try await api.request("GET", "/workflows/portrait/check").json
            #expect((check["existing"] as? [[String: Any]])?.first?["filename"] as? String == "tiny_vae.safetensors")
            #expect((check["missing"] as? [Any])?.isEmpty == true)
            #expect(try await api.request("GET", "/workflows/none/check").status == 404)
            await api.stop()
        }
    }

    @Test func aStalledDownloadIsCancelledPromptlyAndItsBytesKept() async throws {
        try await onAPIThreads {
            let bytes = testBytes(4 << 20)
            let release = Flag()
            let stalled = try FixtureServer { request, connection in
                if request.method == "HEAD" { return connection.respond(200, headers: [("Content-Length", "\(bytes.count)")]) }
                // The registration's header read (a range) is answered; the download stalls.
                if request.header("range") != nil { return connection.serveFile(bytes, request: request, etag: "\"v1\"") }
                _ = connection.head(200, [("Content-Length", "\(bytes.count)"), ("ETag", "\"v1\"")])
                _ = connection.write(Array(bytes.prefix(1 << 20)))
                for _ in 0..<400 where !release.isSet { usleep(50_000) }
            }
            defer {
                release.set(true)
                stalled.stop()
            }
            var settings = APIHarness.settings()
            settings.limits.lowSpeedTime = .seconds(60)
            let api = try await APIHarness(settings: settings)
            let digest = try SHA256Hasher.digest(bytes).rawValue
            let download = Task(executorPreference: ThreadExecutor.api) { [api] in
                try await api.request("POST", "/models/download", json: ["url": stalled.localhostURL + "/big.safetensors", "folder": "loras", "sha256": digest])
            }
            var id = 0
            #expect(try await api.eventually {
                let list = try await api.request("GET", "/downloads").json["downloads"] as? [[String: Any]] ?? []
                guard let entry = list.first, entry["state"] as? String == "downloading", (entry["bytes"] as? Int ?? 0) >= 1 << 20 else { return false }
                id = entry["id"] as? Int ?? 0
                return true
            })
            let asked = ContinuousClock.now
            let cancelled = try await api.request("DELETE", "/downloads/\(id)")
            #expect(cancelled.status == 200)
            let reply = try await download.value
            #expect(ContinuousClock.now - asked < .seconds(5), "cancelled without waiting for the stall timeout")
            #expect(reply.lines.last?["status"] as? String == "error" && (reply.lines.last?["error"] as? String) == "cancelled")
            let after = try await api.request("GET", "/downloads").json["downloads"] as? [[String: Any]]
            #expect(after?.first?["state"] as? String == "cancelled", "\(after ?? [])")
            #expect(try await api.request("DELETE", "/downloads/\(id)").status == 409)
            #expect(try await api.request("DELETE", "/downloads/9999").status == 404)
            #expect(api.library.store.partialSize(digest) == 1 << 20, "the bytes so far are kept for a resume")
            #expect(try api.library.registry.blob(try #require(Digest(rawValue: digest)))?.state == .remote)
            await api.stop()
        }
    }

    @Test func aLinkedModelShowsItsCivitAIInfoTriggerWordsAndPrompts() async throws {
        try await onAPIThreads {
            let api = try await APIHarness()
            let json = try JSONSerialization.jsonObject(with: Data(try CivitAIFixture.sharedFixture("version-1255556-with-creator.json").utf8)) as! [String: Any]
            let cached = try #require(CivitAIMapping.versionResponse(json))
            try api.library.registry.cacheModel(cached)
            let digest = try #require(Digest(rawValue: "3202778c3ebe5cf7ebe5fc51561deae8611f4362036eb7c02efa033c705e6240"))
            _ = try api.library.registerRemote(
                digest: digest, size: 39_760_704, folder: "loras", path: "whimsy.safetensors", replace: false, url: "https://civitai.com/api/download/models/1255556",
                kind: "civitai", prefix: nil)
            let other = try #require(Digest(rawValue: String(repeating: "cd", count: 32)))
            _ = try api.library.registerRemote(
                digest: other, size: 10, folder: "checkpoints", path: "plain.safetensors", replace: false, url: "https://huggingface.co/o/r/resolve/main/plain.safetensors",
                kind: "huggingface", prefix: nil)

            let detail = try await api.request("GET", "/models/\(digest.rawValue)").json
            let civitai = try #require(detail["civitai"] as? [String: Any])
            #expect(civitai["creator"] as? String == "PixelPawsAI" && civitai["model_name"] as? String == "Enchanted Whimsy style (Flux)")
            // Only this version is cached: no newer one, so no update (the field is always there).
            #expect(civitai["update_available"] as? Bool == false && civitai["version_id"] as? Int == 1255556, "\(civitai)")
            #expect(detail["base_model"] as? String == "Flux.1 D" && detail["state"] as? String == "remote")
            #expect(detail["trigger_words"] as? [String] == ["in the style of ppWhimsy"])
            let prompts = try #require(detail["example_prompts"] as? [[String: Any]])
            #expect(!prompts.isEmpty && ((prompts.first?["params"] as? [String: String])?["prompt"]?.isEmpty == false))

            // Filters: creator, base, state, text, folder; unknown for models without a link.
            func names(_ query: String) async throws -> [String] {
                let models = try await api.request("GET", "/models?\(query)").json["models"] as? [[String: Any]] ?? []
                return models.compactMap { ($0["names"] as? [[String: String]])?.first?["path"] }
            }
            #expect(try await names("creator=pixelpawsai") == ["whimsy.safetensors"])
            #expect(try await names("creator=unknown") == ["plain.safetensors"])
            #expect(try await names("base=Flux.1%20D") == ["whimsy.safetensors"])
            #expect(try await names("text=enchanted") == ["whimsy.safetensors"])
            #expect(try await names("text=PLAIN") == ["plain.safetensors"])
            #expect(try await names("folder=checkpoints") == ["plain.safetensors"])
            #expect(try await names("state=present").isEmpty)
            #expect(try await names("limit=1&offset=1") == ["whimsy.safetensors"])
            let facets = try await api.request("GET", "/models").json["facets"] as? [String: [String: Int]]
            #expect(facets?["creators"] == ["PixelPawsAI": 1, "unknown": 1] && facets?["base_models"]?["Flux.1 D"] == 1)
            await api.stop()
        }
    }

    /// A path the API has, asked with a method it does not take: 405, and `Allow` lists exactly
    /// the methods the OpenAPI document gives that path (a literal path wins over a template).
    @Test func anUndeclaredMethodOnAKnownPathIs405WithAllow() async throws {
        try await onAPIThreads {
            let api = try await APIHarness()
            let cases: [(String, String, String)] = [
                ("TRACE", "/stats", "GET"), ("DELETE", "/models", "GET"), ("PUT", "/models/download", "POST"),
                ("GET", "/downloads/events", "GET"), ("POST", "/downloads/events", "GET"), ("GET", "/downloads/7", "DELETE"),
                ("PATCH", "/workflows", "GET, POST"),
            ]
            for (method, path, allowed) in cases where !(method == "GET" && path == "/downloads/events") {
                let reply = try await api.request(method, path)
                #expect(reply.status == 405 && reply.headers.first(where: { $0.key.lowercased() == "allow" })?.value == allowed, "\(method) \(path): \(reply.status) \(reply.headers)")
                #expect((reply.json["error"] as? String)?.contains("is not supported on \(path)") == true)
            }
            #expect(try await api.request("TRACE", "/nowhere").status == 404, "an unknown path stays 404")
            await api.stop()
        }
    }

    @Test func badRequestsGetAJSONErrorThatSaysWhatIsWrong() async throws {
        try await onAPIThreads {
            let api = try await APIHarness()
            let cases: [(String, String, Any?, Int, String)] = [
                ("GET", "/models/zzz", nil, 400, "not a SHA-256"),
                ("GET", "/models/" + String(repeating: "0", count: 64), nil, 404, "no model"),
                ("GET", "/models?state=bogus", nil, 400, "state must be"),
                ("GET", "/models?limit=0", nil, 400, "limit"),
                ("GET", "/models?folder=..", nil, 400, "folder"),
                ("GET", "/nowhere", nil, 404, "openapi.json"),
                ("POST", "/workflows", ["nodes": []], 400, "name the workflow"),
                ("POST", "/workflows?name=..", ["nodes": []], 400, "workflow name"),
                ("POST", "/workflows?name=a%2Fb", ["nodes": []], 400, "workflow name"),
                ("POST", "/workflows?name=ok", ["hello": 1], 400, "not a workflow"),
                ("POST", "/models/download", ["folder": "loras"], 400, "lacks \"url\""),
                ("POST", "/models/download", ["url": 5], 400, "wrong type"),
                ("POST", "/models/download", ["url": "ftp://example.org/x.safetensors"], 400, "not a URL"),
                ("POST", "/models/download", ["url": "https://evil.example/x.safetensors", "folder": "loras"], 403, "allowlist"),
                ("POST", "/models/download", ["url": "http://evil.example/x.safetensors", "folder": "loras"], 403, "allowlist"),
                ("POST", "/models/download", ["url": "hf://o/r/x.safetensors*"], 400, "not in a form this API takes"),
                ("POST", "/models/download", ["url": " hf://o/r/x.safetensors"], 400, "not in a form this API takes"),
                ("POST", "/models/download", ["url": "hf://o/r/x.safetensors", "folder": "../etc"], 400, "folder"),
                ("DELETE", "/downloads/abc", nil, 400, "not a download id"),
                // Refused before a download stream starts (issue 25).
                ("POST", "/models/download", ["url": "hf://o/r/x.safetensors", "folder": "loras", "filename": "../../x"], 400, "filename"),
                ("POST", "/models/download", ["url": "civitai:abc?token=SECRET-KEY-1234", "folder": "loras"], 400, "civitai:abc?…"),
                // What the OpenAPI document says is invalid is refused (schemathesis's negative checks).
                ("POST", "/models/download", ["url": "hf://o/r/x.safetensors", "sha256": ""], 400, "sha256"),
                ("GET", "/models?limit=", nil, 400, "limit"),
                ("GET", "/models?offset=9007199254740992", nil, 400, "offset"),
                ("POST", "/workflows/check?resolve=yes", ["nodes": []], 400, "resolve must be true or false"),
                ("POST", "/workflows?name=w&replace=1", ["nodes": []], 400, "replace must be true or false"),
                ("POST", "/models/check-dependencies", ["dependencies": ["loras": [["filename": "a.safetensors", "size": "big"]]]], 400, "size"),
                ("POST", "/models/check-dependencies", ["dependencies": ["loras": [["filename": "a.safetensors", "sha256": "abc"]]]], 400, "sha256"),
                ("POST", "/models/check-dependencies", ["dependencies": ["loras": [["filename": "a.safetensors", "size": -1]]]], 400, "size"),
                ("POST", "/models/check-dependencies", ["dependencies": ["loras": [["sha256": String(repeating: "a", count: 64)]]]], 400, "filename"),
            ]
            for (method, path, body, status, message) in cases {
                let reply = try await api.request(method, path, json: body)
                #expect(reply.status == status, "\(method) \(path): \(reply.status) \(reply.text)")
                #expect(reply.headers["content-type"] == "application/json", "\(method) \(path)")
                let error = reply.json["error"] as? String ?? ""
                #expect(!error.isEmpty && error.contains(message), "\(method) \(path): \(error)")
            }
            let leaked = try await api.request("POST", "/models/download", json: ["url": "civitai:1@x?token=SECRET-KEY-1234"])
            #expect(leaked.status == 400 && !leaked.text.contains("SECRET-KEY-1234"), "a key in a bad source is never echoed: \(leaked.text)")
            let notJSON = try await api.request("POST", "/models/download", body: Data("{".utf8))
            #expect(notJSON.status == 400 && (notJSON.json["error"] as? String)?.contains("not valid JSON") == true)
            #expect(try api.library.registry.workflows().isEmpty && (try api.library.registry.stats().aliases) == 0, "nothing was stored")
            await api.stop()
        }
    }

    /// The page builds workflow URLs with encodeURIComponent: names with a space or non-ASCII
    /// letters must reach the same workflow (issue 25).
    @Test func workflowNamesInPathsArePercentDecoded() async throws {
        try await onAPIThreads {
            let api = try await APIHarness()
            let workflow: [String: Any] = ["nodes": [["id": 1, "type": "VAELoader", "properties": ["models": [
                ["name": "v.safetensors", "url": "https://huggingface.co/org/repo/resolve/main/v.safetensors", "directory": "vae"],
            ]]]]]
            for (encoded, name) in [("my%20flow", "my flow"), ("f%C3%BCr", "für")] {
                let added = try await api.request("POST", "/workflows?name=\(encoded)", json: workflow)
                #expect(added.status == 201 && added.json["name"] as? String == name, "\(added.text)")
                let check = try await api.request("GET", "/workflows/\(encoded)/check")
                #expect(check.status == 200, "GET /workflows/\(encoded)/check: \(check.text)")
                let pull = try await api.request("POST", "/workflows/\(encoded)/pull")
                #expect(pull.status != 404, "POST /workflows/\(encoded)/pull: \(pull.text)")
            }
            let bad = try await api.request("GET", "/workflows/%ZZ/check")
            #expect(bad.status == 400 || bad.status == 404)
            await api.stop()
        }
    }

    /// Issue 17: a remote model whose last download failed says why and when the mount tries
    /// again, in the list and on its own page.
    @Test func aFailedDownloadIsShownWithItsNextTry() async throws {
        try await onAPIThreads {
            let api = try await APIHarness()
            let digest = try SHA256Hasher.digest(Array("remote".utf8))
            _ = try api.library.registerRemote(digest: digest, size: 6, folder: "loras", path: "r.safetensors", replace: false, url: "https://example.org/r", kind: "url", prefix: nil)
            try api.library.registry.recordFetchFailure(digest, reason: "HTTP 503 from example.org")
            let models = try await api.request("GET", "/models").json["models"] as? [[String: Any]] ?? []
            let error = models.first?["download_error"] as? String ?? ""
            #expect(error.hasPrefix("failed: HTTP 503 from example.org, next try at "), "\(models)")
            let detail = try await api.request("GET", "/models/\(digest.rawValue)").json
            #expect((detail["download_error"] as? String)?.contains("next try at") == true)
            await api.stop()
        }
    }

    /// Issue 25: ten concurrent 31 MiB bodies took the process from 55 MB to 962 MB. Each route
    /// takes what it needs (a download request 64 KiB, a workflow 16 MiB), a declared larger body
    /// is refused before it is read, and large bodies are parsed a few at a time.
    @Test func bodiesAreBoundedPerRouteAndLargeOnesTakeTurns() async throws {
        try await onAPIThreads {
            let api = try await APIHarness()
            let small = try await api.request("POST", "/models/download", body: Data(repeating: 0x20, count: 100 << 10))
            #expect(small.status == 413 && (small.json["error"] as? String)?.contains("64 KiB") == true, "\(small.text)")
            let huge = try await api.request("POST", "/workflows/check", body: Data(repeating: 0x20, count: 20 << 20))
            #expect(huge.status == 413 && (huge.json["error"] as? String)?.contains("16 MiB") == true, "\(huge.text)")
            // Declared too large: refused from the headers alone (the body is never sent).
            let declared = try api.raw("POST /workflows/check HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 33554432\r\nConnection: close\r\n\r\n")
            #expect(declared.hasPrefix("HTTP/1.1 413"), "\(declared.prefix(200))")
            // Large valid workflows, several at once: each is answered.
            let padding = String(repeating: "p", count: 3 << 20)
            let workflow: [String: Any] = ["nodes": [["id": 1, "type": "VAELoader", "widgets_values": [padding], "properties": ["models": [
                ["name": "v.safetensors", "url": "https://huggingface.co/o/r/resolve/main/v.safetensors", "directory": "vae"],
            ]]]]]
            let body = try JSONSerialization.data(withJSONObject: workflow)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<6 {
                    group.addTask { try await api.request("POST", "/workflows/check", body: body, headers: ["Content-Type": "application/json"]).status }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 6), "\(statuses)")
            await api.stop()
        }
    }

    @Test func onlyLocalHostsAndThisOriginWithoutATokenAndEverythingButThePageNeedsTheToken() async throws {
        try await onAPIThreads {
            let open = try await APIHarness()
            let evilHost = try open.raw("GET /stats HTTP/1.1\r\nHost: attacker.example:80\r\nConnection: close\r\n\r\n")
            #expect(evilHost.hasPrefix("HTTP/1.1 403") && evilHost.contains("localhost"))
            let local = try open.raw("GET /stats HTTP/1.1\r\nHost: localhost:\(open.port)\r\nConnection: close\r\n\r\n")
            #expect(local.hasPrefix("HTTP/1.1 200"))
            let crossOrigin = try open.raw(
                "POST /workflows/check HTTP/1.1\r\nHost: 127.0.0.1:\(open.port)\r\nOrigin: http://attacker.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            #expect(crossOrigin.hasPrefix("HTTP/1.1 403") && crossOrigin.contains("may not change anything"))
            let sameOrigin = try open.raw(
                "POST /workflows/check HTTP/1.1\r\nHost: 127.0.0.1:\(open.port)\r\nOrigin: http://127.0.0.1:\(open.port)\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            #expect(sameOrigin.hasPrefix("HTTP/1.1 400"), "reaches the route (which finds no workflow in {})")
            await open.stop()

            let token = "api-secret-token-123"
            let guarded = try await APIHarness(token: token)
            #expect(try await guarded.request("GET", "/stats").status == 401)
            #expect(try await guarded.request("GET", "/stats").headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try await guarded.request("GET", "/stats", headers: ["Authorization": "Bearer wrong-token-0000000"]).status == 401)
            #expect(try await guarded.request("GET", "/stats", headers: ["Authorization": "Bearer \(token)"]).status == 200)
            let page = try await guarded.request("GET", "/")
            #expect(page.status == 200 && page.headers["content-type"]?.hasPrefix("text/html") == true)
            #expect(try await guarded.request("GET", "/openapi.json").status == 200)
            await guarded.stop()

            #expect(throws: APIError.self) { try APIConfiguration.parse("0.0.0.0:8189", token: nil) }
            #expect(try APIConfiguration.parse("0.0.0.0:8189", token: "t").host == "0.0.0.0")
            #expect(try APIConfiguration.parse(":9000", token: nil).port == 9000)
            #expect(try APIConfiguration.parse("[::1]:9000", token: nil).host == "::1")
            #expect(throws: APIError.self) { try APIConfiguration.parse("localhost:http", token: nil) }
            #expect(throws: APIError.self) { try APIConfiguration.parse("70000", token: nil) }
        }
    }

    /// DNS rebinding (issue 25): a name that merely starts like a loopback address resolves
    /// wherever its owner likes, so only literal loopback addresses and localhost pass.
    @Test func theHostGuardAcceptsOnlyLiteralLoopbackAddressesAndLocalhost() async throws {
        let accepted = [
            "localhost", "LOCALHOST:8189", "LocalHost", "127.0.0.1", "127.0.0.1:80", "127.1.2.3:65535", "[::1]", "[::1]:8189",
            "[0:0:0:0:0:0:0:1]:1", "[::ffff:127.0.0.1]:9",
        ]
        let refused = [
            "127.evil.example:18189", "127.0.0.1.nip.io", "127.0.0.1.", "localhost.", "localhost.evil.example", "evil.localhost",
            "128.0.0.1", "0.0.0.0", "127.1", "127.000.000.001", "0x7f.0.0.1", "2130706433", "[::2]", "[::ffff:10.0.0.1]", "::1",
            "[::1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:99999", "127.0.0.1:80:80", "", ":8189", "[]:80", "[::1]x",
        ]
        for authority in accepted {
            let name = LoopbackHost.name(ofAuthority: authority)
            #expect(name.map(LoopbackHost.isLoopback) == true, "\(authority) is this machine")
        }
        for authority in refused {
            let name = LoopbackHost.name(ofAuthority: authority)
            #expect(name.map(LoopbackHost.isLoopback) != true, "\(authority) is not this machine")
        }
        #expect(!(try APIConfiguration.parse("127.evil.example:9000", token: "t").isLoopback))
        #expect(throws: APIError.self) { try APIConfiguration.parse("127.evil.example:9000", token: nil) }

        try await onAPIThreads {
            let api = try await APIHarness()
            let port = api.port
            for host in ["127.evil.example:\(port)", "127.0.0.1.nip.io:\(port)", "localhost.:\(port)", "127.0.0.1:\(port)x"] {
                let read = try api.raw("GET /stats HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n")
                #expect(read.hasPrefix("HTTP/1.1 403"), "GET with Host: \(host)")
                let write = try api.raw(
                    "POST /workflows?name=rebound HTTP/1.1\r\nHost: \(host)\r\nOrigin: http://\(host)\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                #expect(write.hasPrefix("HTTP/1.1 403"), "POST with Host and Origin \(host)")
            }
            for host in ["LOCALHOST:\(port)", "127.0.0.1:\(port)", "[::1]:\(port)"] {
                let read = try api.raw("GET /stats HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n")
                #expect(read.hasPrefix("HTTP/1.1 200"), "GET with Host: \(host)")
            }
            // The same origin in other letter case is the same origin.
            let sameOrigin = try api.raw(
                "POST /workflows/check HTTP/1.1\r\nHost: localhost:\(port)\r\nOrigin: http://LocalHost:\(port)\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            #expect(sameOrigin.hasPrefix("HTTP/1.1 400"), "reaches the route")
            #expect(try api.library.registry.workflows().isEmpty, "no rebound request changed the library")
            await api.stop()

            var configured = APIHarness.settings()
            configured.maxAttempts = 3
            let named = try await APIHarness(settings: configured, allowedHosts: ["Studio.Lan"])
            #expect(try named.raw("GET /stats HTTP/1.1\r\nHost: studio.lan:\(named.port)\r\nConnection: close\r\n\r\n").hasPrefix("HTTP/1.1 200"))
            #expect(try named.raw("GET /stats HTTP/1.1\r\nHost: studio.lan.evil.example\r\nConnection: close\r\n\r\n").hasPrefix("HTTP/1.1 403"))
            await named.stop()
        }
    }

    @Test func theOpenAPIDocumentListsEveryRoute() async throws {
        try await onAPIThreads {
            let api = try await APIHarness()
            let document = try await api.request("GET", "/openapi.json").json
            #expect((document["openapi"] as? String)?.hasPrefix("3.") == true)
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            let expected: [String: Set<String>] = [
                "/": ["get"], "/openapi.json": ["get"], "/stats": ["get"], "/models": ["get"], "/models/{sha256}": ["get"],
                "/models/check-dependencies": ["post"], "/models/download": ["post"], "/workflows": ["get", "post"],
                "/workflows/check": ["post"], "/workflows/{name}/check": ["get"], "/workflows/{name}/pull": ["post"],
                "/downloads": ["get"], "/downloads/events": ["get"], "/downloads/{id}": ["delete"],
            ]
            #expect(Set(paths.keys) == Set(expected.keys))
            var ids: [String] = []
            for (path, methods) in expected {
                let declared = Set((paths[path] ?? [:]).keys)
                #expect(declared.isSuperset(of: methods), "\(path)")
                for method in methods {
                    let operation = paths[path]?[method] as? [String: Any]
                    #expect(operation?["summary"] as? String != nil && operation?["responses"] != nil, "\(method) \(path)")
                    ids += [operation?["operationId"] as? String ?? "(none: \(method) \(path))"]
                }
            }
            // The document is the route table: every operation has a handler, every handler an
            // operation, and ids are unique.
            #expect(Set(ids).count == ids.count, "operation ids are unique: \(ids.sorted())")
            #expect(Set(ids) == Set(Routes.handlers.keys), "handlers without an operation or operations without a handler")
            #expect(OpenAPIDocument.operationList.map(\.id).sorted() == ids.sorted())
            #expect(OpenAPIDocument.operationList.first { $0.id == "checkStoredWorkflow" }?.routerPath == "/workflows/:name/check")
            // Every documented route answers something other than "no such endpoint".
            for path in ["/stats", "/models", "/workflows", "/downloads"] {
                #expect(try await api.request("GET", path).status == 200, "\(path)")
            }
            await api.stop()
        }
    }
}
