import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// The lazy path as a real client uses it (issue 17), through real mounts against the Hugging
/// Face emulator, counting what crosses the network: header peeks with the kernel's readahead and
/// through mmap download nothing, a failed download fails once per back-off, no unverified byte
/// past the header region is ever served.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"), .serialized)
struct LazyPathTests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }

    init() throws { dir = try TempDirectory("tsr-lazy") }

    func tsr(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment["TSR_LOW_SPEED_TIME"] = "2"
        environment.merge(extra) { $1 }
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120)
    }

    /// A safetensors file of `size` bytes whose header is about `header` bytes.
    static func model(header: Int, size: Int, fill: UInt8) -> [UInt8] {
        let builder = SafetensorsBuilder(metadata: ["notes": String(repeating: "n", count: header)], tensors: [("w", "U8", [UInt64(size)])], fill: fill)
        return builder.bytes()
    }

    static func headerEnd(_ bytes: [UInt8]) -> Int { 8 + Int(Safetensors.headerLength(bytes)) }

    func xattr(_ path: String, _ name: String) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = getxattr(path, name, &buffer, buffer.count)
        return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : ""
    }

    @Test func headerPeeksByReadAndMmapDownloadNothingAndAFullReadDownloadsOnce() throws {
        defer { dir.remove() }
        // ~155 KB (an SD1.5 checkpoint's) and ~2 MB headers.
        let small = Self.model(header: 155_000, size: 12 << 20, fill: 1)
        let large = Self.model(header: 2_000_000, size: 12 << 20, fill: 2)
        let hf = try HuggingFaceFixture(files: ["o/r/small.safetensors": .init(bytes: small), "o/r/large.safetensors": .init(bytes: large)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        for name in ["small", "large"] {
            let added = try tsr(["add", "hf://o/r/\(name).safetensors", "--folder", "checkpoints"], environment: env)
            #expect(added.status == 0, "\(added.stderr)")
        }
        let registered = [small, large].map { hf.cdnBytes(of: try! SHA256Hasher.digest($0).rawValue, size: $0.count) }
        for (bytes, fetched) in zip([small, large], registered) {
            // Registration fetched the header region: the header plus a bounded margin.
            #expect(fetched >= Self.headerEnd(bytes) && fetched <= Self.headerEnd(bytes) + HeaderRegion.unit + HeaderRegion.margin)
        }
        try TestMount.with(home: home, environment: env) { mount in
            for (name, bytes) in [("small", small), ("large", large)] {
                let path = mount.mountpoint + "/checkpoints/\(name).safetensors"
                let end = Self.headerEnd(bytes)
                for round in 0..<3 {
                    #expect(HeaderPeek.byRead(path) == Array(bytes.prefix(end)), "\(name) read peek \(round)")
                    #expect(HeaderPeek.byMmap(path, size: bytes.count) == Array(bytes.prefix(end)), "\(name) mmap peek \(round)")
                    // A tool listing the library drops caches between looks.
                    _ = try? Shell.run("/bin/sh", ["-c", "echo 1 > /proc/sys/vm/drop_caches"], timeout: 30)
                }
                #expect(xattr(path, "user.tsr.state") == "remote", "\(name): no download started")
            }
            let afterPeeks = [small, large].map { hf.cdnBytes(of: try! SHA256Hasher.digest($0).rawValue, size: $0.count) }
            #expect(afterPeeks == registered, "header peeks fetched nothing more: \(registered) → \(afterPeeks)")

            // A whole read downloads once, continuing after the bytes registration has.
            let path = mount.mountpoint + "/checkpoints/small.safetensors"
            #expect(try readBytes(path) == small)
            #expect(try readBytes(path) == small)
            let digest = try SHA256Hasher.digest(small).rawValue
            let downloads = hf.cdn.requests.filter { $0.method == "GET" && $0.path.hasSuffix(digest) }.dropFirst(2)
            #expect(downloads.count == 1, "one download: \(downloads.map { $0.header("range") ?? "whole" })")
            #expect(hf.cdnBytes(of: digest, size: small.count) == small.count, "every byte crossed the network once")
            #expect(xattr(path, "user.tsr.state") == "present")
        }
    }

    @Test func aDownloadThatFailsVerificationFailsOncePerBackOffAndKeepsOneQuarantinedCopy() throws {
        defer { dir.remove() }
        let good = Self.model(header: 1_000, size: 2 << 20, fill: 3)
        var bad = good
        bad[bad.count - 100] ^= 0xFF
        let hf = try HuggingFaceFixture(files: ["o/r/bad.safetensors": .init(bytes: good, served: bad)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        #expect(try tsr(["add", "hf://o/r/bad.safetensors", "--folder", "checkpoints"], environment: env).status == 0)
        let digest = try SHA256Hasher.digest(good).rawValue
        // An attempt is one download from byte 0 (the first also tries to continue after the
        // registered header region, which may be what was wrong).
        func downloads() -> Int { hf.cdn.requests.filter { $0.method == "GET" && $0.path.hasSuffix(digest) && $0.header("range") == nil }.count }
        try TestMount.with(home: home, arguments: [], environment: env.merging(["TSR_MOUNT_TUNING": "retry_backoff=3,retry_backoff_max=3"]) { $1 }) { mount in
            let path = mount.mountpoint + "/checkpoints/bad.safetensors"
            var failed = 0
            for _ in 0..<10 where (try? readBytes(path)) == nil { failed += 1 }
            #expect(failed == 10, "every read of the bad file fails")
            #expect(downloads() == 1, "ten reads, one download attempt: \(downloads())")
            // Under mmap the EIO is a SIGBUS (safetensors' loader): the process dies, and its page
            // faults start no download either.
            let mapped = try Shell.run("/usr/bin/python3", ["-c", "import mmap,sys; f=open(sys.argv[1],'rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); print(m[len(m)//2])", path], timeout: 60)
            // Foundation reports death by a signal as the signal's number.
            #expect(mapped.status == SIGBUS && mapped.stdout.isEmpty, "an mmap read of the failed file is SIGBUS: \(mapped.status) \(mapped.stderr)")
            #expect(downloads() == 1)
            #expect(xattr(path, "user.tsr.state") == "failed")
            let badDigest = try SHA256Hasher.digest(bad).rawValue
            let error = xattr(path, "user.tsr.error")
            #expect(error.contains("next try at") && error.contains(badDigest), "\(error)")
            let quarantine = try FileManager.default.contentsOfDirectory(atPath: home + "/quarantine")
            #expect(quarantine == [try SHA256Hasher.digest(bad).rawValue], "one copy, named by the digest it has: \(quarantine)")
            let listed = try tsr(["list"]).stdout
            #expect(listed.contains("failed") && listed.contains("next try at"), "\(listed)")
            let info = try tsr(["info", "checkpoints/bad.safetensors"]).stdout
            #expect(info.contains("state:        failed: ") && info.contains("next try at"), "\(info)")
            let status = try tsr(["status"]).stdout
            #expect(status.contains("checkpoints/bad.safetensors: failed: ") && status.contains("tsr pull checkpoints/bad.safetensors"), "\(status)")
            let doctor = try tsr(["doctor"]).stdout
            #expect(doctor.contains("1 file of wrong bytes") && doctor.contains("tsr gc --quarantine"), "\(doctor)")

            // After the back-off, one more try (still one quarantined copy of the same wrong bytes).
            Thread.sleep(forTimeInterval: 3.5)
            for _ in 0..<5 { _ = try? readBytes(path) }
            #expect(downloads() == 2, "one more attempt per back-off period: \(downloads())")
            #expect(try FileManager.default.contentsOfDirectory(atPath: home + "/quarantine").count == 1)

            // The source is mended: `tsr pull NAME` tries at once, and reads serve the verified bytes.
            hf.set("o/r/bad.safetensors", .init(bytes: good))
            let pulled = try tsr(["pull", "checkpoints/bad.safetensors"], environment: env)
            #expect(pulled.status == 0, "\(pulled.stderr)")
            #expect(try readBytes(path) == good)
            #expect(xattr(path, "user.tsr.state") == "present")
        }
        #expect(try tsr(["gc", "--quarantine"]).stdout.contains("1 quarantined files"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: home + "/quarantine").isEmpty)
    }

    @Test func aSmallFileIsVerifiedWhenRegisteredAndUnverifiedBytesAreNeverServed() throws {
        defer { dir.remove() }
        let good = Self.model(header: 200, size: 60_000, fill: 4)
        // Other content than `good` (the emulated CDN finds files by digest).
        let named = Self.model(header: 200, size: 60_000, fill: 5)
        var bad = named
        bad[bad.count - 10] ^= 0x01
        let hf = try HuggingFaceFixture(files: ["o/r/vae.safetensors": .init(bytes: good), "o/r/bad.safetensors": .init(bytes: named, served: bad)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        let refused = try tsr(["add", "hf://o/r/bad.safetensors", "--folder", "vae"], environment: env)
        let badDigest = try SHA256Hasher.digest(bad).rawValue
        #expect(refused.status != 0 && refused.stderr.contains(badDigest), "\(refused.stderr)")
        #expect(try tsr(["list", "--json"]).stdout.contains("bad.safetensors") == false, "nothing registered")
        let added = try tsr(["add", "hf://o/r/vae.safetensors", "--folder", "vae", "--json"], environment: env)
        #expect(added.status == 0 && added.stdout.contains("\"present\""), "verified and stored at once: \(added.stdout) \(added.stderr) \(added.status)")
        #expect(hf.cdn.requests.filter { $0.method == "GET" }.count == 2, "one request each, no download after")

        // An entry registered before this check (its whole file kept as an unverified prefix,
        // wrong): never served as it is.
        let digest = try SHA256Hasher.digest(good)
        try FileManager.default.removeItem(atPath: home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)")
        let sql = "UPDATE blobs SET state = 'remote' WHERE sha256 = '\(digest.rawValue)'; INSERT INTO blob_prefixes (sha256, bytes) VALUES ('\(digest.rawValue)', X'\(bad.map { String(format: "%02x", $0) }.joined())');"
        let python = try Shell.run("/usr/bin/python3", ["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()", home + "/models.db", sql], timeout: 30)
        #expect(python.status == 0, "\(python.stderr)")
        try TestMount.with(home: home, environment: env) { mount in
            let path = mount.mountpoint + "/vae/vae.safetensors"
            #expect((try? readBytes(path)) == nil, "the wrong bytes are not served")
            #expect(xattr(path, "user.tsr.state") == "failed")
            #expect((try? readBytes(path)) == nil)
        }
        // A remount tries again at once: the prefix was dropped, so the source serves it verified.
        try TestMount.with(home: home, environment: env) { mount in
            let back = try readBytes(mount.mountpoint + "/vae/vae.safetensors")
            #expect(back == good)
        }
    }

    /// The header region is served before it can be verified; when the verified blob commits,
    /// the pages served from it are dropped and a difference is shown in user.tsr.error.
    @Test func aHeaderRegionThatDiffersFromTheVerifiedBytesIsReplacedAndReported() throws {
        defer { dir.remove() }
        let good = Self.model(header: 1_000, size: 2 << 20, fill: 6)
        var skewed = good
        skewed[20] = UInt8(ascii: "X")
        let hf = try HuggingFaceFixture(files: ["o/r/skew.safetensors": .init(bytes: good, served: skewed)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        #expect(try tsr(["add", "hf://o/r/skew.safetensors", "--folder", "checkpoints"], environment: env).status == 0)
        hf.set("o/r/skew.safetensors", .init(bytes: good))
        try TestMount.with(home: home, environment: env) { mount in
            let path = mount.mountpoint + "/checkpoints/skew.safetensors"
            let peeked = try #require(FileHandle(forReadingAtPath: path)).read(upToCount: 64) ?? Data()
            #expect([UInt8](peeked) == Array(skewed.prefix(64)), "the header region as registered (unverifiable until the whole file is here)")
            // The first whole read starts inside the header region (served as registered), then
            // waits for the download: the one that continued after the region failed
            // verification, the one from byte 0 passed. Everything past the region is verified.
            let first = try readBytes(path)
            #expect(first.count == good.count && first[(HeaderRegion.unit + HeaderRegion.margin)...] == good[(HeaderRegion.unit + HeaderRegion.margin)...])
            // Every later read comes from the verified blob.
            #expect(try readBytes(path) == good)
            let error = xattr(path, "user.tsr.error")
            #expect(error.contains("differs from the verified bytes at byte 20"), "\(error)")
            #expect(xattr(path, "user.tsr.state") == "present")
            let again = try #require(FileHandle(forReadingAtPath: path)).read(upToCount: 64) ?? Data()
            #expect([UInt8](again) == Array(good.prefix(64)), "the pages served before are gone")
        }
    }

    /// A server that answers every Range with the whole file (200): registration still keeps
    /// exactly the header region, peeks download nothing more, and the download that asks to
    /// continue after the region is given the whole file and verified from byte 0, never spliced.
    @Test func aServerThatIgnoresRangeStillGivesAHeaderRegionAndAVerifiedFile() throws {
        defer { dir.remove() }
        let model = Self.model(header: 155_000, size: 4 << 20, fill: 9)
        let server = try FixtureServer { request, connection in connection.serveFile(model, request: request, etag: "\"w\"", ignoreRange: true) }
        defer { server.stop() }
        let digest = try SHA256Hasher.digest(model).rawValue
        let added = try tsr(["add", server.baseURL + "/m.safetensors", "--sha256", digest, "--folder", "checkpoints"])
        #expect(added.status == 0, "\(added.stderr)")
        let registration = server.requests.count
        try TestMount.with(home: home) { mount in
            let path = mount.mountpoint + "/checkpoints/m.safetensors"
            let end = Self.headerEnd(model)
            #expect(HeaderPeek.byRead(path) == Array(model.prefix(end)))
            #expect(HeaderPeek.byMmap(path, size: model.count) == Array(model.prefix(end)))
            #expect(server.requests.count == registration, "peeks asked the server nothing")
            let whole = try readBytes(path)
            #expect(whole.count == model.count && whole[end...] == model[end...])
            #expect(try readBytes(path) == model)
            #expect(server.requests.count == registration + 1, "one download, answered whole to its Range")
        }
    }

    @Test func anImplausibleHeaderLengthKeepsNoPrefixAndAPullFetchesTheFileOnce() throws {
        defer { dir.remove() }
        var damaged = [UInt8](repeating: 9, count: 4 << 20)
        damaged.replaceSubrange(0..<8, with: [0xFF, 0xFF, 0xFF, 0x05, 0, 0, 0, 0])
        let hf = try HuggingFaceFixture(files: ["o/r/odd.safetensors": .init(bytes: damaged)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        #expect(try tsr(["add", "hf://o/r/odd.safetensors", "--folder", "checkpoints"], environment: env).status == 0)
        let digest = try SHA256Hasher.digest(damaged).rawValue
        #expect(hf.cdnBytes(of: digest, size: damaged.count) <= HeaderRegion.unit, "registration read one unit, no 95 MB 'header'")
        let pulled = try tsr(["pull", "checkpoints/odd.safetensors"], environment: env)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        #expect(hf.cdnBytes(of: digest, size: damaged.count) <= damaged.count + HeaderRegion.unit)
    }
}
