import Foundation
import Testing
import TSRFetch
import TSRLibrary
import TSRStore
import TSRTesting

@Suite struct SourceSpecTests {
    @Test(arguments: [
        ("hf://org/repo/sub/model.safetensors", SourceSpec.huggingFace(repo: "org/repo", revision: "main", path: "sub/model.safetensors")),
        ("hf://org/repo/model.safetensors@v1.0", .huggingFace(repo: "org/repo", revision: "v1.0", path: "model.safetensors")),
        ("https://huggingface.co/org/repo/resolve/main/split_files/vae/ae.safetensors?download=true",
         .huggingFace(repo: "org/repo", revision: "main", path: "split_files/vae/ae.safetensors")),
        ("https://huggingface.co/org/repo/blob/abc123/x.bin", .huggingFace(repo: "org/repo", revision: "abc123", path: "x.bin")),
        ("https://huggingface.co/datasets/org/data/resolve/main/a/b.pt", .huggingFace(repo: "datasets/org/data", revision: "main", path: "a/b.pt")),
        ("civitai:1231067", .civitai(modelId: 1231067, versionId: nil)),
        ("civitai:1231067@1387174", .civitai(modelId: 1231067, versionId: 1387174)),
        ("urn:air:flux1:lora:civitai:1231067@1387174", .civitai(modelId: 1231067, versionId: 1387174)),
        ("https://civitai.com/api/download/models/1387174", .civitai(modelId: nil, versionId: 1387174)),
        ("https://civitai.com/models/1231067?modelVersionId=1387174", .civitai(modelId: 1231067, versionId: 1387174)),
        ("https://example.org/files/m.safetensors", .url("https://example.org/files/m.safetensors")),
    ])
    func parses(_ input: String, _ expected: SourceSpec) throws {
        #expect(try SourceSpec.parse(input).0 == expected)
    }

    @Test func aTokenInACivitAIURLIsTakenOutAndNeverPartOfWhatIsStored() throws {
        let (spec, key) = try SourceSpec.parse("https://civitai.com/api/download/models/1387174?type=Model&token=sekrit")
        #expect(key == "sekrit" && !spec.canonicalURL.contains("sekrit"))
        let (plain, plainKey) = try SourceSpec.parse("https://example.org/m.bin?token=abc&x=1")
        #expect(plainKey == "abc" && plain.canonicalURL == "https://example.org/m.bin?x=1")
    }

    @Test(arguments: ["", "hf://org", "hf://org/repo", "hf://org/repo/../x", "civitai:abc", "civitai:1@x", "ftp://h/x", "just words", "hf://a/b\nc/d"])
    func rejects(_ input: String) {
        #expect(throws: FetchError.self) { try SourceSpec.parse(input) }
    }

    @Test func theEndpointsMapStoredSourcesToTheConfiguredHosts() throws {
        var settings = FetchSettings()
        settings.huggingFaceEndpoint = "http://localhost:9999"
        let (spec, _) = try SourceSpec.parse("https://huggingface.co/o/r/resolve/main/a b.safetensors")
        #expect(spec.downloadURL(settings: settings) == "http://localhost:9999/o/r/resolve/main/a%20b.safetensors")
        #expect(try SourceSpec.parse("http://localhost:9999/o/r/resolve/main/x.bin", settings: settings).0 == .huggingFace(repo: "o/r", revision: "main", path: "x.bin"))
    }

    @Test(arguments: [
        ("attachment; filename=\"../../etc/passwd\"", "passwd"),
        ("attachment; filename=\"/abs/model.safetensors\"", "model.safetensors"),
        ("attachment; filename*=UTF-8''caf%C3%A9%20lora.safetensors", "café lora.safetensors"),
        ("attachment; filename=\"a\\\\..\\\\b.ckpt\"", "b.ckpt"),
        ("attachment; filename=\"..\"", nil),
        ("attachment; filename=\"x\u{1}y.pt\"", "xy.pt"),
    ] as [(String, String?)])
    func contentDispositionNamesAreSanitised(_ header: String, _ expected: String?) {
        #expect(SourceResolver.fileName(fromDisposition: header) == expected)
    }

    @Test func longNamesAreCutToNameMaxKeepingTheExtension() {
        let long = String(repeating: "a", count: 4096) + ".safetensors"
        let trimmed = SourceResolver.sanitisedFileName(long)
        #expect(trimmed.map { $0.utf8.count <= 255 && $0.hasSuffix(".safetensors") } == true)
    }
}

/// Resolution against the Hugging Face and CivitAI emulators.
@Suite struct ResolverTests {
    let header = SafetensorsBuilder(metadata: ["modelspec.architecture": "stable-diffusion-xl-v1-base"], tensors: [("weight", "U8", [1_000_000])], fill: 3).bytes()

    func settings(hf: HuggingFaceFixture? = nil, civitai: CivitAIFixture? = nil) -> FetchSettings {
        var settings = FetchHome.settings()
        if let hf { settings.huggingFaceEndpoint = hf.endpoint }
        if let civitai { settings.civitaiBase = civitai.base }
        return settings
    }

