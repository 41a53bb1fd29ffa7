import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// Kernel FUSE passthrough (SEMANTICS §10): complete models are read by the kernel from their blob
/// files when it allows it (Linux >= 6.9, root); the plain path otherwise, said by `tsr status`.
@Suite(.enabled(if: TestMount.isAvailable && getuid() == 0, "needs /dev/fuse and root"))
struct PassthroughTests {
    @Test func completeModelsAreReadByPassthroughAndWritesWaitForTheirClose() throws {
        let dir = try TempDirectory("tsr-passthrough")
        defer { dir.remove() }
        let home = dir.path + "/home"
        let model = SafetensorsBuilder(tensors: [("w", "U8", [6 << 20])], fill: 3).bytes()
        _ = try dir.write("models/checkpoints/m.safetensors", model)
        let imported = try Shell.run(BuildProducts.tsr, ["import", dir.path + "/models", "--copy", "--home", home])
        #expect(imported.status == 0, "\(imported.stderr)")

        try TestMount.with(home: home) { mount in
            let path = mount.mountpoint + "/checkpoints/m.safetensors"
            // §10: this kernel supports passthrough and the daemon runs as root.
            #expect(xattrValue(mount.mountpoint, "user.tsr.io") == "passthrough")
            let status = try Shell.run(BuildProducts.tsr, ["status", "--json"])
            #expect(status.stdout.contains("\"io\" : \"passthrough\""), "\(status.stdout)")
            let text = try Shell.run(BuildProducts.tsr, ["status"])
            #expect(text.stdout.contains("\(mount.mountpoint)  home \(home)  reads: passthrough"), "\(text.stdout)")

            // Reads of an open file never reach the daemon: they go on while it is stopped (the
            // first read of this file, so no page cache of the mount can answer it either).
            let fd = open(path, O_RDONLY)
            #expect(fd >= 0)
            defer { if fd >= 0 { close(fd) } }
            kill(mount.pid, SIGSTOP)
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var chunk = [UInt8](repeating: 0, count: 65_536)
            let reader = Thread {
                _ = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 5 << 20) }
                done.signal()
            }
            reader.start()
            let answered = done.wait(timeout: .now() + 10) == .success
            kill(mount.pid, SIGCONT)
            if !answered { done.wait() }
            #expect(answered, "a read by passthrough does not need the daemon")
            let right = chunk == Array(model[(5 << 20)..<((5 << 20) + 65_536)])
            #expect(right, "the bytes read while the daemon was stopped are the model's")

            // Reads and a private mapping give the right bytes.
            #expect((try? readBytes(path)) == model, "a whole read")
            let mapped = mmap(nil, model.count, PROT_READ, MAP_PRIVATE, fd, 0)
            #expect(mapped != MAP_FAILED)
            if let mapped, mapped != MAP_FAILED {
                #expect(Array(UnsafeRawBufferPointer(start: mapped, count: model.count)) == model, "mmap")
                munmap(mapped, model.count)
            }

            // A small sidecar stays on the plain path: it can be rewritten while it is open.
            let sidecar = mount.mountpoint + "/checkpoints/m.metadata.json"
            try Data("{\"a\":1}".utf8).write(to: URL(fileURLWithPath: sidecar))
            let sidecarReader = open(sidecar, O_RDONLY)
            #expect(sidecarReader >= 0)
            try Data("{\"a\":2}".utf8).write(to: URL(fileURLWithPath: sidecar))
            #expect(String(decoding: try readBytes(sidecar), as: UTF8.self) == "{\"a\":2}")
            close(sidecarReader)

