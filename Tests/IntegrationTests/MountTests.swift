import CLinux
import Foundation
import Testing
import TSRLibrary
import TSRStore
import TSRTesting

/// Real mounts of the `tsr` binary in temp directories (docs/SEMANTICS.md; each test names the
/// promise it checks as §N). Every test unmounts, even when it fails.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse and fusermount3"))
struct MountTests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }

    init() throws {
        dir = try TempDirectory("tsr-mount")
        try DemoTree.write(to: dir.path + "/models")
    }

    func tsr(_ arguments: String...) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 60)
    }

    func importDemo() throws {
        let out = try tsr("import", dir.path + "/models", "--copy")
        #expect(out.status == 0, "\(out.stderr)")
    }

    /// Whether a file holds exactly these bytes (a Bool, so a failure does not print megabytes).
    func same(_ path: String, _ bytes: [UInt8]) throws -> Bool { try readBytes(path) == bytes }

    func xattr(_ path: String, _ name: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = getxattr(path, name, &buffer, buffer.count)
        return n < 0 ? nil : String(decoding: buffer.prefix(n), as: UTF8.self)
    }

    /// Polls until `condition` holds, at most `seconds`; returns how long it took, or nil.
    func eventually(_ seconds: Double, _ condition: () -> Bool) -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if condition() { return Date().timeIntervalSince(start) }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return nil
    }

    @Test func rootListsEveryFolderKeyAndTheViews() throws {
        defer { dir.remove() }
        try TestMount.with(home: home) { mount in
            let names = Set(try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint))
            for key in ModelPath.folderKeys + ["unet", "clip", "by-base", "by-creator", "by-hash", "workflows"] {
                #expect(names.contains(key), "§1: \(key) missing")
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint + "/upscale_models").isEmpty)
            let status = try tsr("status", "--json")
            #expect(status.stdout.contains(mount.mountpoint) && status.stdout.contains(home))
            var fs = statvfs(), store = statvfs()
            #expect(statvfs(mount.mountpoint, &fs) == 0 && statvfs(home, &store) == 0)
            #expect(fs.f_blocks == store.f_blocks, "§6: statfs reports the store's filesystem")
        }
    }

    @Test func importedModelsReadBackIdenticallyInEveryView() throws {
        defer { dir.remove() }
        try importDemo()
        try TestMount.with(home: home) { mount in
            let m = mount.mountpoint
            for file in DemoTree.files() where file.path.hasSuffix(".safetensors") {
                let path = m + "/" + file.path
                #expect(try same(path, file.bytes), "§2: \(file.path)")
                #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == file.bytes.count)
            }
            let sdxl = try SHA256Hasher.digest(DemoTree.files()[2].bytes).rawValue
            #expect(try same(m + "/by-hash/" + sdxl, DemoTree.files()[2].bytes))
            #expect(try same(m + "/by-base/SDXL 1.0/checkpoints/demo-sdxl.safetensors", DemoTree.files()[2].bytes))
            #expect(try same(m + "/by-creator/unknown/loras/pony/demo_pony_style.safetensors", DemoTree.files()[5].bytes))
            #expect(FileManager.default.fileExists(atPath: m + "/by-base/Pony/loras/pony/demo_pony_style.safetensors"))
            #expect(xattr(m + "/checkpoints/demo-sdxl.safetensors", "user.tsr.sha256") == sdxl, "§5")
            #expect(xattr(m + "/checkpoints/demo-sdxl.safetensors", "user.tsr.state") == "present")
            // unet/ and clip/ mirror their current folders.
            try Data(DemoTree.files()[6].bytes).write(to: URL(fileURLWithPath: m + "/diffusion_models/flux.safetensors"))
            #expect(try same(m + "/unet/flux.safetensors", DemoTree.files()[6].bytes), "§1: unet mirrors diffusion_models")
        }
    }

    @Test func mmapAndRandomReadsMatchTheOriginal() throws {
        defer { dir.remove() }
        var big = SafetensorsBuilder(tensors: [("w", "U8", [5 << 20])], fill: 0).bytes()
        let start = big.count - (5 << 20)
        for i in start..<big.count { big[i] = UInt8(truncatingIfNeeded: i &* 7) }
        try dir.write("models/checkpoints/big.safetensors", big)
        try importDemo()
        try TestMount.with(home: home) { mount in
            let path = mount.mountpoint + "/checkpoints/big.safetensors"
            let fd = open(path, O_RDONLY)
            #expect(fd >= 0)
            defer { close(fd) }
            // MAP_PRIVATE, as safetensors' safe_open does (§3).
            let mapped = mmap(nil, big.count, PROT_READ, MAP_PRIVATE, fd, 0)
            #expect(mapped != MAP_FAILED)
            if let mapped, mapped != MAP_FAILED {
                let bytes = UnsafeRawBufferPointer(start: mapped, count: big.count)
                #expect(Array(bytes) == big, "mapped bytes differ")
                munmap(mapped, big.count)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            for offset in [0, 4_000_000, big.count - 4096, 123_457] {
                #expect(pread(fd, &chunk, 4096, off_t(offset)) == 4096)
                #expect(chunk == Array(big[offset..<(offset + 4096)]), "pread at \(offset) differs")
            }
        }
    }

    @Test func attributesAndInodesAreStableAndDirectoryMtimesMoveOnlyOnChange() throws {
        defer { dir.remove() }
        try importDemo()
        let mount = try TestMount(home: home, mountpoint: dir.path + "/mnt")
        defer { mount.stop() }
        let m = mount.mountpoint
        func status(_ path: String) -> stat {
            var st = stat()
            _ = lstat(path, &st)
            return st
        }
        let file = status(m + "/loras/demo_detail.safetensors")
        let loras1 = status(m + "/loras")
        Thread.sleep(forTimeInterval: 0.3)
        let loras2 = status(m + "/loras")
        #expect(loras1.st_mtim.tv_sec == loras2.st_mtim.tv_sec && loras1.st_mtim.tv_nsec == loras2.st_mtim.tv_nsec, "§4: stable mtime")
        // Another process adds a name: it shows within a second, and the folder's mtime moves (§4).
        #expect(try tsr("alias", "add", "loras/added/new.safetensors", "loras/demo_detail.safetensors").status == 0)
        let seen = eventually(3) { FileManager.default.fileExists(atPath: m + "/loras/added/new.safetensors") }
        #expect(seen != nil && seen! < 1.0, "§4: visible within 1 s, took \(seen.map { String($0) } ?? "forever")")
        // The new name is answered at once; the folder's cached attributes are dropped by the next
        // poll, so its new mtime shows within the same second.
        func nanoseconds(_ st: stat) -> Int { st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec }
        let moved = eventually(3) { nanoseconds(status(m + "/loras")) > nanoseconds(loras1) }
        #expect(moved != nil && moved! < 1.0, "§4: the folder's mtime moves within 1 s, took \(moved.map { String($0) } ?? "forever")")
        let loras3 = status(m + "/loras")
        // A removal moves it too.
        #expect(try tsr("alias", "rm", "loras/added/new.safetensors").status == 0)
        #expect(eventually(3) { !FileManager.default.fileExists(atPath: m + "/loras/added/new.safetensors") } != nil)
        let movedAgain = eventually(3) { nanoseconds(status(m + "/loras")) > nanoseconds(loras3) }
        #expect(movedAgain != nil && movedAgain! < 1.0, "§4: and again after a removal, took \(movedAgain.map { String($0) } ?? "forever")")
        let loras4 = status(m + "/loras")
        // Remount: same inode, size and mtime (§2).
        try mount.restart()
        let again = status(m + "/loras/demo_detail.safetensors")
        #expect(again.st_ino == file.st_ino && again.st_size == file.st_size && again.st_mtim.tv_sec == file.st_mtim.tv_sec)
        let loras5 = status(m + "/loras")
        #expect(loras5.st_mtim.tv_sec == loras4.st_mtim.tv_sec && loras5.st_mtim.tv_nsec == loras4.st_mtim.tv_nsec, "§4: same after remount")
    }

    @Test func writesBecomeAliasesAndBlobs() throws {
        defer { dir.remove() }
        try importDemo()
        try TestMount.with(home: home) { mount in
            let m = mount.mountpoint
            // cp into loras/ (§7)
            let payload = (0..<2_500_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try Data(payload).write(to: URL(fileURLWithPath: m + "/loras/copied.safetensors"))
            #expect(try same(m + "/loras/copied.safetensors", payload))
            let info = try tsr("info", "loras/copied.safetensors", "-j")
            #expect(info.stdout.contains(try SHA256Hasher.digest(payload).rawValue))
            #expect(try same(home + "/blobs/sha256/" + String(try SHA256Hasher.digest(payload).rawValue.prefix(2)) + "/" + SHA256Hasher.digest(payload).rawValue, payload))

            // ComfyUI's downloader: <final>.<epoch>.comfy-download.tmp, then os.replace (§7)
            let tmp = m + "/checkpoints/dl.safetensors.1732233600.comfy-download.tmp"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            #expect(fd >= 0)
            for i in 0..<10 { _ = Array(payload[(i * 100_000)..<((i + 1) * 100_000)]).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
            #expect(close(fd) == 0)
            #expect(rename(tmp, m + "/checkpoints/dl.safetensors") == 0)
            #expect(!FileManager.default.fileExists(atPath: tmp))
            #expect(try same(m + "/checkpoints/dl.safetensors", Array(payload[0..<1_000_000])))
            let list = try tsr("list", "-j", "--folder", "checkpoints")
            #expect(list.stdout.contains("\"dl.safetensors\"") && !list.stdout.contains("comfy-download"), "\(list.stdout)")

            // A sidecar rewritten in place, then patched in the middle (§7: copy-on-write)
            let sidecar = m + "/loras/copied.metadata.json"
            try Data("{\"a\":1}".utf8).write(to: URL(fileURLWithPath: sidecar))
            let reader = open(sidecar, O_RDONLY)
            try Data("{\"a\":22,\"b\":3}".utf8).write(to: URL(fileURLWithPath: sidecar))
            let patch = open(sidecar, O_WRONLY)
            #expect(pwrite(patch, "X", 1, 2) == 1 && close(patch) == 0)
            #expect(String(decoding: try readBytes(sidecar), as: UTF8.self) == "{\"X\":22,\"b\":3}")
            var old = [UInt8](repeating: 0, count: 7)
            #expect(read(reader, &old, 7) == 7 && String(decoding: old, as: UTF8.self) == "{\"a\":1}", "§7: readers keep the old content")
            close(reader)

            // An open for writing that writes nothing changes nothing, even for an open right
            // after the close (its release runs after close(2) returns) (§7).
            for round in 0..<20 {
                let appender = open(sidecar, O_WRONLY | O_APPEND)
                #expect(appender >= 0 && close(appender) == 0)
                let text = String(decoding: (try? readBytes(sidecar)) ?? [], as: UTF8.self)
                #expect(text == "{\"X\":22,\"b\":3}", "round \(round): \(text)")
            }
            let appender = open(sidecar, O_WRONLY | O_APPEND)
            #expect(write(appender, "\n", 1) == 1 && close(appender) == 0)
            #expect(String(decoding: try readBytes(sidecar), as: UTF8.self) == "{\"X\":22,\"b\":3}\n")

            // truncate, unlink, mkdir, rmdir, directory rename (§7)
            #expect(truncate(m + "/checkpoints/dl.safetensors", 10) == 0)
            #expect(try same(m + "/checkpoints/dl.safetensors", Array(payload[0..<10])))
            #expect(unlink(m + "/loras/copied.safetensors") == 0)
            #expect(!FileManager.default.fileExists(atPath: m + "/loras/copied.safetensors"))
            #expect(try tsr("info", try SHA256Hasher.digest(payload).rawValue).status == 0, "the blob stays until gc")
            #expect(mkdir(m + "/loras/new", 0o755) == 0)
            #expect(FileManager.default.fileExists(atPath: m + "/loras/new"))
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: m + "/loras/new/a.pt"))
            #expect(rename(m + "/loras/new", m + "/loras/renamed") == 0)
            #expect(try same(m + "/loras/renamed/a.pt", [1, 2, 3]))
            #expect(rmdir(m + "/loras/renamed") == -1 && errno == ENOTEMPTY)
            #expect(unlink(m + "/loras/renamed/a.pt") == 0)
            #expect(mkdir(m + "/loras/empty", 0o755) == 0 && rmdir(m + "/loras/empty") == 0)
            #expect(rmdir(m + "/loras") == -1, "folder keys cannot be removed")
            #expect(mkdir(m + "/ipadapter", 0o755) == 0, "a custom node's folder key")
            #expect(FileManager.default.createFile(atPath: m + "/loras/bad\nname.pt", contents: Data()) == false, "§7: names with control characters are refused")
        }
    }

    /// The registry's content digest of a name in loras/, or nil when it has none.
    func recordedDigest(_ name: String) throws -> String? {
        let out = try tsr("list", "--folder", "loras", "--json")
        let items = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]] ?? []
        return items.first { $0["name"] as? String == name }?["sha256"] as? String
    }

    /// Starts /bin/true with every descriptor this process has (none close-on-exec) and waits for
    /// it: its exit closes its copies, which the kernel sends to the mount as flushes.
    func forkAChildThatInheritsDescriptors() {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { argv.forEach { free($0) } }
        #expect(posix_spawn(&pid, "/bin/true", nil, nil, argv, nil) == 0)
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
    }

    @Test func aChildThatInheritsADescriptorBeingWrittenCommitsNothingWhenItExits() throws {
        defer { dir.remove() }
        try importDemo()
        try TestMount.with(home: home) { mount in
            let m = mount.mountpoint
            let old = [UInt8](repeating: 1, count: 300_000)
            let new = (0..<600_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let name = m + "/loras/forked.safetensors"
            #expect(FileManager.default.createFile(atPath: name, contents: Data(old)))
            let oldDigest = try SHA256Hasher.digest(old).rawValue
            #expect(try recordedDigest("forked.safetensors") == oldDigest)

            // Rewriting an existing name: a child's exit half-way commits nothing (§7).
            let writer = open(name, O_WRONLY | O_TRUNC)
            #expect(writer >= 0)
            #expect(new.withUnsafeBytes { write(writer, $0.baseAddress, 300_000) } == 300_000)
            forkAChildThatInheritsDescriptors()
            #expect(try recordedDigest("forked.safetensors") == oldDigest, "the child's close committed the first half")
            #expect(new.withUnsafeBytes { write(writer, $0.baseAddress! + 300_000, 300_000) } == 300_000)
            #expect(close(writer) == 0)
            #expect(try recordedDigest("forked.safetensors") == SHA256Hasher.digest(new).rawValue)
            #expect(try same(name, new))

            // A new temp file renamed over the name before its writer closes it (Foundation's
            // atomic write does exactly this), with a child exiting in between: the temp name is
            // never recorded and the final name gets the whole content.
            let temp = m + "/loras/.forked.tmp"
            let tempWriter = open(temp, O_RDWR | O_CREAT | O_EXCL, 0o644)
            #expect(tempWriter >= 0)
            #expect(old.withUnsafeBytes { write(tempWriter, $0.baseAddress, 100_000) } == 100_000)
            forkAChildThatInheritsDescriptors()
            #expect(try recordedDigest(".forked.tmp") == nil, "the child's close recorded the temp name")
            #expect(old.withUnsafeBytes { write(tempWriter, $0.baseAddress! + 100_000, 200_000) } == 200_000)
            #expect(rename(temp, name) == 0)
            forkAChildThatInheritsDescriptors()
            #expect(close(tempWriter) == 0)
            #expect(try recordedDigest(".forked.tmp") == nil)
            #expect(try recordedDigest("forked.safetensors") == oldDigest)
            #expect(try same(name, old))
            #expect(!FileManager.default.fileExists(atPath: temp))
        }
    }

    @Test func aCloseRacingARenameOfTheSameFileRecordsOneNameOnly() throws {
        defer { dir.remove() }
        try TestMount.with(home: home) { mount in
            let m = mount.mountpoint
            let name = m + "/loras/raced.safetensors"
            // A second descriptor of the same open file, closed by another thread while the
            // writer renames it: the close commits (same process) and the rename moves the name;
            // whichever comes first, the bytes end up under the new name only.
            for round in 0..<60 {
                let bytes = [UInt8](repeating: UInt8(round), count: 4096 + round)
                let temp = m + "/loras/.raced-\(round).tmp"
                let fd = open(temp, O_RDWR | O_CREAT | O_EXCL, 0o644)
                #expect(fd >= 0 && bytes.withUnsafeBytes { write(fd, $0.baseAddress, bytes.count) } == bytes.count)
                let copy = dup(fd)
                let closer = Thread { close(copy) }
                closer.start()
                #expect(rename(temp, name) == 0)
                while !closer.isFinished { Thread.sleep(forTimeInterval: 0.001) }
                #expect(close(fd) == 0)
                #expect(try same(name, bytes), "round \(round)")
                #expect(!FileManager.default.fileExists(atPath: temp), "round \(round)")
            }
            let listed = try tsr("list", "--folder", "loras").stdout
            #expect(!listed.contains(".raced-"), "a temp name was recorded: \(listed)")
        }
    }

    @Test func readOnlyViewsAndReadOnlyMountsRefuseChanges() throws {
        defer { dir.remove() }
        try importDemo()
        try TestMount.with(home: home) { mount in
            let m = mount.mountpoint
            let sdxl = try SHA256Hasher.digest(DemoTree.files()[2].bytes).rawValue
            #expect(open(m + "/by-hash/new", O_WRONLY | O_CREAT, 0o644) == -1 && errno == EROFS, "§8")
            #expect(open(m + "/by-hash/" + sdxl, O_WRONLY) == -1 && errno == EROFS)
            #expect(unlink(m + "/by-base/SDXL 1.0/checkpoints/demo-sdxl.safetensors") == -1 && errno == EROFS)
            #expect(mkdir(m + "/workflows/x", 0o755) == -1 && errno == EROFS)
            // Every change, owners and access times included (issue 25: chown and touch -a passed).
            let viewed = m + "/by-hash/" + sdxl
            #expect(chown(viewed, 65534, 65534) == -1 && errno == EROFS, "§8: chown")
            // UTIME_OMIT ((1 << 30) - 2) for the mtime: only the access time changes.
            var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)]
            #expect(utimensat(AT_FDCWD, viewed, &times, 0) == -1 && errno == EROFS, "§8: touch -a")
            #expect(symlink("x", m + "/by-hash/link") == -1 && errno == EROFS)
            // Links, FIFOs and device nodes are not models: EPERM in folder views, not ENOSYS.
            #expect(symlink("demo-vae.safetensors", m + "/vae/link.safetensors") == -1 && errno == EPERM, "§7: ln -s")
            #expect(link(m + "/vae/demo-vae.safetensors", m + "/vae/hard.safetensors") == -1 && errno == EPERM, "§7: ln")
            #expect(mkfifo(m + "/vae/fifo", 0o644) == -1 && errno == EPERM, "§7: mkfifo")
            #expect(mknod(m + "/vae/node", S_IFCHR | 0o644, 0x103) == -1 && errno == EPERM, "§7: mknod")
            #expect(!FileManager.default.fileExists(atPath: m + "/vae/link.safetensors") && !FileManager.default.fileExists(atPath: m + "/vae/fifo"))
        }
        try TestMount.with(home: home, arguments: ["--read-only"]) { mount throws in
            #expect(open(mount.mountpoint + "/loras/x.pt", O_WRONLY | O_CREAT, 0o644) == -1 && errno == EROFS, "§8: --read-only")
            #expect(try same(mount.mountpoint + "/vae/demo-vae.safetensors", DemoTree.files()[7].bytes))
        }
    }

    @Test func openFilesBlockUnmountAndACrashedDaemonIsRecoverable() throws {
        defer { dir.remove() }
        try importDemo()
        let mount = try TestMount(home: home, mountpoint: dir.path + "/mnt")
        defer { mount.stop() }
        let m = mount.mountpoint
        let fd = open(m + "/vae/demo-vae.safetensors", O_RDONLY)
        #expect(fd >= 0)
        let busy = try tsr("umount", m)
        #expect(busy.status == 1 && busy.stderr.contains("--lazy"), "§9: \(busy.stderr)")
        close(fd)
        #expect(try tsr("umount", m).status == 0)
        #expect(!TestMount.isMounted(m))
        try mount.restart()
        // SIGKILL: the mount is dead until fusermount3 -u; then it mounts again (§9).
        mount.kill9()
        var st = stat()
        #expect(stat(m + "/vae", &st) == -1 && errno == ENOTCONN)
        #expect(try Shell.run("/bin/fusermount3", ["-u", m]).status == 0)
        try mount.restart()
        #expect(try same(m + "/vae/demo-vae.safetensors", DemoTree.files()[7].bytes))
    }

    @Test func backgroundMountAndUmountCommands() throws {
        defer { dir.remove() }
        try importDemo()
        let point = dir.path + "/bg"
        try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
        try dir.write("bg/hidden.txt", [1])
        defer {
            if TestMount.isMounted(point) { _ = try? Shell.run("/bin/fusermount3", ["-uz", point]) }
        }
        let started = try tsr("mount", point)
        #expect(started.status == 0 && started.stdout.contains("mounted"), "\(started.stderr)")
        #expect(TestMount.isMounted(point), "§9: mounting over a non-empty directory works")
        #expect(FileManager.default.fileExists(atPath: point + "/checkpoints/demo-sdxl.safetensors"))
        #expect(try tsr("umount", point).status == 0)
        #expect(eventually(5) { !TestMount.isMounted(point) } != nil)
        #expect(FileManager.default.fileExists(atPath: point + "/hidden.txt"), "the covered files are back")
        let logged = eventually(5) {
            ((try? String(contentsOfFile: home + "/logs/mount.log", encoding: .utf8)) ?? "").contains("unmounted")
        }
        #expect(logged != nil, "the daemon logs its unmount to <home>/logs/mount.log")
    }
}