    @Test func huggingFaceGivesDigestSizeAndHeaderWithoutDownloading() throws {
        let hf = try HuggingFaceFixture(files: ["org/repo/unet/model.safetensors": .init(bytes: header)])
        let resolver = SourceResolver(settings: settings(hf: hf), credentials: Credentials())
        let file = try resolver.resolve(try SourceSpec.parse("hf://org/repo/unet/model.safetensors").0)
        #expect(file.digest == (try SHA256Hasher.digest(header)) && file.size == Int64(header.count))
        #expect(file.fileName == "model.safetensors" && file.canonicalURL == "https://huggingface.co/org/repo/resolve/main/unet/model.safetensors")
        let prefix = try #require(file.prefix)
        // The header region: the header rounded up to 128 KiB, plus two readahead windows.
        #expect(prefix.count == HeaderRegion.unit + HeaderRegion.margin && Array(header.prefix(prefix.count)) == prefix)
        #expect(try Safetensors.parse(bytes: prefix, fileSize: Int64(header.count)).tensorCount > 0)
        let bodyBytes = hf.cdn.requests.filter { $0.method == "GET" }.compactMap { $0.header("range") }
        #expect(bodyBytes == ["bytes=0-131071", "bytes=131072-393215"], "only the header region was requested")
    }

    @Test func smallNonLFSFilesHaveNoDigestAndGatedReposNameHFToken() throws {
        let hf = try HuggingFaceFixture(files: [
            "org/repo/config.json": .init(bytes: Array("{}".utf8), lfs: false),
            "org/gated/m.safetensors": .init(bytes: header, gated: true),
        ])
        let resolver = SourceResolver(settings: settings(hf: hf), credentials: Credentials())
        let small = try resolver.resolve(.huggingFace(repo: "org/repo", revision: "main", path: "config.json"))
        #expect(small.digest == nil && small.size == 2, "a git blob ETag is not a SHA-256")
        #expect {
            try resolver.resolve(.huggingFace(repo: "org/gated", revision: "main", path: "m.safetensors"))
        } throws: { "\($0)".contains("HF_TOKEN") && "\($0)".contains("restricted") }
        #expect {
            try resolver.resolve(.huggingFace(repo: "org/repo", revision: "main", path: "missing.bin"))
        } throws: { "\($0)".contains("404") }
        let authorised = SourceResolver(settings: settings(hf: hf), credentials: Credentials(huggingFace: hf.token))
        #expect(try authorised.resolve(.huggingFace(repo: "org/gated", revision: "main", path: "m.safetensors")).digest != nil)
        #expect(hf.cdn.requests.allSatisfy { $0.header("authorization") == nil })
    }

    @Test func civitaiVersionsFromTheRealFixturesGiveHashNameAndFolder() throws {
        let civitai = try CivitAIFixture()
        civitai.addVersion(1387174, json: try CivitAIFixture.sharedFixture("version-1387174.json"))
        civitai.addModel(1580878, json: try CivitAIFixture.sharedFixture("model-1580878.json"))
        civitai.addDownload(1387174, .init(bytes: header, fileName: "pp-storybook_rank2_bf16.safetensors"))
        civitai.addDownload(1967584, .init(bytes: header, fileName: "newest.safetensors"))
        let resolver = SourceResolver(settings: settings(civitai: civitai), credentials: Credentials())
        let version = try resolver.resolve(.civitai(modelId: nil, versionId: 1387174))
        #expect(version.digest?.rawValue == "9753338ab693ca82bf89ed77a5d1912879e40051463ec6e330fb9866ce798668")
        #expect(version.fileName == "pp-storybook_rank2_bf16.safetensors" && version.folderHint == "loras" && version.size == Int64(header.count))
        let newest = try resolver.resolve(.civitai(modelId: 1580878, versionId: nil))
        #expect(newest.source == .civitai(modelId: 1580878, versionId: 1967584), "modelVersions[0] is the newest")
        #expect(newest.digest?.rawValue == "7c0b4b21dad60ce4e5a3f78d33261f4e556f94042e7fd19fbc8c734a80ec5a81" && newest.fileName == "newest.safetensors")
        #expect { try resolver.resolve(.civitai(modelId: nil, versionId: 5)) } throws: { "\($0)".contains("404") }
    }

    @Test func aKeyGatedCivitAIDownloadPassesItsMessageOn() throws {
        let civitai = try CivitAIFixture()
        civitai.addVersion(7, json: CivitAIFixture.versionJSON(id: 7, modelId: 70, type: "Checkpoint", fileName: "../../evil.safetensors", bytes: header))
        civitai.addDownload(7, .init(bytes: header, fileName: "../../../etc/evil.safetensors", requiresKey: true))
        let resolver = SourceResolver(settings: settings(civitai: civitai), credentials: Credentials())
        #expect {
            try resolver.resolve(.civitai(modelId: nil, versionId: 7))
        } throws: { "\($0)".contains("requires you to be logged in") && "\($0)".contains("CIVITAI_API_KEY") }
        let keyed = SourceResolver(settings: settings(civitai: civitai), credentials: Credentials(civitai: civitai.key))
        let file = try keyed.resolve(.civitai(modelId: nil, versionId: 7))
        #expect(file.fileName == "evil.safetensors" && file.folderHint == "checkpoints")
        #expect(civitai.storage.requests.allSatisfy { $0.header("authorization") == nil }, "the key stays on the API host")
    }
}