            // While the model is open by passthrough, writing it through the mount is refused
            // (the kernel would refuse that open itself): ETXTBSY, nothing changed.
            let writer = open(path, O_WRONLY | O_APPEND)
            let writeErrno = errno
            #expect(writer < 0 && writeErrno == ETXTBSY, "refused with ETXTBSY (errno \(writeErrno))")
            if writer >= 0 { close(writer) }
        }

        try TestMount.with(home: home) { mount in
            // Right after the last close the model can be written (the daemon waits for the
            // kernel's release, which arrives after close(2) returns).
            let path = mount.mountpoint + "/checkpoints/m.safetensors"
            for round in 0..<5 {
                let reader = open(path, O_RDONLY)
                var byte: UInt8 = 0
                #expect(reader >= 0 && pread(reader, &byte, 1, 8) == 1)
                close(reader)
                let writer = open(path, O_WRONLY | O_APPEND)
                let writeErrno = errno
                #expect(writer >= 0, "round \(round): open for writing after the close (errno \(writeErrno))")
                if writer >= 0 { close(writer) }
            }
            let appender = open(path, O_WRONLY | O_APPEND)
            #expect(appender >= 0 && write(appender, "x", 1) == 1 && close(appender) == 0)
            let after = try? readBytes(path)
            #expect(after?.count == model.count + 1 && after?.last == UInt8(ascii: "x") && after.map { Array($0.prefix(model.count)) } == model,
                    "the appended model reads back whole")
        }

        // --no-passthrough: the daemon serves every read.
        try TestMount.with(home: home, arguments: ["--no-passthrough"]) { mount in
            #expect(xattrValue(mount.mountpoint, "user.tsr.io") == "plain (--no-passthrough)")
            let status = try Shell.run(BuildProducts.tsr, ["status", "--json"])
            #expect(status.stdout.contains("\"io_reason\" : \"--no-passthrough\""), "\(status.stdout)")
            #expect((try? readBytes(mount.mountpoint + "/checkpoints/m.safetensors"))?.count == model.count + 1)
        }
    }

    /// A model whose bytes are not here yet is read through the daemon (it downloads it); once
    /// it is complete and every earlier open is closed, new opens use passthrough.
    @Test func aLazyModelUsesPassthroughOnceDownloaded() throws {
        let dir = try TempDirectory("tsr-passthrough-lazy")
        defer { dir.remove() }
        let home = dir.path + "/home"
        let model = SafetensorsBuilder(tensors: [("w", "U8", [3 << 20])], fill: 7).bytes()
        let hf = try HuggingFaceFixture(files: ["o/r/lazy.safetensors": .init(bytes: model)])
        let env = ProcessInfo.processInfo.environment.merging(["HF_ENDPOINT": hf.endpoint, "TSR_HOME": home]) { $1 }
        let added = try Shell.run(BuildProducts.tsr, ["add", "hf://o/r/lazy.safetensors", "--folder", "loras"], environment: env)
        #expect(added.status == 0, "\(added.stderr)")

        try TestMount.with(home: home, environment: ["HF_ENDPOINT": hf.endpoint]) { mount in
            let path = mount.mountpoint + "/loras/lazy.safetensors"
            #expect((try? readBytes(path)) == model, "the first read downloads it through the daemon")
            // Now complete: an open by passthrough reads while the daemon is stopped (no page of
            // the mount's own cache can answer: they are dropped before each try).
            var chunk = [UInt8](repeating: 0, count: 4096)
            var answered = false
            for _ in 0..<5 where !answered {
                try "1".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
                let fd = open(path, O_RDONLY)
                guard fd >= 0 else { break }
                defer { close(fd) }
                kill(mount.pid, SIGSTOP)
                let done = DispatchSemaphore(value: 0)
                nonisolated(unsafe) var buffer = [UInt8](repeating: 0, count: 4096)
                Thread {
                    _ = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 2 << 20) }
                    done.signal()
                }.start()
                answered = done.wait(timeout: .now() + 1) == .success
                kill(mount.pid, SIGCONT)
                if !answered {
                    // Still open through the page cache (the first reader's release in flight):
                    // let that read finish, then try a fresh open.
                    done.wait()
                    Thread.sleep(forTimeInterval: 0.1)
                } else {
                    chunk = buffer
                }
            }
            #expect(answered, "an open after the download is served by passthrough")
            let right = chunk == Array(model[(2 << 20)..<((2 << 20) + 4096)])
            #expect(right, "the bytes read by passthrough are the model's")
        }
    }

    /// Mounted by a user without CAP_SYS_ADMIN: the plain path, and `tsr status` says why.
    @Test func anUnprivilegedMountFallsBackToThePlainPath() throws {
        let dir = try TempDirectory("tsr-passthrough-user")
        defer { dir.remove() }
        let model = SafetensorsBuilder(tensors: [("w", "U8", [3 << 20])], fill: 5).bytes()
        _ = try dir.write("models/loras/l.safetensors", model)
        // The user's own copy of tsr, where it can run it.
        let binary = dir.path + "/tsr"
        try FileManager.default.copyItem(atPath: BuildProducts.tsr, toPath: binary)
        try FileManager.default.createDirectory(atPath: dir.path + "/mnt", withIntermediateDirectories: true)
        #expect(try Shell.run("/bin/chown", ["-R", "65534:65534", dir.path]).status == 0)
        func asUser(_ arguments: [String]) throws -> Shell.Output {
            try Shell.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/env", "HOME=\(dir.path)"] + arguments)
        }
        let imported = try asUser([binary, "import", dir.path + "/models", "--copy", "--home", dir.path + "/home"])
        #expect(imported.status == 0, "\(imported.stdout)\(imported.stderr)")
        let mounted = try asUser([binary, "mount", dir.path + "/mnt", "--home", dir.path + "/home"])
        defer {
            if TestMount.isMounted(dir.path + "/mnt") {
                if (try? asUser([binary, "umount", dir.path + "/mnt"]))?.status != 0 { _ = try? Shell.run("/bin/fusermount3", ["-uz", dir.path + "/mnt"]) }
            }
        }
        #expect(mounted.status == 0, "\(mounted.stderr)")
        let status = try asUser([binary, "status"])
        #expect(status.stdout.contains("reads: plain (passthrough needs CAP_SYS_ADMIN: mount as root)"), "\(status.stdout)")
        let copied = try asUser(["/usr/bin/cmp", dir.path + "/mnt/loras/l.safetensors", dir.path + "/models/loras/l.safetensors"])
        #expect(copied.status == 0, "the plain path reads the model: \(copied.stdout)\(copied.stderr)")
        #expect(try asUser([binary, "umount", dir.path + "/mnt"]).status == 0)
    }
}

