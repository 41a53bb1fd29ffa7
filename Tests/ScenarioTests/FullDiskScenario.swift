import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// S04: the home's filesystem fills up (a small tmpfs), once during a download and once during a
/// write through the mount. Each gives a clear error; the registry and the store stay consistent,
/// nothing half-written is visible; once space is freed the same work succeeds (the download
/// resumes from the bytes it kept).
@Suite(.enabled(if: Tmpfs.isAvailable && TestMount.isAvailable, "needs root (tmpfs) and /dev/fuse"))
struct FullDiskScenario {
    @Test func s04AFullDiskDuringADownloadAndAMountWriteLosesNothingAndRecovers() throws {
        try Tmpfs.with(sizeBytes: 48 << 20) { volume in
            let model = SafetensorsBuilder(tensors: [("w", "U8", [24 << 20])], fill: 4).bytes()
            let digest = try SHA256Hasher.digest(model)
            let hf = try HuggingFaceFixture(files: ["o/r/big.safetensors": .init(bytes: model)])
            let world = try ScenarioWorld("tsr-s04", home: volume + "/home", environment: ["HF_ENDPOINT": hf.endpoint])
            defer { world.remove() }
            var faults = 0

            // 1. A download into a disk with 16 MiB left.
            let filler = volume + "/filler"
            _ = FileManager.default.createFile(atPath: filler, contents: Data(count: 32 << 20))
            let refused = try world.tsr(["pull", "hf://o/r/big.safetensors", "--folder", "checkpoints"])
            faults += 1
            #expect(refused.status == 1 && refused.stderr.lowercased().contains("no space left"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: world.blobPath(digest)), "no blob from a download that did not finish")
            #expect(try world.blobsWithWrongBytes().isEmpty)
            let listed = try world.tsr(["list", "--json"]).stdout
            #expect(!listed.contains("\"present\""), "nothing is listed as here: \(listed)")

            try FileManager.default.removeItem(atPath: filler)
            let resumed = try world.tsr(["pull", "--all-missing"])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect((try? readBytes(world.blobPath(digest))) == model)
            #expect(hf.cdn.requests.contains { ($0.header("range") ?? "").hasPrefix("bytes=") && $0.header("range") != "bytes=0-131071" },
                    "the second pull resumed from the bytes the first kept")

            // 2. A write through the mount into a disk with little room.
            try TestMount.with(home: world.home, environment: ["HF_ENDPOINT": hf.endpoint]) { mount in
                var stats = statvfs()
                statvfs(volume, &stats)
                let free = Int(stats.f_bavail) * Int(stats.f_frsize)
                _ = FileManager.default.createFile(atPath: filler, contents: Data(count: max(0, free - (4 << 20))))
                let payload = testBytes(12 << 20, seed: 44)
                let path = mount.mountpoint + "/loras/written.safetensors"
                let (writeError, closeError) = Self.writeWhole(path, payload)
                faults += 1
                #expect(writeError == ENOSPC || closeError == ENOSPC, "the writer is told the disk is full (write \(writeError), close \(closeError))")
                #expect(eventually(2) { !FileManager.default.fileExists(atPath: path) }, "no half-written file under the name")
                #expect(!(try world.tsr(["list", "--json"]).stdout.contains("written.safetensors")))
                #expect(try world.blobsWithWrongBytes().isEmpty)
                #expect(try readBytes(mount.mountpoint + "/checkpoints/big.safetensors") == model, "what was there is still served")

                try FileManager.default.removeItem(atPath: filler)
                let (again, againClose) = Self.writeWhole(path, payload)
                #expect(again == 0 && againClose == 0)
                #expect(try readBytes(path) == payload)
                ScenarioRecord(id: "S04", title: "home's filesystem full during a download and a mount write", faultsInjected: faults,
                               bytesChecked: Int64(model.count * 2 + payload.count * 2)).record()
            }
        }
    }

    /// Writes `bytes` in 1 MiB pieces with write(2) and closes; returns the errno of the first
    /// failed write and of close (0 when they succeeded).
    static func writeWhole(_ path: String, _ bytes: [UInt8]) -> (Int32, Int32) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return (errno, 0) }
        var writeError: Int32 = 0
        var offset = 0
        while offset < bytes.count {
            let count = min(1 << 20, bytes.count - offset)
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, count) }
            if written < 0 {
                writeError = errno
                break
            }
            offset += written
        }
        let closed = close(fd)
        return (writeError, closed == 0 ? 0 : errno)
    }
}