@Suite struct FetcherTests {
    @Test func eightConcurrentFetchesOfOneBlobMakeOneDownload() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let bytes = testBytes(2 << 20, seed: 5)
        let hf = try HuggingFaceFixture(files: ["o/r/m.bin": .init(bytes: bytes)])
        var settings = FetchHome.settings()
        settings.huggingFaceEndpoint = hf.endpoint
        let fetcher = Fetcher(library: home.library, settings: settings, credentials: Credentials())
        let digest = try SHA256Hasher.digest(bytes)
        _ = try home.library.registerRemote(
            digest: digest, size: Int64(bytes.count), folder: "checkpoints", path: "m.bin", replace: false,
            url: SourceSpec.huggingFace(repo: "o/r", revision: "main", path: "m.bin").canonicalURL, kind: "huggingface", prefix: nil)
        let results = Locked<[Bool]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let ok = (try? fetcher.fetch(digest))?.digest == digest
            results.withLock { $0.append(ok) }
        }
        #expect(results.withLock { $0 } == Array(repeating: true, count: 8))
        #expect(hf.cdn.requests.filter { $0.method == "GET" }.count == 1)
        #expect(try home.library.registry.blob(digest)?.state == .present)
    }

    /// Evictions racing fetches of the same blob (a lazy read, a `tsr pull`): whatever the
    /// interleaving, the registry calls the blob present exactly when its file is there, and a
    /// fetch that returns has the verified bytes in the store or hands them over whole.
    @Test func evictionsRacingFetchesOfOneBlobKeepRegistryAndStoreInStep() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let bytes = testBytes(1 << 20, seed: 8)
        let hf = try HuggingFaceFixture(files: ["o/r/race.bin": .init(bytes: bytes)])
        var settings = FetchHome.settings()
        settings.huggingFaceEndpoint = hf.endpoint
        let fetcher = Fetcher(library: home.library, settings: settings, credentials: Credentials())
        let digest = try SHA256Hasher.digest(bytes)
        _ = try home.library.registerRemote(
            digest: digest, size: Int64(bytes.count), folder: "checkpoints", path: "race.bin", replace: false,
            url: SourceSpec.huggingFace(repo: "o/r", revision: "main", path: "race.bin").canonicalURL, kind: "huggingface", prefix: nil)
        let cache = Cache(library: home.library)
        let failures = Locked<[String]>([])
        for _ in 0..<30 {
            DispatchQueue.concurrentPerform(iterations: 3) { worker in
                do {
                    if worker == 0 {
                        _ = try cache.evict(downTo: 0)
                    } else {
                        let committed = try fetcher.fetch(digest)
                        if committed.digest != digest { failures.withLock { $0.append("fetched \(committed.digest)") } }
                    }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
            let state = try home.library.registry.blob(digest)?.state
            let here = home.library.store.contains(digest)
            if (state == .present) != here { failures.withLock { $0.append("registry says \(state.map(\.rawValue) ?? "nothing"), file here: \(here)") } }
            if here, try readBytes(home.library.layout.blobPath(digest)) != bytes { failures.withLock { $0.append("other bytes in the store") } }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
    }

    @Test func aDownloadHeldByAnotherWriterIsWaitedForNotRepeated() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let bytes = testBytes(1 << 20, seed: 6)
        let digest = try SHA256Hasher.digest(bytes)
        let server = try FixtureServer { request, connection in connection.serveFile(bytes, request: request) }
        _ = try home.library.registerRemote(
            digest: digest, size: Int64(bytes.count), folder: "loras", path: "x.bin", replace: false,
            url: server.baseURL + "/x.bin", kind: "url", prefix: nil)
        // Another process's download: it holds the partial file's lock.
        let other = try home.library.store.resume(key: digest.rawValue, expected: digest, expectedSize: Int64(bytes.count))
        let fetcher = Fetcher(library: home.library, settings: FetchHome.settings(), credentials: Credentials())
        let done = DispatchSemaphore(value: 0)
        let outcome = Locked<Committed?>(nil)
        Thread {
            outcome.withLock { $0 = try? fetcher.fetch(digest) }
            done.signal()
        }.start()
        #expect(done.wait(timeout: .now() + 1) == .timedOut, "the fetch waits while the other writer works")
        try other.write(bytes)
        _ = try other.commit()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(outcome.withLock { $0 }?.digest == digest && server.requests.isEmpty)
    }
}
