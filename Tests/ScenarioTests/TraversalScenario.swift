import CLinux
import Foundation
import Testing
import TSRStore
import TSRTesting

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// S09: every input that becomes a path — import trees, alias names, workflow names and entries,
/// Content-Disposition, API requests — tried with `..`, absolute paths, NUL, newline, 4 KiB names
/// and invalid UTF-8. Nothing may be created outside the home or the mount, and every name the
/// registry ends up with is a safe relative path.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
struct TraversalScenario {
    static let hostile = ["../../escape.safetensors", "/tmp/escape-abs.safetensors", "a/../../escape.safetensors", "..", "a\nb.safetensors",
                          "nul\u{0}.safetensors", String(repeating: "x", count: 4096) + ".safetensors", "./.safetensors", "loras/../../../escape.safetensors"]

    @Test func s09HostileNamesNeverLeaveTheHomeOrTheMount() throws {
        let world = try ScenarioWorld("tsr-s09")
        defer { world.remove() }
        let model = SafetensorsBuilder(tensors: [("w", "U8", [64 << 10])], fill: 1).bytes()
        let digest = try SHA256Hasher.digest(model)
        let outside = world.dir.path
        let before = tree(outside)
        let rootBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: "/")) ?? [])
        let tmpBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.contains("escape") }
        var attempts = 0

        // 1. An import tree with a symlink out, a newline and invalid UTF-8 in names, a deep path.
        let source = outside + "/models"
        _ = try world.dir.write("models/loras/good.safetensors", model)
        try FileManager.default.createSymbolicLink(atPath: source + "/loras/out", withDestinationPath: "/etc")
        _ = try world.dir.write("models/loras/new\nline.safetensors", model)
        let invalid = Array((source + "/loras/bad-").utf8) + [0xFF, 0xFE] + Array(".safetensors".utf8) + [0]
        let fd = invalid.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_CREAT | O_WRONLY, 0o644) }
        _ = model.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let deep = (0..<30).map { "d\($0)-" + String(repeating: "y", count: 100) }.joined(separator: "/")
        _ = try world.dir.write("models/loras/" + deep + "/deep.safetensors", model)
        _ = try world.tsr(["import", source, "--copy"])
        attempts += 4
        #expect(FileManager.default.fileExists(atPath: "/etc/passwd"), "the symlink's target is untouched")

        // 2. Alias names and 3. workflow names and entries, through the CLI.
        for name in Self.hostile where !name.contains("\u{0}") {
            _ = try world.tsr(["alias", "add", name, digest.rawValue])
            _ = try world.tsr(["alias", "add", "loras/" + name, digest.rawValue])
            let workflow = try world.dir.write("wf.json", Array(try JSONSerialization.data(withJSONObject: [
                "nodes": [["id": 1, "properties": ["models": [["name": name, "directory": "loras", "hash": digest.rawValue, "hash_type": "SHA256"]]]]],
            ])))
            _ = try world.tsr(["workflow", "add", workflow, "--name", name])
            _ = try world.tsr(["workflow", "add", workflow, "--name", "wf-\(attempts)"])
            attempts += 4
        }

        // 4. Content-Disposition names from a server.
        let dispositions = ["attachment; filename=\"../../escape-cd.safetensors\"", "attachment; filename*=UTF-8''..%2F..%2Fescape-cd2.safetensors",
                            "attachment; filename=\"/etc/escape-cd3.safetensors\"", "attachment; filename*=UTF-8''nul%00escape.safetensors",
                            "attachment; filename=\"..\""]
        let server = try FixtureServer { request, connection in
            let index = Int(request.path.split(separator: "/").first ?? "") ?? 0
            connection.serveFile(model, request: request, etag: "\"d\"", extraHeaders: [("Content-Disposition", dispositions[index % dispositions.count])])
        }
        defer { server.stop() }
        for index in dispositions.indices {
            _ = try world.tsr(["pull", server.baseURL + "/\(index)/download", "--folder", "loras"])
            attempts += 1
        }

        // 5. The API, served by the mount daemon; and the mount itself.
        try TestMount.with(home: world.home, arguments: ["--api", "127.0.0.1:0"]) { mount in
            let base = try #require(Self.waitForURL(mount.log))
            for name in Self.hostile {
                _ = Self.post(base + "/models/download", ["url": server.baseURL + "/0/download", "folder": "loras", "filename": name])
                _ = Self.post(base + "/models/download", ["url": server.baseURL + "/0/download", "folder": name])
                let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                _ = Self.post(base + "/workflows?name=" + encoded, ["nodes": [["id": 1, "properties": ["models": [["name": name, "directory": "vae", "hash": digest.rawValue]]]]]])
                attempts += 3
            }
            _ = Self.post(base + "/workflows/check", Data([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]))
            // Creating hostile names through the mount: refused by the kernel or by tsr, never outside.
            for name in ["..", "a\nb.safetensors", String(repeating: "z", count: 300) + ".safetensors"] {
                _ = FileManager.default.createFile(atPath: mount.mountpoint + "/loras/" + name, contents: Data(model))
                attempts += 1
            }
            // Every name the mount shows is a plain component.
            let walker = FileManager.default.enumerator(atPath: mount.mountpoint)
            while let relative = walker?.nextObject() as? String {
                #expect(!relative.split(separator: "/").contains { $0 == ".." || $0.contains("\n") || $0.utf8.count > 255 }, "\(relative.debugDescription)")
            }
        }

        // Nothing was created outside the home (and the source tree this test wrote).
        let created = tree(outside).subtracting(before).filter { !$0.hasPrefix("home") && !$0.hasPrefix("models") && $0 != "wf.json" && !$0.hasSuffix(".log") }
        #expect(created.isEmpty, "created outside the home: \(created.sorted())")
        #expect(Set((try? FileManager.default.contentsOfDirectory(atPath: "/")) ?? []) == rootBefore)
        #expect(Set((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.contains("escape") } == tmpBefore)
        #expect(!FileManager.default.fileExists(atPath: "/etc/escape-cd3.safetensors"))
        // Every registered name is a safe relative path in a folder.
        let listed = try world.tsr(["list", "--json"])
        let items = (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]) ?? []
        let names = Set(items.compactMap { $0["name"] as? String })
        #expect(names.contains("good.safetensors") && names.contains("escape-cd.safetensors"), "the harmless part of a hostile name is kept: \(names.sorted())")
        for item in items {
            let name = item["name"] as? String ?? ""
            let unsafe = name.hasPrefix("/") || name.split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == ".." || $0 == "." }
                || name.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
            #expect(!unsafe, "registered name \(name.debugDescription)")
        }
        let workflows = try world.tsr(["workflow", "list", "--json"]).stdout
        #expect(!workflows.contains("..") && !workflows.contains("\\n"), "\(workflows)")
        ScenarioRecord(id: "S09", title: "path traversal matrix (import, aliases, workflows, Content-Disposition, API, mount)", faultsInjected: attempts).record()
    }

    static func waitForURL(_ log: String) -> String? {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: log, encoding: .utf8), let range = text.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) {
                return String(text[range])
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    /// POSTs JSON (or raw bytes) and returns the status (-1 when no answer).
    @discardableResult
    static func post(_ url: String, _ body: Any) -> Int {
        guard let target = URL(string: url) else { return -1 }
        var request = URLRequest(url: target)
        request.httpMethod = "POST"
        request.timeoutInterval = 30
        request.httpBody = (body as? Data) ?? (try? JSONSerialization.data(withJSONObject: body))
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let status = Locked(-1)
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { _, response, _ in
            status.withLock { $0 = (response as? HTTPURLResponse)?.statusCode ?? -1 }
            done.signal()
        }.resume()
        _ = done.wait(timeout: .now() + 40)
        return status.withLock { $0 }
    }
}
