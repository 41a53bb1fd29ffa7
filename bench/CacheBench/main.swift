// The bounded cache's choice of what to evict among 100,000 blobs (issue 21: "under 50 ms"):
// Cache.evict(downTo:dryRun:) over a registry of present blobs, each with a source, a last use
// and some pinned — the query `tsr gc --evict-to` and every download's make-room run. The
// baseline, in the same run, is a bare scan of the blobs table (what any choice must read).
// Prints p50 over 20 runs.
import Foundation
import GRDB
import TSRLibrary
import TSRRegistry
import TSRStore

let count = Int(ProcessInfo.processInfo.environment["BENCH_BLOBS"] ?? "") ?? 100_000
var template = Array((NSTemporaryDirectory() + "tsr-cachebench-XXXXXX").utf8CString)
guard let made = mkdtemp(&template) else { fatalError("mkdtemp") }
let work = String(cString: made)
defer { try? FileManager.default.removeItem(atPath: work) }
let library = try Library(home: work + "/home")

FileHandle.standardError.write(Data("registering \(count) blobs…\n".utf8))
let queue = try DatabaseQueue(path: library.layout.database)
try queue.write { db in
    let now = Date()
    for index in 0..<count {
        let digest = String(format: "%064x", index)
        try db.execute(
            sql: "INSERT INTO blobs (sha256, size, state, created_at, last_access_at) VALUES (?, ?, 'present', ?, ?)",
            arguments: [digest, 100 << 20, now.addingTimeInterval(-86_400), now.addingTimeInterval(-Double(Int.random(in: 0..<86_400)))])
        try db.execute(sql: "INSERT INTO sources (sha256, url, kind, created_at) VALUES (?, ?, 'url', ?)", arguments: [digest, "https://example.com/\(index)", now])
        if index % 50 == 0 { try db.execute(sql: "INSERT INTO pins (sha256, created_at) VALUES (?, ?)", arguments: [digest, now]) }
    }
}

func p50(_ body: () throws -> Void) rethrows -> Double {
    var times: [Double] = []
    for _ in 0..<20 {
        let start = ContinuousClock.now
        try body()
        let elapsed = ContinuousClock.now - start
        times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
    }
    return times.sorted()[times.count / 2]
}

let cache = Cache(library: library)
let total = Int64(count) * (100 << 20)
let scan = try p50 { _ = try queue.read { db in try String.fetchAll(db, sql: "SELECT sha256 FROM blobs") } }
// Make room for one more 100 MiB model when the cache is full: the least recently used that
// may go, the first of them checked for readers.
let pick = try p50 { _ = try cache.evict(downTo: total - (100 << 20), dryRun: true) }
print("eviction choice among \(count) blobs (vs a bare scan)".padding(toLength: 54, withPad: " ", startingAt: 0),
      String(format: "%8.2fms %8.2fms %8.2f %10@ %7@", scan, pick, pick / scan, "<50ms", pick < 50 ? "ok" : "MISSED"))
