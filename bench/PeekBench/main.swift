// Header peeks and lazy loads through a real mount (issue 17), against the Hugging Face emulator:
//   1. bytes that crossed the network for a header peek (registration's header region; the peeks
//      by read(2) and mmap with the kernel's own readahead add nothing) vs the header's own size;
//   2. the first full read of a 64 MiB remote model through the mount (download, verify, serve)
//      vs a direct read of the same blob afterwards with the page cache dropped.
// Run by bench/run with TSR_BINARY set to the release build.
import Foundation
import TSRStore
import TSRTesting

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

func row(_ name: String, _ base: String, _ ours: String, _ ratio: Double, _ goal: String, _ ok: Bool) {
    print(name.padding(toLength: 54, withPad: " ", startingAt: 0) + " " + [base, ours, String(format: "%.2f", ratio), goal, ok ? "ok" : "MISSED"]
        .enumerated().map { $0.element.leftPadded([10, 10, 8, 10, 7][$0.offset]) }.joined(separator: " "))
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

/// One header peek by read(2) and one through mmap; both must give the same bytes.
func peek(_ path: String, size: Int) -> Bool {
    guard let byRead = HeaderPeek.byRead(path) else { return false }
    return HeaderPeek.byMmap(path, size: size) == byRead
}

func dropCaches() { _ = try? Shell.run("/bin/sh", ["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], timeout: 60) }

let work = try TempDirectory("tsr-peekbench")
defer { work.remove() }
let payload = 64 << 20
var files: [String: HuggingFaceFixture.File] = [:]
let headers = [("155 KB", 155_000), ("2 MB", 2_000_000), ("8 MB", 8_000_000)]
var models: [String: [UInt8]] = [:]
for (label, size) in headers {
    let bytes = SafetensorsBuilder(metadata: ["notes": String(repeating: "h", count: size)], tensors: [("w", "U8", [UInt64(payload)])], fill: UInt8(size % 251)).bytes()
    files["bench/peek/\(size).safetensors"] = .init(bytes: bytes)
    models[label] = bytes
}
let hf = try HuggingFaceFixture(files: files)
let home = work.path + "/home"
var environment = ProcessInfo.processInfo.environment
environment["TSR_HOME"] = home
environment["HF_ENDPOINT"] = hf.endpoint
for (_, size) in headers {
    let added = try Shell.run(BuildProducts.tsr, ["add", "hf://bench/peek/\(size).safetensors", "--folder", "checkpoints"], environment: environment, timeout: 120)
    guard added.status == 0 else { fatalError("tsr add: \(added.stderr)") }
}
try TestMount.with(home: home, environment: ["HF_ENDPOINT": hf.endpoint]) { mount in
    for (label, size) in headers {
        let bytes = models[label]!
        let digest = try SHA256Hasher.digest(bytes).rawValue
        let path = mount.mountpoint + "/checkpoints/\(size).safetensors"
        for _ in 0..<3 {
            guard peek(path, size: bytes.count) else { fatalError("peek of \(path) failed") }
            dropCaches()
        }
        let fetched = hf.cdnBytes(of: digest, size: bytes.count)
        let header = 8 + Int(Safetensors.headerLength(bytes))
        let ratio = Double(fetched) / Double(header)
        // The goal: the header plus at most the 384 KiB margin (rounding to 128 KiB + two windows).
        let limit = Double(header + HeaderRegion.unit + HeaderRegion.margin) / Double(header)
        row("header peek \(label): bytes fetched / header size", "\(header / 1024)K", "\(fetched / 1024)K", ratio, String(format: "<=%.2f", limit), ratio <= limit)
    }
    // A full lazy load through the mount vs a direct read of the blob (both from a cold cache).
    let bytes = models["155 KB"]!
    let digest = try SHA256Hasher.digest(bytes)
    let path = mount.mountpoint + "/checkpoints/155000.safetensors"
    dropCaches()
    let lazy = try seconds { _ = try readBytes(path) }
    let blob = home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)"
    var direct = Double.infinity
    for _ in 0..<3 {
        dropCaches()
        direct = min(direct, try seconds { _ = try readBytes(blob) })
    }
    row("lazy load 64 MiB through the mount vs direct read", String(format: "%.3fs", direct), String(format: "%.3fs", lazy), direct / lazy, "info", true)
}
