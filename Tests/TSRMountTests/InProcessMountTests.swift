import CLinux
import Foundation
import Testing
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRTesting
@testable import TSRMount

/// The daemon's object graph built by `MountDaemon.make` and served from inside the test
/// process (the other mount tests run the `tsr` binary).
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse and fusermount3"))
struct InProcessMountTests {
    @Test func aMountServedInProcessReadsAndWrites() throws {
        let dir = try TempDirectory("tsr-inproc")
        defer { dir.remove() }
        try DemoTree.write(to: dir.path + "/models")
        var options = ImportOptions()
        options.mode = .copy
        _ = try Importer(library: try Library(home: dir.path + "/home")).run(root: dir.path + "/models", options: options)
        let mountpoint = dir.path + "/mnt"
        let mount = try InProcessMount(home: dir.path + "/home", mountpoint: mountpoint)
        defer { mount.stop() }
        let daemon = mount.daemon
        #expect(TestMount.isMounted(mountpoint))

        let vae = DemoTree.files()[7].bytes
        #expect(try readBytes(mountpoint + "/vae/demo-vae.safetensors") == vae)
        let bytes = Array("written in process".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: mountpoint + "/loras/inproc.txt"))
        let alias = try daemon.core.library.registry.alias(folder: "loras", path: "inproc.txt")
        #expect(alias?.sha256 == (try SHA256Hasher.digest(bytes)))
        #expect(daemon.core.node(at: "loras/inproc.txt")?.file?.size == Int64(bytes.count))
    }
}

/// A fetch double: counts calls, holds every fetch until released, then commits the bytes it was
/// given (or fails) — the mount's side of lazy reads is what is under test.
final class GatedFetcher: BlobFetcher, @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSLock()
    private var released = false
    private var calls: [Digest: Int] = [:]
    let store: BlobStore
    let contents: [Digest: [UInt8]]

    struct Refused: Error, CustomStringConvertible {
        var description: String { "HTTP 404 from the fixture source" }
    }

    init(store: BlobStore, contents: [Digest: [UInt8]]) {
        self.store = store
        self.contents = contents
    }

    func release() { lock.withLock { released = true } }
    func calls(_ digest: Digest) -> Int { lock.withLock { calls[digest] ?? 0 } }

    func fetch(_ digest: Digest, size: Int64) throws {
        lock.withLock { calls[digest, default: 0] += 1 }
        while !lock.withLock({ released }) { Thread.sleep(forTimeInterval: 0.01) }
        guard let bytes = contents[digest] else { throw Refused() }
        _ = try store.put(bytes, expected: digest)
    }
}

extension InProcessMountTests {
    @Test func lazyEntriesAreListedAndOneDownloadServesEveryReader() throws {
        let dir = try TempDirectory("tsr-lazy")
        defer { dir.remove() }
        let library = try Library(home: dir.path + "/home")
        try DemoTree.write(to: dir.path + "/models")
        var options = ImportOptions()
        options.mode = .copy
        _ = try Importer(library: library).run(root: dir.path + "/models", options: options)
        // Two entries whose bytes are not local: one the source will deliver, one it refuses.
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let digest = try SHA256Hasher.digest(payload)
        let missing = try SHA256Hasher.digest(Array("never delivered".utf8))
        try library.registry.upsertBlob(BlobRecord(sha256: digest, size: Int64(payload.count), state: .remote))
        try library.registry.upsertBlob(BlobRecord(sha256: missing, size: 15, state: .remote))
        try library.registry.addAlias(folder: "loras", path: "lazy.safetensors", sha256: digest, replace: false)
        try library.registry.addAlias(folder: "loras", path: "gone.safetensors", sha256: missing, replace: false)
        // A third, read by one process only (readers of one file share its page cache, so one
        // waits on another's read: only a file's own reader can be interrupted).
        let solo = Array("solo bytes".utf8)
        let soloDigest = try SHA256Hasher.digest(solo)
        try library.registry.upsertBlob(BlobRecord(sha256: soloDigest, size: Int64(solo.count), state: .remote))
        try library.registry.addAlias(folder: "vae", path: "solo.safetensors", sha256: soloDigest, replace: false)

        let fetcher = GatedFetcher(store: library.store, contents: [digest: payload, soloDigest: solo])
        let mountpoint = dir.path + "/mnt"
        let mount = try InProcessMount(home: dir.path + "/home", mountpoint: mountpoint, fetcher: fetcher)
        defer {
            fetcher.release()
            mount.stop()
        }

        let lazy = mountpoint + "/loras/lazy.safetensors"
        var before = stat()
        #expect(lstat(lazy, &before) == 0 && before.st_size == payload.count, "§2: exact size before the bytes are here")
        #expect(xattr(lazy, "user.tsr.state") == "remote")

        // More readers than FUSE worker threads, all waiting on the one download.
        let readers = 24
        let results = LockedResults()
        let group = DispatchGroup()
        for _ in 0..<readers {
            group.enter()
            Thread {
                results.add((try? readBytes(lazy)) ?? [])
                group.leave()
            }.start()
        }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(xattr(lazy, "user.tsr.state") == "fetching")
        // The mount stays responsive while they wait (§3: waiting reads hold no worker thread).
        let start = Date()
        #expect(try readBytes(mountpoint + "/vae/demo-vae.safetensors") == DemoTree.files()[7].bytes)
        var other = stat()
        #expect(stat(mountpoint + "/checkpoints/demo-sdxl.safetensors", &other) == 0)
        #expect(Date().timeIntervalSince(start) < 2, "other files are served during the download")

        // A reader killed while it waits dies at once (its read is answered EINTR); the download goes on.
        let victim = Process()
        victim.executableURL = URL(fileURLWithPath: "/bin/cat")
        victim.arguments = [mountpoint + "/vae/solo.safetensors"]
        victim.standardOutput = FileHandle.nullDevice
        try victim.run()
        Thread.sleep(forTimeInterval: 0.3)
        #expect(victim.isRunning, "cat waits for the bytes")
        let killedAt = Date()
        kill(victim.processIdentifier, SIGKILL)
        let died = DispatchSemaphore(value: 0)
        Thread {
            victim.waitUntilExit()
            died.signal()
        }.start()
        // Bounded: if the kill does not take, release the download so nothing stays stuck.
        if died.wait(timeout: .now() + 3) == .timedOut {
            fetcher.release()
            Issue.record("a killed reader stayed blocked on the download")
            _ = died.wait(timeout: .now() + 20)
        }
        #expect(Date().timeIntervalSince(killedAt) < 3, "a killed reader does not hang in D state")
        #expect(xattr(mountpoint + "/vae/solo.safetensors", "user.tsr.state") == "fetching", "the download goes on")

        fetcher.release()
        #expect(group.wait(timeout: .now() + 20) == .success)
        #expect(fetcher.calls(digest) == 1, "one download whatever the number of readers")
        #expect(results.all.count == readers && results.all.allSatisfy { $0 == payload })
        #expect(xattr(lazy, "user.tsr.state") == "present")
        var after = stat()
        #expect(lstat(lazy, &after) == 0)
        #expect(after.st_ino == before.st_ino && after.st_size == before.st_size && after.st_mtim.tv_sec == before.st_mtim.tv_sec,
                "§2: inode, size and mtime do not change when the bytes arrive")

