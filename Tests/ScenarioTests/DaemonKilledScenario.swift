import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

/// S01: the mount daemon is killed with SIGKILL while a read waits on a stalled download; after
/// `fusermount3 -u` and a remount the entry is still whole and remote, nothing partial is visible
/// anywhere, and the next read resumes the download at the bytes kept.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
struct DaemonKilledMidDownloadScenario {
    @Test func s01DaemonKilledMidDownloadResumesAfterRemount() throws {
        let dir = try TempDirectory("tsr-s01")
        defer { dir.remove() }
        let home = dir.path + "/home"
        func tsr(_ arguments: [String]) throws -> Shell.Output {
            try Shell.run(BuildProducts.tsr, arguments + ["--home", home], timeout: 120)
        }
        let model = SafetensorsBuilder(tensors: [("w", "U8", [8 << 20])], fill: 5).bytes()
        let digest = try SHA256Hasher.digest(model)
        let stallAfter = 3 << 20 + 100_000
        let release = Flag()
        let server = try FixtureServer { request, connection in
            // The download (a range without an end: it continues after the header region
            // registration read) stalls a little over 3 MiB into the file until the test lets go.
            let range = request.header("range")
            if range.map({ $0.hasSuffix("-") }) ?? true, !release.isSet {
                let start = range.flatMap { Int($0.dropFirst("bytes=".count).dropLast()) } ?? 0
                var headers = [("Content-Length", "\(model.count - start)"), ("ETag", "\"v1\"")]
                if range != nil { headers.append(("Content-Range", "bytes \(start)-\(model.count - 1)/\(model.count)")) }
                connection.head(range == nil ? 200 : 206, headers)
                model.withUnsafeBytes { _ = connection.write(UnsafeRawBufferPointer(rebasing: $0[start..<stallAfter])) }
                while !release.isSet { Thread.sleep(forTimeInterval: 0.05) }
                return
            }
            connection.serveFile(model, request: request, etag: "\"v1\"")
        }
        defer {
            release.set(true)
            server.stop()
        }
        let url = server.baseURL + "/big.safetensors"
        let added = try tsr(["add", url, "--folder", "checkpoints", "--sha256", digest.rawValue])
        #expect(added.status == 0, "\(added.stderr)")
        let partial = home + "/tmp/partial-\(digest.rawValue)"
        try TestMount.with(home: home) { mount in
            let path = mount.mountpoint + "/checkpoints/big.safetensors"
            // A reader starts the download; it stalls.
            let reader = Process()
            reader.executableURL = URL(fileURLWithPath: "/bin/cat")
            reader.arguments = [path]
            reader.standardOutput = FileHandle.nullDevice
            reader.standardError = FileHandle.nullDevice
            try reader.run()
            defer { if reader.isRunning { kill(reader.processIdentifier, SIGKILL) } }
            let start = Date()
            while ((try? FileManager.default.attributesOfItem(atPath: partial))?[.size] as? Int ?? 0) < 3 << 20, Date().timeIntervalSince(start) < 20 {
                Thread.sleep(forTimeInterval: 0.05)
            }
            let kept = (try? FileManager.default.attributesOfItem(atPath: partial))?[.size] as? Int ?? 0
            #expect(kept >= 3 << 20, "the bytes received so far are on disk")

            mount.kill9()
            reader.waitUntilExit()
            release.set(true)
            try mount.restart()
            // Nothing partial is visible anywhere: the name still stands for the whole, remote file.
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect(attributes[.size] as? Int == model.count)
            var state = [UInt8](repeating: 0, count: 32)
            let n = getxattr(path, "user.tsr.state", &state, state.count)
            #expect(n > 0 && String(decoding: state.prefix(n), as: UTF8.self) == "remote")
            #expect(!FileManager.default.fileExists(atPath: home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)"))
            // The next read resumes where the killed daemon stopped.
            let read = try readBytes(path)
            #expect(read == model)
            let resumed = server.requests.compactMap { $0.header("range") }
            #expect(resumed.contains("bytes=\(kept)-"), "resumed at \(kept): \(resumed)")
        }
        #expect(!FileManager.default.fileExists(atPath: partial))
        let stalls = 1
        ScenarioRecord(id: "S01", title: "daemon SIGKILLed mid-download, remounted, resumed", faultsInjected: 1 + stalls,
                       bytesChecked: Int64(model.count)).record()
    }
}
