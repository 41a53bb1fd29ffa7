import Foundation
import TSRLibrary
import Testing
import TSRFetch
import TSRStore
import TSRTesting

/// The download engine against a fixture server that misbehaves in the ways real servers do.
/// Every fault: a clear error, nothing wrong stored, and the next good attempt succeeds.
@Suite struct DownloaderTests {
    let payload = testBytes(3 << 20)
    var digest: Digest { try! SHA256Hasher.digest(payload) }

    @Test func downloadsVerifiesAndCommits() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let server = try FixtureServer { [payload] request, connection in connection.serveFile(payload, request: request, etag: "\"v1\"") }
        let committed = try home.downloader().download(
            DownloadRequest(url: server.baseURL + "/f.bin", expected: digest, expectedSize: Int64(payload.count)))
        #expect(committed.digest == digest && committed.size == Int64(payload.count))
        #expect(try readBytes(home.library.layout.blobPath(digest)) == payload)
        #expect(server.requests.first?.header("accept-encoding") == "identity")
        #expect(try home.library.registry.partialDownload(digest.rawValue) == nil)
    }

    @Test func wrongBytesAreQuarantinedAndNeverCommitted() throws {
        let home = try FetchHome()
        defer { home.remove() }
        var wrong = payload
        wrong[1000] ^= 0xFF
        let server = try FixtureServer { [wrong] request, connection in connection.serveFile(wrong, request: request) }
        #expect {
            try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: Int64(payload.count)))
        } throws: { error in
            guard case let .digestMismatch(_, expected, actual, quarantined)? = error as? FetchError else { return false }
            return expected == digest && actual == (try? SHA256Hasher.digest(wrong)) && quarantined != nil
                && "\(error)".contains(digest.rawValue) && "\(error)".contains(actual.rawValue)
        }
        #expect(!home.library.store.contains(digest))
        #expect(home.library.store.partialSize(digest.rawValue) == 0, "no partial bytes kept after a mismatch")
    }

    @Test func truncatedTransfersResumeWithRangeAndIfRange() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let calls = Counter()
        let server = try FixtureServer { [payload] request, connection in
            // The first answer stops after 1 MiB of the promised 3 MiB.
            let n = calls.next()
            connection.serveFile(payload, request: request, etag: "\"v1\"", limit: n == 1 ? 1 << 20 : nil)
        }
        let committed = try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: Int64(payload.count)))
        #expect(committed.digest == digest)
        let second = try #require(server.requests.dropFirst().first)
        #expect(second.header("range") == "bytes=\(1 << 20)-" && second.header("if-range") == "\"v1\"")
    }

    @Test func aPartialDownloadSurvivesARestartAndItsPrefixIsRehashed() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let healthy = Flag()
        let server = try FixtureServer { [payload] request, connection in
            connection.serveFile(payload, request: request, etag: "\"v1\"", limit: healthy.isSet ? nil : 1 << 20)
        }
        var settings = FetchHome.settings()
        settings.maxAttempts = 1
        let request = DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: Int64(payload.count))
        #expect(throws: FetchError.self) { try home.downloader(settings: settings).download(request) }
        #expect(home.library.store.partialSize(digest.rawValue) == 1 << 20, "the bytes received are kept")
        #expect(try home.library.registry.partialDownload(digest.rawValue)?.validator == "\"v1\"")

        // Corrupt the kept prefix: the resumed download re-hashes it and refuses the result.
        let partial = home.library.store.partialPath(digest.rawValue)
        var kept = try readBytes(partial)
        kept[10] ^= 1
        try Data(kept).write(to: URL(fileURLWithPath: partial))
        healthy.set(true)
        #expect(throws: FetchError.self) { try home.downloader().download(request) }
        #expect(!home.library.store.contains(digest))

        // A clean restart: a new partial, cut again, then resumed by a new downloader (a new process).
        healthy.set(false)
        #expect(throws: FetchError.self) { try home.downloader(settings: settings).download(request) }
        healthy.set(true)
        let before = server.requests.count
        let committed = try FetchHome.reopen(home).downloader().download(request)
        #expect(committed.digest == digest)
        #expect(server.requests[before].header("range") == "bytes=\(1 << 20)-")
    }

    @Test func serverErrorsAndRateLimitsAreRetriedHonouringRetryAfter() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let calls = Counter()
        let server = try FixtureServer { [payload] request, connection in
            switch calls.next() {
            case 1: connection.respond(500, body: Array("boom".utf8))
            case 2: connection.respond(429, headers: [("Retry-After", "1")])
            default: connection.serveFile(payload, request: request)
            }
        }
        let start = Date()
        let committed = try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: nil))
        #expect(committed.digest == digest && calls.count == 3)
        #expect(Date().timeIntervalSince(start) >= 0.9, "Retry-After: 1 was honoured")
    }

    @Test func persistentFailuresEndWithTheServersStatusAndMessage() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let server = try FixtureServer { _, connection in connection.json(503, #"{"error":"maintenance until noon"}"#) }
        #expect {
            try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: nil))
        } throws: { "\($0)".contains("HTTP 503") && "\($0)".contains("maintenance until noon") }
        #expect(server.requests.count == FetchHome.settings().maxAttempts)
        let longWait = try FixtureServer { _, connection in connection.respond(429, headers: [("Retry-After", "3600")]) }
        #expect {
            try home.downloader().download(DownloadRequest(url: longWait.baseURL + "/f", expected: digest, expectedSize: nil))
        } throws: { "\($0)".contains("rate limited") && "\($0)".contains("3600") }
        #expect(longWait.requests.count == 1)
    }

    @Test func aStallBelowTheLowSpeedLimitIsAbortedAndResumed() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let calls = Counter()
        let server = try FixtureServer { [payload] request, connection in
            let first = calls.next() == 1
            connection.serveFile(payload, request: request, etag: "\"v1\"", pause: first ? (after: 1024, seconds: 8) : nil)
        }
        let committed = try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: nil))
        #expect(committed.digest == digest)
        #expect(server.requests.count == 2 && server.requests[1].header("range") == "bytes=1024-")
    }

    @Test func aWholeFileAnswerToARangeRequestRestartsCleanly() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let calls = Counter()
        let server = try FixtureServer { [payload] request, connection in
            let n = calls.next()
            // First: cut short. Then: a server that ignores Range and sends everything with 200.
            connection.serveFile(payload, request: request, etag: "\"v1\"", ignoreRange: n > 1, limit: n == 1 ? 700_000 : nil)
        }
        let committed = try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: nil))
        #expect(committed.digest == digest, "the 200 replaced the partial bytes instead of being appended")
    }

    @Test func changedContentBetweenAttemptsIsDetectedThroughIfRange() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let changed = testBytes(payload.count, seed: 99)
        let calls = Counter()
        let server = try FixtureServer { [payload] request, connection in
            if calls.next() == 1 {
                connection.serveFile(payload, request: request, etag: "\"v1\"", limit: 1 << 20)
            } else {
                connection.serveFile(changed, request: request, etag: "\"v2\"")
            }
        }
        // Without an expected digest (trust on first download) the new content is taken whole,
        // never spliced onto the old bytes.
        let committed = try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: nil, expectedSize: nil))
        #expect(committed.digest == (try SHA256Hasher.digest(changed)))
        #expect(server.requests[1].header("if-range") == "\"v1\"")
    }

    @Test func rangeNotSatisfiableWithEveryByteHeldCompletes() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let calls = Counter()
        let server = try FixtureServer { [payload] request, connection in
            // All bytes arrive but the connection fails before curl sees the end; the resume gets 416.
            if calls.next() == 1 {
                connection.head(200, [("Content-Length", "\(payload.count + 10)"), ("ETag", "\"v1\"")])
                connection.write(payload)
            } else {
                connection.serveFile(payload, request: request, etag: "\"v1\"")
            }
        }
        let committed = try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: nil))
        #expect(committed.digest == digest)
        #expect(server.requests.last?.header("range") == "bytes=\(payload.count)-")
    }

    @Test func redirectsOffTheAllowlistOrToPlainHTTPAreRefused() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let server = try FixtureServer { request, connection in
            switch request.path {
            case "/to-http": connection.redirect(to: "http://example.com/model.bin")
            case "/loop": connection.redirect(to: "/loop")
            default: connection.respond(404)
            }
        }
        #expect {
            try home.downloader().download(DownloadRequest(url: server.baseURL + "/to-http", expected: digest, expectedSize: nil))
        } throws: { "\($0)".contains("http://example.com/model.bin") && "\($0)".contains("not https") }
        #expect {
            try home.downloader().download(DownloadRequest(url: "https://evil.example/x", expected: digest, expectedSize: nil))
        } throws: { "\($0)".contains("evil.example is not on the download allowlist") && "\($0)".contains("TSR_ALLOW_HOSTS") }
        #expect {
            try home.downloader().download(DownloadRequest(url: server.baseURL + "/loop", expected: digest, expectedSize: nil))
        } throws: { "\($0)".contains("too many redirects") }
        var settings = FetchHome.settings()
        settings.allowedHosts = ["huggingface.co"]
        #expect(throws: FetchError.self) {
            try home.downloader(settings: settings).download(DownloadRequest(url: server.baseURL + "/x", expected: digest, expectedSize: nil))
        }
        #expect(server.requests.count == 1 + 11, "nothing was requested from a host off the allowlist")
    }

    @Test func aSizeThatDisagreesWithTheExpectedSizeStopsBeforeStoringAnything() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let server = try FixtureServer { [payload] request, connection in connection.serveFile(payload, request: request) }
        #expect {
            try home.downloader().download(DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: 12345))
        } throws: { "\($0)".contains("expected 12345") }
        #expect(!home.library.store.contains(digest))
    }

    @Test func aFullDiskIsAClearErrorAndTheDownloadResumesOnceThereIsSpace() throws {
        guard Tmpfs.isAvailable else { return }
        try Tmpfs.with(sizeBytes: 2 << 20) { mount in
            let home = try FetchHome(home: mount + "/home")
            defer { home.remove() }
            let server = try FixtureServer { [payload] request, connection in connection.serveFile(payload, request: request, etag: "\"v1\"") }
            let request = DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: Int64(payload.count))
            #expect { try home.downloader().download(request) } throws: { "\($0)".contains("no space left") }
            #expect(!home.library.store.contains(digest))
            let held = home.library.store.partialSize(digest.rawValue)
            #expect(held > 0 && held < Int64(payload.count))
            _ = try Shell.run("/bin/mount", ["-o", "remount,size=16m", mount])
            let committed = try home.downloader().download(request)
            let stored = try readBytes(home.library.layout.blobPath(digest))
            #expect(committed.digest == digest && stored == payload)
        }
    }

    @Test func tokensGoToTheirOwnHostOnlyAndAreWrittenNowhere() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let cdn = try FixtureServer { [payload] request, connection in connection.serveFile(payload, request: request) }
        let hub = try FixtureServer { request, connection in
            guard request.header("authorization") == "Bearer hf_secret_123" else { return connection.respond(401) }
            connection.redirect(to: cdn.baseURL + "/blob?X-Amz-Signature=abc")
        }
        var settings = FetchHome.settings()
        settings.huggingFaceEndpoint = hub.localhostURL
        let credentials = Credentials(huggingFace: "hf_secret_123", civitai: "civitai_secret_456")
        let request = DownloadRequest(url: hub.localhostURL + "/org/repo/resolve/main/m.bin", expected: digest, expectedSize: nil)
        _ = try home.downloader(settings: settings, credentials: credentials).download(request)
        #expect(hub.requests.first?.header("authorization") == "Bearer hf_secret_123")
        #expect(cdn.requests.allSatisfy { $0.header("authorization") == nil }, "no token to the CDN")
        let bytes = try home.everyByte()
        #expect(!bytes.contains("hf_secret_123") && !bytes.contains("civitai_secret_456"))

        // Without the token: an error that names HF_TOKEN.
        #expect {
            try home.downloader(settings: settings).download(
                DownloadRequest(url: hub.localhostURL + "/org/gated/resolve/main/m.bin", expected: testDigest, expectedSize: nil))
        } throws: { "\($0)".contains("HF_TOKEN") && "\($0)".contains("401") }
    }

    var testDigest: Digest { try! SHA256Hasher.digest([1, 2, 3]) }
}

