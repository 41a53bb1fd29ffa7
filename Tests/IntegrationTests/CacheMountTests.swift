import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// The bounded cache through a real mount (docs/SEMANTICS.md §11): lazy reads evict least
/// recently used models to stay under the limit, never a pinned one, one nothing could fetch
/// again, or one a process has open; an evicted name stays exactly as it was and comes back on
/// the next read.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"), .serialized)
struct CacheMountTests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }

    init() throws { dir = try TempDirectory("tsr-cache") }

    func tsr(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        environment.merge(extra) { $1 }
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120)
    }

    func xattr(_ path: String, _ name: String) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = getxattr(path, name, &buffer, buffer.count)
        return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : ""
    }

    /// Bytes of every blob file in the home.
    func blobBytes() -> Int64 {
        let root = home + "/blobs/sha256"
        var total: Int64 = 0
        for fan in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + fan)) ?? [] {
                total += (try? SystemCalls.status(root + "/" + fan + "/" + name).size) ?? 0
            }
        }
        return total
    }

    @Test func lazyReadsStayUnderTheLimitAndEvictedNamesComeBack() throws {
        defer { dir.remove() }
        let size = 64 << 20
        let limit: Int64 = 200 << 20
        let models = (0..<6).map { SafetensorsBuilder(tensors: [("w", "U8", [UInt64(size)])], fill: UInt8(10 + $0)).bytes() }
        let hf = try HuggingFaceFixture(files: Dictionary(uniqueKeysWithValues: models.enumerated().map { ("o/r/m\($0.offset).safetensors", .init(bytes: $0.element)) }))
        let env = ["HF_ENDPOINT": hf.endpoint]
        for index in models.indices {
            let added = try tsr(["add", "hf://o/r/m\(index).safetensors", "--folder", "checkpoints"], environment: env)
            #expect(added.status == 0, "\(added.stderr)")
        }
        // A local-only import: nothing could fetch it again.
        let local = testBytes(1 << 20, seed: 42)
        _ = try dir.write("models/loras/local.bin", local)
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        #expect(try tsr(["pin", "checkpoints/m0.safetensors"]).status == 0)
        #expect(try tsr(["cache", "limit", "200M"]).status == 0)

        try TestMount.with(home: home, environment: env) { mount in
            let path = { (index: Int) in mount.mountpoint + "/checkpoints/m\(index).safetensors" }
            var most: Int64 = 0
            func read(_ index: Int) throws {
                #expect(try readBytes(path(index)) == models[index], "m\(index) byte-exact")
                most = max(most, blobBytes())
            }
            try read(0)
            try read(1)
            // m1 stays open in this process while the others come and go.
            let held = open(path(1), O_RDONLY | O_CLOEXEC)
            #expect(held >= 0)
            try read(2)
            var before = stat()
            #expect(stat(path(2), &before) == 0)
            for index in 3..<6 { try read(index) }
            for index in 0..<6 { try read(index) }
            #expect(most <= limit + Int64(size), "blobs/ held \(most) bytes: at most the limit plus one model")

            // m2 was evicted (least recently used, not pinned, not open): its name is unchanged.
            for index in [3, 4, 5, 3, 4] { try read(index) }
            #expect(xattr(path(2), "user.tsr.state") == "remote", "m2 was evicted")
            var after = stat()
            #expect(stat(path(2), &after) == 0)
            #expect(after.st_ino == before.st_ino && after.st_size == before.st_size && after.st_mtim.tv_sec == before.st_mtim.tv_sec, "same inode, size and mtime")
            #expect(xattr(path(0), "user.tsr.state") == "present", "the pinned model stays")
            #expect(xattr(path(1), "user.tsr.state") == "present", "the model open in a process stays")
            #expect(xattr(mount.mountpoint + "/loras/local.bin", "user.tsr.state") == "present", "the only copy stays")
            close(held)
            #expect(eventuallyTrue(10) { mount.logTail(200).contains("to keep the cache under its limit") }, "the mount log lists evictions")
            try read(2)
            #expect(xattr(path(2), "user.tsr.state") == "present", "an evicted model comes back on its next read")
            #expect(most <= limit + Int64(size), "blobs/ held \(most) bytes")
        }
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(try tsr(["list", "-j"]).stdout.utf8)) as? [[String: Any]])
        let states = Dictionary(uniqueKeysWithValues: listed.map { ("\($0["folder"] ?? "")/\($0["name"] ?? "")", $0["state"] as? String ?? "") })
        #expect(states.values.contains("evicted"), "tsr list says which were evicted: \(states)")
        #expect(states["checkpoints/m0.safetensors"] == "present" && listed.contains { $0["name"] as? String == "m0.safetensors" && $0["pinned"] as? Bool == true })
        let status = try tsr(["cache", "-j"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect((json["recent_evictions"] as? [Any])?.isEmpty == false, "tsr cache lists the evictions")
        #expect((json["misses"] as? Int ?? 0) > 0 && (json["hits"] as? Int ?? 0) > 0, "\(json)")
    }

    /// With a limit that pinned content fills, a read that needs a download answers EIO and says
    /// why; nothing is evicted or half-written.
    @Test func aFullCacheAnswersEIOAndSaysWhy() throws {
        defer { dir.remove() }
        let models = (0..<2).map { SafetensorsBuilder(tensors: [("w", "U8", [UInt64(8 << 20)])], fill: UInt8(50 + $0)).bytes() }
        let hf = try HuggingFaceFixture(files: ["o/r/a.safetensors": .init(bytes: models[0]), "o/r/b.safetensors": .init(bytes: models[1])])
        let env = ["HF_ENDPOINT": hf.endpoint]
        for name in ["a", "b"] { #expect(try tsr(["add", "hf://o/r/\(name).safetensors", "--folder", "loras"], environment: env).status == 0) }
        #expect(try tsr(["pull", "hf://o/r/a.safetensors", "--folder", "loras"], environment: env).status == 0)
        #expect(try tsr(["pin", "loras/a.safetensors"]).status == 0)
        #expect(try tsr(["cache", "limit", "10M"]).status == 0)
        try TestMount.with(home: home, environment: env) { mount in
            let path = mount.mountpoint + "/loras/b.safetensors"
            #expect((try? readBytes(path)) == nil, "the read fails")
            #expect(xattr(path, "user.tsr.error").contains("cache full"), "user.tsr.error: \(xattr(path, "user.tsr.error"))")
            #expect(xattr(mount.mountpoint + "/loras/a.safetensors", "user.tsr.state") == "present")
        }
        let pull = try tsr(["pull", "hf://o/r/b.safetensors", "--folder", "loras"], environment: env)
        #expect(pull.status != 0 && pull.stderr.contains("cache full"), "\(pull.stderr)")
        #expect(try tsr(["cache", "limit", "none"]).status == 0)
        #expect(try tsr(["pull", "hf://o/r/b.safetensors", "--folder", "loras"], environment: env).status == 0)
    }

    /// A model mapped by a process (safetensors loads by mmap), its descriptor closed: an eviction
    /// meanwhile never takes the mapped bytes away (no SIGBUS, the same bytes), and once evicted
    /// the page faults of a new mapping fetch it again, right. (On the plain path the mapping
    /// keeps the mount's handle open, so the model is not evicted at all; by passthrough the
    /// kernel maps the blob itself and the mount sees the file closed: SEMANTICS §11.)
    @Test func mappedModelsKeepTheirBytesAndEvictedOnesComeBackThroughPageFaults() throws {
        defer { dir.remove() }
        let model = SafetensorsBuilder(tensors: [("w", "U8", [UInt64(6 << 20)])], fill: 99).bytes()
        let hf = try HuggingFaceFixture(files: ["o/r/mapped.safetensors": .init(bytes: model)])
        let env = ["HF_ENDPOINT": hf.endpoint]
        #expect(try tsr(["pull", "hf://o/r/mapped.safetensors", "--folder", "loras"], environment: env).status == 0)
        try TestMount.with(home: home, environment: env) { mount in
            let path = mount.mountpoint + "/loras/mapped.safetensors"
            let plain = xattr(mount.mountpoint, "user.tsr.io") != "passthrough"
            func mapped() -> UnsafeRawPointer? {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { return nil }
                defer { close(fd) }
                guard let base = mmap(nil, model.count, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { return nil }
                return UnsafeRawPointer(base)
            }
            let first = try #require(mapped())
            let gc = try tsr(["gc", "--evict-to", "0"])
            if plain { #expect(gc.stdout.contains("evicted 0 blobs"), "the plain path's open handle keeps it: \(gc.stdout)") }
            #expect(Array(UnsafeRawBufferPointer(start: first, count: model.count)) == model, "the mapping keeps its bytes")
            munmap(UnsafeMutableRawPointer(mutating: first), model.count)
            // Evicted once nothing maps it (the kernel releases the open after munmap).
            var said = ""
            #expect(eventuallyTrue(10) {
                said = (try? tsr(["gc", "--evict-to", "0"]))?.stdout ?? ""
                return said.contains("0 B left")
            }, "evictable once unmapped: \(said)")
            #expect(eventuallyTrue(5) { xattr(path, "user.tsr.state") == "remote" })
            let again = try #require(mapped())
            #expect(Array(UnsafeRawBufferPointer(start: again, count: model.count)) == model, "page faults fetched it again")
            munmap(UnsafeMutableRawPointer(mutating: again), model.count)
        }
    }

    func eventuallyTrue(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        } while Date() < deadline
        return false
    }

    /// A file read 1 MiB at a time from its end to its start (pread), as a loader that seeks does.
    static func readBackwards(_ path: String, size: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: size)
        var end = size
        while end > 0 {
            let start = max(0, end - (1 << 20))
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + start, end - start, off_t(start)) }
            guard n == end - start else { return nil }
            end = start
        }
        return bytes
    }

    /// Evictions racing reads of the same models through the mount (forwards and backwards, by
    /// passthrough where the kernel allows it, lazy fetches after each eviction) and `tsr pull`:
    /// every read gets the right bytes or, at worst, waits for the download; the registry and the
    /// store end in step.
    @Test func evictionsRacingReadsAndPullsServeOnlyRightBytes() throws {
        defer { dir.remove() }
        let models = (0..<3).map { SafetensorsBuilder(tensors: [("w", "U8", [UInt64(4 << 20)])], fill: UInt8(80 + $0)).bytes() }
        let hf = try HuggingFaceFixture(files: Dictionary(uniqueKeysWithValues: models.enumerated().map { ("o/r/r\($0.offset).safetensors", .init(bytes: $0.element)) }))
        let env = ["HF_ENDPOINT": hf.endpoint]
        let pulled = try tsr(["pull"] + models.indices.map { "hf://o/r/r\($0).safetensors" } + ["--folder", "loras"], environment: env)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        try TestMount.with(home: home, environment: env) { mount in
            let deadline = Date().addingTimeInterval(8)
            let failures = Locked<[String]>([])
            let reads = Locked(0)
            let group = DispatchGroup()
            for reader in 0..<3 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    var round = 0
                    while Date() < deadline {
                        let index = (reader + round) % models.count
                        let path = mount.mountpoint + "/loras/r\(index).safetensors"
                        let got: [UInt8]? = round % 2 == 0 ? try? readBytes(path) : Self.readBackwards(path, size: models[index].count)
                        if got != models[index] { failures.withLock { $0.append("r\(index) round \(round): \(got?.count ?? -1) bytes") } }
                        reads.withLock { $0 += 1 }
                        round += 1
                    }
                }.start()
            }
            var evictions = 0
            while Date() < deadline {
                if (try? tsr(["gc", "--evict-to", "0"]))?.status == 0 { evictions += 1 }
                _ = try? tsr(["pull", "loras/r\(evictions % models.count).safetensors"], environment: env)
            }
            #expect(group.wait(timeout: .now() + 60) == .success)
            let failed = failures.withLock { $0 }
            #expect(failed.isEmpty, "\(failed.prefix(5)); mount log: \(failed.isEmpty ? "" : mount.logTail())")
            #expect(reads.withLock { $0 } > 10 && evictions > 3, "\(reads.withLock { $0 }) reads, \(evictions) evictions")
        }
        let listed = (try JSONSerialization.jsonObject(with: Data(try tsr(["list", "-j"]).stdout.utf8)) as? [[String: Any]]) ?? []
        for item in listed {
            guard let sha = item["sha256"] as? String, let digest = Digest(rawValue: sha) else { continue }
            let here = FileManager.default.fileExists(atPath: home + "/blobs/sha256/\(digest.prefix)/\(sha)")
            #expect(!(item["state"] as? String == "present" && !here), "\(sha) present without bytes")
        }
    }
}
