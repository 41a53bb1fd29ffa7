import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// S03: a byte flips in a stored blob. Until `tsr verify` looks, nothing can know (bytes are
/// checked when they are committed, not on every open); from the moment verify quarantines the
/// blob, no reader gets the bad bytes — not through a new open, not through a file opened before,
/// not from the kernel's page cache — and the content is fetched again from its source.
/// With kernel passthrough (SEMANTICS §10) a file opened before the quarantine reads the blob file
/// itself, which cannot be taken back from it; new opens are refused (EIO) until it is closed, so
/// the promise there is for opens made after the quarantine.
@Suite(.enabled(if: TestMount.isAvailable && access("/proc/sys/vm/drop_caches", W_OK) == 0, "needs /dev/fuse and root"))
struct FlippedByteScenario {
    @Test(arguments: [false, true])
    func s03AFlippedByteIsQuarantinedNeverServedAndFetchedAgain(passthrough: Bool) throws {
        let dir = try TempDirectory("tsr-s03")
        defer { dir.remove() }
        let home = dir.path + "/home"
        let model = SafetensorsBuilder(tensors: [("w", "U8", [2 << 20])], fill: 9).bytes()
        let digest = try SHA256Hasher.digest(model)
        let hf = try HuggingFaceFixture(files: ["o/r/m.safetensors": .init(bytes: model)])
        let env = ProcessInfo.processInfo.environment.merging(["HF_ENDPOINT": hf.endpoint, "TSR_HOME": home]) { $1 }
        #expect(try Shell.run(BuildProducts.tsr, ["pull", "hf://o/r/m.safetensors", "--folder", "loras"], environment: env).status == 0)
        let blob = home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)"
        let flipAt = 1 << 20

        try TestMount.with(home: home, arguments: passthrough ? [] : ["--no-passthrough"], environment: ["HF_ENDPOINT": hf.endpoint]) { mount in
            let path = mount.mountpoint + "/loras/m.safetensors"
            var io = [UInt8](repeating: 0, count: 64)
            let ioCount = getxattr(mount.mountpoint, "user.tsr.io", &io, io.count)
            #expect(String(decoding: io.prefix(max(0, ioCount)), as: UTF8.self) == (passthrough ? "passthrough" : "plain (--no-passthrough)"))
            let early = try #require(FileHandle(forReadingAtPath: path), "a reader that opened the file before anything happened")
            var earlyOpen = true
            defer { if earlyOpen { try? early.close() } }
            #expect(try readBytes(path) == model)

            // The fault: one bit on disk, and the bad page into the kernel's cache through the mount.
            chmod(blob, 0o644)
            let fd = open(blob, O_WRONLY)
            var byte = model[flipAt] ^ 0x01
            #expect(pwrite(fd, &byte, 1, off_t(flipAt)) == 1)
            close(fd)
            sync()
            try "1".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
            let undetected = try readBytes(path)[flipAt]
            #expect(undetected != model[flipAt], "before verify the flip cannot be known (and now sits in the page cache)")

            let verify = try Shell.run(BuildProducts.tsr, ["verify"], environment: env)
            #expect(verify.status == 1 && (verify.stdout + verify.stderr).contains("quarantine"))
            // The mount notices within a second; from then on only the right bytes come out.
            var state = ""
            for _ in 0..<150 {
                var buffer = [UInt8](repeating: 0, count: 32)
                let n = getxattr(path, "user.tsr.state", &buffer, buffer.count)
                state = n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : ""
                if state == "quarantined" { break }
                Thread.sleep(forTimeInterval: 0.02)
            }
            #expect(state == "quarantined")
            var checked = Int64(model.count * 2)
            if passthrough {
                // §10: while the early reader has it open by passthrough, new opens are refused
                // rather than given the file it reads; once it closes they get the right bytes.
                let refused = open(path, O_RDONLY)
                let refusal = errno
                #expect(refused < 0 && refusal == EIO, "a new open while a passthrough reader has the bad blob (errno \(refusal))")
                if refused >= 0 { close(refused) }
                try early.close()
                earlyOpen = false
            } else {
                try early.seek(toOffset: UInt64(flipAt))
                let throughOldHandle = try #require(try early.read(upToCount: 4096))
                let oldHandleRight = [UInt8](throughOldHandle) == Array(model[flipAt..<(flipAt + 4096)])
                #expect(oldHandleRight, "a file opened before is not served the bad bytes")
                checked += 4096
            }
            let freshRight = try readBytes(path) == model
            #expect(freshRight, "nor a new open, nor the page cache")
            #expect(hf.cdn.requests.filter { $0.method == "GET" && $0.header("range") == nil }.count == 2, "fetched again from its source")
            ScenarioRecord(id: "S03", title: "a flipped byte: quarantined, never served after, fetched again (\(passthrough ? "passthrough" : "plain reads"))",
                           faultsInjected: 1, bytesChecked: checked).record()
        }
        #expect(try Shell.run(BuildProducts.tsr, ["verify"], environment: env).status == 0)
    }
}