extension MountTests {
    /// Issue 25: a one-byte write at 1 TiB made the daemon hash a terabyte while stat and ls of
    /// the folder waited. Past the size cap a write is EFBIG; a big commit blocks nobody else.
    @Test func aWritePastTheSizeCapIsRefusedAndABigCommitBlocksNoOneElse() throws {
        defer { dir.remove() }
        try importDemo()
        try TestMount.with(home: home, environment: ["TSR_MOUNT_TUNING": "max_file_size=\(8 << 30)"]) { mount throws in
            let m = mount.mountpoint
            let sparse = m + "/loras/sparse.bin"
            let fd = open(sparse, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            #expect(fd >= 0)
            #expect(pwrite(fd, "x", 1, off_t(1) << 40) == -1 && errno == EFBIG, "§7: past the cap")
            #expect(close(fd) == 0)
            #expect(truncate(sparse, off_t(1) << 40) == -1 && errno == EFBIG)

            // A 6 GiB file that is nearly all hole: its commit hashes 6 GiB.
            let big = m + "/loras/hole.bin"
            let bfd = open(big, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            #expect(pwrite(bfd, "end", 3, off_t(6) << 30) == 3)
            let closed = Locked(false)
            let closer = Thread {
                close(bfd)
                closed.withLock { $0 = true }
            }
            closer.start()
            Thread.sleep(forTimeInterval: 0.3)
            // While it hashes: the file's own stat, its folder's listing, another file.
            var status = stat()
            #expect(stat(big, &status) == 0 && status.st_size == (6 << 30) + 3)
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: m + "/loras")) ?? []).contains("hole.bin"))
            #expect(try same(m + "/vae/demo-vae.safetensors", DemoTree.files()[7].bytes))
            let answeredDuring = !closed.withLock { $0 }
            Thread.sleep(forTimeInterval: 0.5)
            #expect(answeredDuring && !closed.withLock { $0 }, "stat and ls answered while the commit was still hashing")
            while !closed.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.05) }
            #expect(stat(big, &status) == 0 && status.st_size == (6 << 30) + 3, "committed")
            #expect(unlink(big) == 0)
        }
        #expect(try tsr("gc").status == 0)
    }

    /// Issue 25: a name with a newline forged lines in mount.log; header values with escape
    /// sequences drove the terminal of `tsr info`.
    @Test func namesAndHeaderValuesCannotForgeLogLinesOrDriveATerminal() throws {
        defer { dir.remove() }
        try dir.write("models/loras/odd.safetensors", SafetensorsBuilder(metadata: ["title": "\u{1b}[31mred\u{1b}[0m\nsecond line"], tensors: [("w", "U8", [16])], fill: 1).bytes())
        try importDemo()
        let info = try tsr("info", "loras/odd.safetensors")
        #expect(info.status == 0 && !info.stdout.contains("\u{1b}") && info.stdout.contains("\\u{1b}[31mred"), "\(info.stdout)")
        try TestMount.with(home: home) { mount in
            let forged = mount.mountpoint + "/loras/evil\nFORGED tsr : critical : everything deleted"
            #expect(open(forged, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) == -1 && errno == EINVAL)
            #expect(symlink("x", forged) == -1)
            let log = try String(contentsOfFile: mount.log, encoding: .utf8)
            #expect(log.contains("evil\\nFORGED"), "the name is in the log, escaped")
            #expect(!log.split(separator: "\n").contains { $0.hasPrefix("FORGED") }, "and forges no line")
        }
    }
}