extension FetchHome {
    /// The same home opened again, as a new process would.
    static func reopen(_ home: FetchHome) throws -> FetchHome {
        try FetchHome(existing: home.dir)
    }

    init(existing dir: TempDirectory) throws {
        self.dir = dir
        library = try Library(home: dir.path + "/home")
    }
}

extension DownloaderTests {
    @Test func gcKeepsStoppedDownloadsARemoteEntryWaitsForAndRemovesTheRest() throws {
        let home = try FetchHome()
        defer { home.remove() }
        let server = try FixtureServer { [payload] request, connection in connection.serveFile(payload, request: request, etag: "\"v1\"", limit: 1 << 20) }
        var settings = FetchHome.settings()
        settings.maxAttempts = 1
        // One stopped download of a registered remote entry, one of a URL nobody registered.
        _ = try home.library.registerRemote(
            digest: digest, size: Int64(payload.count), folder: "loras", path: "x.safetensors", replace: false, url: server.baseURL + "/f", kind: "url", prefix: nil)
        let kept = DownloadRequest(url: server.baseURL + "/f", expected: digest, expectedSize: Int64(payload.count))
        let dropped = DownloadRequest(url: server.baseURL + "/other", expected: nil, expectedSize: nil)
        for request in [kept, dropped] { #expect(throws: FetchError.self) { try home.downloader(settings: settings).download(request) } }
        #expect(home.library.store.partialSize(kept.key) > 0 && home.library.store.partialSize(dropped.key) > 0)
        // A download in progress (its lock held) is never touched.
        let busy = try home.library.store.resume(key: "url-in-progress")
        try busy.write([1, 2, 3])
        let report = try Maintenance(library: home.library).collectGarbage(dryRun: false)
        #expect(report.partialDownloads == [home.library.store.partialPath(dropped.key)])
        #expect(home.library.store.partialSize(kept.key) == 1 << 20 && home.library.store.partialSize(dropped.key) == 0)
        #expect(home.library.store.partialSize("url-in-progress") == 3)
        #expect(try home.library.registry.partialDownload(dropped.key) == nil)
        busy.abort()
    }
}
