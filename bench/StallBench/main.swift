// stat latency while reads wait on stalled downloads (issue: "stat p99 while 100 reads wait on
// downloads: goal < 10 ms"). Mounts in-process with a fetcher that never finishes during the
// measurement, parks 100 readers on 100 files whose bytes are not local, then stats 2,000 files
// never stat'ed before (each a lookup the daemon must answer). The baseline is the same
// measurement on the same mount with no read waiting, taken first in the same run.
import Foundation
import TSRLibrary
import TSRMount
import TSRRegistry
import TSRStore
import TSRTesting

final class StalledFetcher: BlobFetcher, @unchecked Sendable {
    // @unchecked: `released` is guarded by `lock`.
    private let lock = NSLock()
    private var released = false
    func release() { lock.withLock { released = true } }
    struct Stalled: Error {}
    func fetch(_ digest: Digest, size: Int64) throws {
        while !lock.withLock({ released }) { Thread.sleep(forTimeInterval: 0.02) }
        throw Stalled()
    }
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func statAll(_ paths: ArraySlice<String>) -> [Double] {
    paths.map { path in
        var st = stat()
        let start = DispatchTime.now().uptimeNanoseconds
        _ = stat(path, &st)
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }
}

let dir = try TempDirectory("tsr-stall-bench")
defer { dir.remove() }
let library = try Library(home: dir.path + "/home")
// 4,000 small present files (two batches of 2,000 never-stat'ed names) and 100 remote ones.
for i in 0..<4000 { try dir.write("models/loras/present/p\(i).pt", Array("present \(i)".utf8)) }
var options = ImportOptions()
options.mode = .move
_ = try Importer(library: library).run(root: dir.path + "/models", options: options)
for i in 0..<100 {
    let digest = try SHA256Hasher.digest(Array("remote \(i)".utf8))
    try library.registry.upsertBlob(BlobRecord(sha256: digest, size: 1 << 20, state: .remote))
    try library.registry.addAlias(folder: "checkpoints", path: "remote\(i).safetensors", sha256: digest, replace: false)
}
let fetcher = StalledFetcher()
let mountpoint = dir.path + "/mnt"
let mount = try InProcessMount(home: dir.path + "/home", mountpoint: mountpoint, fetcher: fetcher)
defer {
    fetcher.release()
    mount.stop()
}

let paths = (0..<4000).map { "\(mountpoint)/loras/present/p\($0).pt" }
let baseline = statAll(paths[0..<2000])

let readers = DispatchGroup()
for i in 0..<100 {
    readers.enter()
    Thread {
        _ = try? Data(contentsOf: URL(fileURLWithPath: "\(mountpoint)/checkpoints/remote\(i).safetensors"))
        readers.leave()
    }.start()
}
Thread.sleep(forTimeInterval: 1)
let underLoad = statAll(paths[2000..<4000])
fetcher.release()
_ = readers.wait(timeout: .now() + 20)

let p99Base = percentile(baseline, 0.99), p99Load = percentile(underLoad, 0.99)
let verdict = p99Load < 10 ? "ok" : "MISSED"
let name = "stat p99, 100 reads waiting (ms)"
print(name.padding(toLength: 54, withPad: " ", startingAt: 0)
      + String(format: " %9.3fms %9.3fms %8.2f %10@ %7@", p99Base, p99Load, p99Load / max(p99Base, 0.001), "<10ms", verdict))
