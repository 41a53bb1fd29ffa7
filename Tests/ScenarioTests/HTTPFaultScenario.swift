import Foundation
import Testing
import TSRStore
import TSRTesting

/// S08: HTTP faults through the whole path (`tsr pull` → resolver → engine → store → registry):
/// each fault gives its documented outcome, and nothing wrong is ever stored.
@Suite struct HTTPFaultScenario {
    /// One fault: how the server misbehaves for a path, and what the user must see.
    struct Fault: Sendable {
        var name: String
        /// nil: the pull succeeds (the engine recovers); else a phrase of the error.
        var error: String?
    }

    @Test func s08EveryHTTPFaultGivesItsDocumentedOutcomeAndStoresNothingWrong() throws {
        let world = try ScenarioWorld("tsr-s08")
        defer { world.remove() }
        let names = ["truncated", "wrong", "error-then-ok", "rate-limited", "rate-limited-long", "stall-then-ok", "range-ignored", "etag-changed", "off-allowlist"]
        // Each fault serves its own content (what one pull stores cannot help the next), and
        // `other` bytes where the fault is serving the wrong file.
        var contents: [String: [UInt8]] = [:]
        for (index, name) in names.enumerated() {
            contents[name] = SafetensorsBuilder(tensors: [("w", "U8", [3 << 20])], fill: UInt8(10 + index)).bytes()
        }
        let other = SafetensorsBuilder(tensors: [("w", "U8", [3 << 20])], fill: 99).bytes()
        let table = contents
        let hits = Locked<[String: Int]>([:])
        let server = try FixtureServer { request, connection in
            let name = String(request.path.split(separator: "/").first ?? "")
            let model = table[name] ?? []
            // Registration reads the header region with ranges that name their end; downloads
            // (from byte 0, or continuing after the header region) do not. Faults hit downloads.
            let isHeaderRead = request.header("range").map { !$0.hasSuffix("-") } ?? false
            if isHeaderRead && name != "wrong" && name != "off-allowlist" {
                return connection.serveFile(model, request: request, etag: name == "etag-changed" ? "\"old\"" : "\"\(name)\"")
            }
            let hit = hits.withLock { counts -> Int in
                counts[name, default: 0] += 1
                return counts[name]!
            }
            switch name {
            case "truncated":
                // Every answer ends early: retries resume, then give up with a clear error.
                _ = connection.head(200, [("Content-Length", "\(model.count)"), ("ETag", "\"t\"")])
                _ = connection.write(Array(model.prefix(1 << 20)))
            case "wrong":
                connection.serveFile(other, request: request, etag: "\"w\"")
            case "error-then-ok":
                if hit <= 1 { return connection.respond(503, body: Array("busy".utf8)) }
                connection.serveFile(model, request: request, etag: "\"e\"")
            case "rate-limited":
                if hit <= 1 { return connection.respond(429, headers: [("Retry-After", "1")]) }
                connection.serveFile(model, request: request, etag: "\"r\"")
            case "rate-limited-long":
                connection.respond(429, headers: [("Retry-After", "86400")])
            case "stall-then-ok":
                if hit == 1 {
                    _ = connection.head(200, [("Content-Length", "\(model.count)"), ("ETag", "\"s\"")])
                    _ = connection.write(Array(model.prefix(1 << 20)))
                    Thread.sleep(forTimeInterval: 5)
                    return
                }
                connection.serveFile(model, request: request, etag: "\"s\"")
            case "range-ignored":
                // The first download breaks off; the resume's Range is answered with the whole file (200).
                if hit == 1 {
                    _ = connection.head(200, [("Content-Length", "\(model.count)"), ("ETag", "\"g\"")])
                    _ = connection.write(Array(model.prefix(1 << 20)))
                    return
                }
                connection.serveFile(model, request: request, etag: "\"g\"", ignoreRange: true)
            case "etag-changed":
                // Breaks off, then the file at the URL changes (new ETag, other bytes): If-Range gets the new whole file.
                if hit == 1 {
                    _ = connection.head(200, [("Content-Length", "\(model.count)"), ("ETag", "\"old\"")])
                    _ = connection.write(Array(model.prefix(1 << 20)))
                    return
                }
                connection.serveFile(other, request: request, etag: "\"new\"")
            case "off-allowlist":
                connection.redirect(302, to: "http://example.org/elsewhere.safetensors")
            default:
                connection.respond(404)
            }
        }
        defer { server.stop() }
        let faults = [
            Fault(name: "truncated", error: "transfer closed"),
            Fault(name: "wrong", error: "SHA-256 mismatch"),
            Fault(name: "error-then-ok", error: nil),
            Fault(name: "rate-limited", error: nil),
            Fault(name: "rate-limited-long", error: "rate limited"),
            Fault(name: "stall-then-ok", error: nil),
            Fault(name: "range-ignored", error: nil),
            Fault(name: "etag-changed", error: "SHA-256 mismatch"),
            Fault(name: "off-allowlist", error: "not https"),
        ]
        var checked: Int64 = 0
        #expect(faults.map(\.name) == names)
        for fault in faults {
            let model = contents[fault.name]!
            let digest = try SHA256Hasher.digest(model)
            let url = server.baseURL + "/\(fault.name)/model.safetensors"
            let pulled = try world.tsr(["pull", url, "--sha256", digest.rawValue, "--folder", "checkpoints", "--name", "\(fault.name).safetensors"])
            if let phrase = fault.error {
                #expect(pulled.status == 1 && pulled.stderr.contains(phrase), "\(fault.name): \(pulled.stderr)")
                #expect(!pulled.stderr.contains("\n\n") && pulled.stderr.hasPrefix("tsr: "), "\(fault.name): one clear line")
            } else {
                #expect(pulled.status == 0, "\(fault.name) recovers: \(pulled.stderr)")
                #expect((try? readBytes(world.blobPath(digest))) == model, "\(fault.name)")
                checked += Int64(model.count)
            }
            if fault.error != nil {
                #expect(!FileManager.default.fileExists(atPath: world.blobPath(digest)), "\(fault.name): no blob from a failed pull")
            }
            #expect(try world.blobsWithWrongBytes().isEmpty, "\(fault.name): nothing wrong stored")
            #expect(!FileManager.default.fileExists(atPath: world.blobPath(try SHA256Hasher.digest(other))), "\(fault.name)")
        }
        let wrongServed = FileManager.default.fileExists(atPath: world.blobPath(try SHA256Hasher.digest(other))) ? Int64(other.count) : 0
        ScenarioRecord(id: "S08", title: "HTTP faults through tsr pull", faultsInjected: faults.count, bytesChecked: checked, wrongBytesServed: wrongServed).record()
    }
}
