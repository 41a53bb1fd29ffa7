// Download + verify of 1 GiB from a local HTTP server through the fetch engine, against curl of
// the same file from the same server in the same run (issue: "≤ 1.1× curl -o"). The server sends
// from the page cache (sendfile). Three rows:
//   1. both writing to tmpfs: what the engine itself costs (transfer, writing and hashing beside
//      it, verify, publish), with no disk in the way;
//   2. on disk, tsr (which fsyncs before publishing a blob) vs `curl -o` + `sync FILE`: the same
//      durability;
//   3. on disk vs plain `curl -o`, which leaves the bytes in the page cache unsynced.
// Best of $BENCH_REPEAT (default 3).
import Foundation
import TSRFetch
import TSRLibrary
import TSRStore
import TSRTesting

let environment = ProcessInfo.processInfo.environment
let repeats = Int(environment["BENCH_REPEAT"] ?? "") ?? 3
let size = Int(environment["BENCH_FETCH_BYTES"] ?? "") ?? 1 << 30

func makeTemp(under base: String) -> String {
    var bytes = Array((base as NSString).appendingPathComponent("tsr-fetchbench-XXXXXX").utf8CString)
    guard let made = mkdtemp(&bytes) else { fatalError("cannot create a temp dir under \(base)") }
    return String(cString: made)
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

let served = makeTemp(under: NSTemporaryDirectory())
defer { try? FileManager.default.removeItem(atPath: served) }
let source = served + "/model.bin"
let made = try Shell.run("/bin/dd", ["if=/dev/urandom", "of=\(source)", "bs=8M", "count=\(size >> 23)", "status=none"])
guard made.status == 0 else { fatalError("dd failed: \(made.stderr)") }
let (digest, _) = try FileHasher.hash(path: source)
let server = try FixtureServer { _, connection in connection.sendFile(path: source, size: size) }
let url = server.baseURL + "/model.bin"

/// Best times of (curl -o, curl -o + sync, tsr) writing under `base`.
func measure(under base: String) throws -> (curl: Double, curlSynced: Double, tsr: Double) {
    let work = makeTemp(under: base)
    defer { try? FileManager.default.removeItem(atPath: work) }
    var best = (curl: Double.infinity, curlSynced: Double.infinity, tsr: Double.infinity)
    for round in 0..<repeats {
        let target = work + "/curl.out"
        best.curl = min(best.curl, try seconds { _ = try Shell.run("/usr/bin/curl", ["-s", "-f", "-o", target, url]) })
        try? FileManager.default.removeItem(atPath: target)
        best.curlSynced = min(best.curlSynced, try seconds {
            _ = try Shell.run("/usr/bin/curl", ["-s", "-f", "-o", target, url])
            _ = try Shell.run("/bin/sync", [target])
        })
        try? FileManager.default.removeItem(atPath: target)
        let home = work + "/home-\(round)"
        let library = try Library(home: home)
        let downloader = Downloader(store: library.store, registry: library.registry, settings: FetchSettings(), credentials: Credentials())
        best.tsr = min(best.tsr, try seconds {
            let committed = try downloader.download(DownloadRequest(url: url, expected: digest, expectedSize: Int64(size)))
            guard committed.digest == digest else { fatalError("wrong digest") }
        })
        try? FileManager.default.removeItem(atPath: home)
    }
    return best
}

func row(_ label: String, _ baseline: Double, _ ours: Double, goal: Double?) {
    let ratio = ours / baseline
    let verdict = goal.map { ratio <= $0 ? "ok" : "MISSED" } ?? "-"
    print(label.padding(toLength: 54, withPad: " ", startingAt: 0),
          String(format: "%9.3fs %9.3fs %8.2f %10@ %7@", baseline, ours, ratio, goal.map { "<=\($0)" } ?? "(info)", verdict))
}

let mib = size >> 20
if FileManager.default.fileExists(atPath: "/dev/shm") {
    let memory = try measure(under: "/dev/shm")
    row("fetch+verify \(mib) MiB, tmpfs / curl -o", memory.curl, memory.tsr, goal: 1.1)
}
let disk = try measure(under: environment["BENCH_DIR"] ?? NSTemporaryDirectory())
row("fetch+verify+fsync \(mib) MiB / curl -o+sync", disk.curlSynced, disk.tsr, goal: 1.1)
row("fetch+verify+fsync \(mib) MiB / curl -o", disk.curl, disk.tsr, goal: nil)