        // A download that fails answers EIO and says why.
        let gone = mountpoint + "/loras/gone.safetensors"
        let fd = open(gone, O_RDONLY)
        #expect(fd >= 0, "opening never waits on the network")
        var buffer = [UInt8](repeating: 0, count: 15)
        #expect(read(fd, &buffer, 15) == -1 && errno == EIO)
        close(fd)
        #expect(xattr(gone, "user.tsr.state") == "failed")
        #expect(xattr(gone, "user.tsr.error")?.contains("404") == true)
    }

    @Test func headerReadsAreAnsweredFromTheStoredPrefixWithoutADownload() throws {
        let dir = try TempDirectory("tsr-prefix")
        defer { dir.remove() }
        let library = try Library(home: dir.path + "/home")
        let model = SafetensorsBuilder(
            metadata: ["ss_base_model_version": "sdxl_base_v1-0", "ss_output_name": "lazy"],
            tensors: [("w", "U8", [1 << 20])], fill: 7
        ).bytes()
        let digest = try SHA256Hasher.digest(model)
        try library.registry.upsertBlob(BlobRecord(sha256: digest, size: Int64(model.count), state: .remote))
        try library.registry.addAlias(folder: "loras", path: "browse.safetensors", sha256: digest, replace: false)
        try library.registry.setPrefix(digest, bytes: Array(model.prefix(128 << 10)))
        let fetcher = GatedFetcher(store: library.store, contents: [digest: model])
        let mountpoint = dir.path + "/mnt"
        let mount = try InProcessMount(home: dir.path + "/home", mountpoint: mountpoint, fetcher: fetcher)
        defer {
            fetcher.release()
            mount.stop()
        }

        // What LoRA managers and ComfyUI's preview do: 8 bytes of length, then the JSON header.
        let path = mountpoint + "/loras/browse.safetensors"
        let handle = try #require(FileHandle(forReadingAtPath: path))
        let lengthBytes = [UInt8](try handle.read(upToCount: 8) ?? Data())
        let length = Int(Safetensors.headerLength(lengthBytes))
        let json = [UInt8](try handle.read(upToCount: length) ?? Data())
        try handle.close()
        let header = try Safetensors.parse(bytes: lengthBytes + json, fileSize: Int64(model.count))
        #expect(header.metadata["ss_output_name"] == "lazy" && header.tensors["w"]?.end == 1 << 20)
        #expect(fetcher.calls(digest) == 0, "§3: the header was read without downloading")
        #expect(xattr(path, "user.tsr.state") == "remote")

        // Reading past the prefix downloads it once, and the bytes are the model's.
        fetcher.release()
        #expect(try readBytes(path) == model)
        #expect(fetcher.calls(digest) == 1)
    }

    func xattr(_ path: String, _ name: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = getxattr(path, name, &buffer, buffer.count)
        return n < 0 ? nil : String(decoding: buffer.prefix(n), as: UTF8.self)
    }
}

final class LockedResults: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var items: [[UInt8]] = []
    func add(_ item: [UInt8]) { lock.withLock { items.append(item) } }
    var all: [[UInt8]] { lock.withLock { items } }
}
