import Foundation
import Testing
import TSRStore
import TSRTesting

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `tsr serve` and `tsr mount --api` as users run them (the binary, a real mount).
@Suite struct APICLITests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }

    init() throws { dir = try TempDirectory("tsr-api-cli") }

    func tsr(_ arguments: [String], environment extra: [String: String] = [:], input: String? = nil) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment.merge(extra) { $1 }
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 60, input: input)
    }

    /// A bytes fixture whose full download stops halfway until `release` is set; range reads
    /// (the registration's header read) are answered at once.
    static func gatedServer(_ bytes: [UInt8], release: Flag, fullGets: Locked<Int>) throws -> FixtureServer {
        try FixtureServer { request, connection in
            if request.method == "HEAD" { return connection.respond(200, headers: [("Content-Length", "\(bytes.count)")]) }
            // Registration's header-region reads name their end; the download (from byte 0, or
            // continuing after the header region) does not.
            if let range = request.header("range"), !range.hasSuffix("-") { return connection.serveFile(bytes, request: request, etag: "\"v1\"") }
            fullGets.withLock { $0 += 1 }
            _ = connection.head(200, [("Content-Length", "\(bytes.count)"), ("ETag", "\"v1\"")])
            _ = connection.write(Array(bytes.prefix(bytes.count / 2)))
            for _ in 0..<600 where !release.isSet { usleep(20_000) }
            _ = connection.write(Array(bytes.suffix(from: bytes.count / 2)))
        }
    }

    /// Sends one request and returns status and body (no redirects, 60 s at most).
    static func call(_ method: String, _ url: String, json: Any? = nil, headers: [String: String] = [:]) throws -> (Int, String) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let result = Locked<(Int, String)?>(nil)
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            result.withLock { $0 = ((response as? HTTPURLResponse)?.statusCode ?? -1, data.map { String(decoding: $0, as: UTF8.self) } ?? "\(error.map { "\($0)" } ?? "")") }
            done.signal()
        }.resume()
        _ = done.wait(timeout: .now() + 70)
        return result.withLock { $0 } ?? (-1, "no answer")
    }

    /// The first `http://…/` URL a log or output mentions, waiting for it to appear.
    static func waitForURL(in path: String, timeout: TimeInterval = 20) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: path, encoding: .utf8), let range = text.range(of: #"http://[0-9.]+:[0-9]+"#, options: .regularExpression) {
                return String(text[range])
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    @Test(.enabled(if: TestMount.isAvailable)) func theMountsAPIJoinsTheMountsDownloadAndTheFileReadsThroughTheMount() throws {
        defer { dir.remove() }
        let bytes = SafetensorsBuilder(metadata: [:], tensors: [("w", "U8", [4 << 20])], fill: 3).bytes()
        let digest = try SHA256Hasher.digest(bytes)
        let release = Flag()
        let fullGets = Locked(0)
        let server = try Self.gatedServer(bytes, release: release, fullGets: fullGets)
        defer {
            release.set(true)
            server.stop()
        }
        let url = server.localhostURL + "/shared.safetensors"
        let added = try tsr(["add", url, "--sha256", digest.rawValue, "--folder", "checkpoints"])
        #expect(added.status == 0, "\(added.stderr)")

        try TestMount.with(home: home, arguments: ["--api", "127.0.0.1:0"]) { mount in
            let base = try #require(Self.waitForURL(in: mount.log), "the daemon logs where the API listens")
            // A reader through the mount starts the download (it stalls halfway)…
            let read = Locked<[UInt8]?>(nil)
            let reader = Thread { read.withLock { $0 = try? readBytes(mount.mountpoint + "/checkpoints/shared.safetensors") } }
            reader.start()
            let deadline = Date().addingTimeInterval(10)
            while fullGets.withLock({ $0 }) == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            #expect(fullGets.withLock { $0 } == 1)
            // …and the API's download of the same file joins it instead of starting another.
            let api = Locked<(Int, String)?>(nil)
            let caller = Thread {
                let answer = try? Self.call("POST", base + "/models/download", json: ["url": url, "sha256": digest.rawValue, "folder": "checkpoints", "filename": "shared.safetensors"])
                api.withLock { $0 = answer }
            }
            caller.start()
            Thread.sleep(forTimeInterval: 0.5)
            let (_, listed) = try Self.call("GET", base + "/downloads")
            #expect(listed.contains("\"state\":\"downloading\""), "\(listed)")
            release.set(true)
            let finished = Date().addingTimeInterval(30)
            while (api.withLock { $0 } == nil || read.withLock { $0 } == nil) && Date() < finished { Thread.sleep(forTimeInterval: 0.05) }
            let (status, stream) = try #require(api.withLock { $0 })
            #expect(status == 200 && stream.contains("\"status\":\"completed\"") && stream.contains(digest.rawValue), "\(stream)")
            #expect(read.withLock { $0 } == bytes, "the reader got the right bytes")
            #expect(fullGets.withLock { $0 } == 1, "one download for the mount's read and the API together")
            let (_, stats) = try Self.call("GET", base + "/stats")
            #expect(stats.contains("\"blobs\":1") && stats.contains("\"remote_blobs\":0"), "\(stats)")
        }
    }

    @Test(.enabled(if: TestMount.isAvailable)) func aBackgroundMountAnswersOnItsAPIOnceMountedAndATakenPortMountsNothing() throws {
        defer { dir.remove() }
        let mountpoint = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        defer { if TestMount.isMounted(mountpoint) { _ = try? Shell.run("/bin/fusermount3", ["-uz", mountpoint]) } }
        let occupied = try FixtureServer { _, connection in connection.respond(200) }
        defer { occupied.stop() }
        let taken = try tsr(["mount", mountpoint, "--api", "127.0.0.1:\(occupied.port)"])
        #expect(taken.status == 1 && taken.stderr.contains("already in use"), "\(taken.stderr)")
        #expect(!TestMount.isMounted(mountpoint), "the daemon stopped before mounting")

        // Once `tsr mount` returns, the API answers at the address it printed (the port the
        // system chose for port 0): the first request is not refused.
        let mounted = try tsr(["mount", mountpoint, "--api", "127.0.0.1:0"])
        #expect(mounted.status == 0, "\(mounted.stderr)")
        let printed = try #require(mounted.stdout.range(of: #"API and web page: http://127\.0\.0\.1:[0-9]+/"#, options: .regularExpression).map { String(mounted.stdout[$0]) })
        let url = String(printed.dropFirst("API and web page: ".count))
        #expect(!url.hasSuffix(":0/"), "\(mounted.stdout)")
        let (status, body) = try Self.call("GET", url + "stats")
        #expect(status == 200, "\(body)")
        #expect(try tsr(["umount", mountpoint]).status == 0)
    }

    @Test func serveListensOnLoopbackRefusesOtherAddressesWithoutATokenAndSaysWhenThePortIsTaken() throws {
        defer { dir.remove() }
        let refused = try tsr(["serve", "--listen", "0.0.0.0:0"])
        #expect(refused.status == 64 && refused.stderr.contains("TSR_API_TOKEN"), "\(refused.stderr)")
        let occupied = try FixtureServer { _, connection in connection.respond(200) }
        defer { occupied.stop() }
        // Several times: the failure path once hung now and then (a deadlock on cancelling the
        // server's task group), which a single try rarely shows.
        for attempt in 0..<8 {
            let start = Date()
            let taken = try tsr(["serve", "--listen", "127.0.0.1:\(occupied.port)"])
            #expect(taken.status == 1 && taken.stderr.contains("already in use"), "attempt \(attempt) after \(Int(Date().timeIntervalSince(start))) s: \(taken.stderr)")
        }
        let bad = try tsr(["serve", "--listen", "localhost:http"])
        #expect(bad.status == 64 && bad.stderr.contains("HOST:PORT"), "\(bad.stderr)")

        // With a token from stdin on all interfaces: the token is required, and written nowhere.
        let token = "serve-token-\(UInt32.random(in: 100_000...999_999))"
        let output = dir.path + "/serve.out"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuildProducts.tsr)
        process.arguments = ["serve", "--listen", "0.0.0.0:0", "--api-token-stdin", "--home", home]
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = handle
        process.standardError = handle
        let input = Pipe()
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(Data((token + "\n").utf8))
        defer {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        let printed = try #require(Self.waitForURL(in: output), "\((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        // It listens on every interface, so loopback reaches it too.
        let base = printed.replacingOccurrences(of: "0.0.0.0", with: "127.0.0.1")
        #expect(try Self.call("GET", base + "/stats").0 == 401)
        #expect(try Self.call("GET", base + "/stats", headers: ["Authorization": "Bearer \(token)"]).0 == 200)
        #expect(try Self.call("GET", base + "/").0 == 200)
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "SIGTERM stops it cleanly")
        let walker = FileManager.default.enumerator(atPath: dir.path)
        var leaks: [String] = []
        while let relative = walker?.nextObject() as? String {
            if let data = FileManager.default.contents(atPath: dir.path + "/" + relative), data.range(of: Data(token.utf8)) != nil { leaks.append(relative) }
        }
        #expect(leaks.isEmpty, "the API token is nowhere on disk: \(leaks)")
    }
}