private func xattrValue(_ path: String, _ name: String) -> String {
    var buffer = [UInt8](repeating: 0, count: 512)
    let n = getxattr(path, name, &buffer, buffer.count)
    return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : ""
}

extension PassthroughTests {
    /// Issue 25: 4 readers and a writer patching a 3 MiB file in place: read-only opens got
    /// ETXTBSY and write opens EIO now and then. The kernel refuses (EIO) any open that is not
    /// passthrough while the inode has a backing file, write opens included, and the replies to
    /// a reader and a writer may reach it in either order; and every write of a name showed it
    /// under one inode. Read-only opens always open; a write open waits for passthrough readers
    /// and may answer ETXTBSY (§10), never EIO.
    @Test func readersBesideAWriterPatchingInPlaceAlwaysOpen() throws {
        let dir = try TempDirectory("tsr-passthrough-patch")
        defer { dir.remove() }
        let home = dir.path + "/home"
        try TestMount.with(home: home) { mount in
            let path = mount.mountpoint + "/loras/patched.safetensors"
            #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: 1, count: 3 << 20)))
            let deadline = Date().addingTimeInterval(12)
            let readerErrors = Locked<[Int32]>([])
            let readerOpens = Locked(0)
            let group = DispatchGroup()
            for _ in 0..<4 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    var buffer = [UInt8](repeating: 0, count: 64 << 10)
                    while Date() < deadline {
                        let fd = open(path, O_RDONLY | O_CLOEXEC)
                        if fd < 0 {
                            let code = errno
                            readerErrors.withLock { $0.append(code) }
                            continue
                        }
                        _ = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 1 << 20) }
                        close(fd)
                        readerOpens.withLock { $0 += 1 }
                    }
                }.start()
            }
            var writerErrors: [Int32] = []
            var patches = 0
            var round = 0
            while Date() < deadline {
                round += 1
                let fd = open(path, O_RDWR | O_CLOEXEC)
                if fd < 0 {
                    writerErrors.append(errno)
                    continue
                }
                let patch = Array("PATCH\(round)".utf8)
                if pwrite(fd, patch, patch.count, off_t(round * 4096 % (3 << 20))) == patch.count { patches += 1 }
                close(fd)
            }
            _ = group.wait(timeout: .now() + 60)
            let failed = readerErrors.withLock { $0 }
            #expect(failed.isEmpty, "read-only opens failed: \(Set(failed).map { String(cString: strerror($0)) }) ×\(failed.count) of \(readerOpens.withLock { $0 }); mount log: \(failed.isEmpty ? "" : mount.logTail())")
            #expect(writerErrors.allSatisfy { $0 == ETXTBSY }, "a write open fails only with ETXTBSY: \(Set(writerErrors))")
            #expect(patches > 10, "the writer got in: \(patches) patches, \(writerErrors.count) refusals")
        }
    }
}
