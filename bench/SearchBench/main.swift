// `tsr db search` over a cache of 50,000 models (issue: "answers in under 50 ms"). The cache is
// synthetic, in the shapes of shared/fixtures/civitai (models with creators, tags, 1–3 versions,
// trigger words, files with hashes). Each query is timed through Registry.searchModels, the code
// `tsr db search` runs; the baseline is the seed system's `name LIKE '%q%'` search over the same
// database in the same run. Prints p50 and p99 over 200 queries.
import Foundation
import TSRRegistry
import TSRStore

let count = Int(ProcessInfo.processInfo.environment["BENCH_MODELS"] ?? "") ?? 50_000
var template = Array((NSTemporaryDirectory() + "tsr-searchbench-XXXXXX").utf8CString)
guard let made = mkdtemp(&template) else { fatalError("mkdtemp") }
let work = String(cString: made)
defer { try? FileManager.default.removeItem(atPath: work) }
let registry = try Registry(path: work + "/models.db")

let adjectives = ["cinematic", "vivid", "detailed", "retro", "neon", "soft", "painterly", "gothic", "pastel", "noir", "dreamy", "gritty", "storybook", "anime", "realistic", "ethereal"]
let nouns = ["portrait", "landscape", "character", "style", "lighting", "armor", "forest", "city", "ink", "watercolor", "pixel", "robot", "castle", "flower", "ocean", "dragon"]
let types = ["Checkpoint", "LORA", "TextualInversion", "LoCon", "VAE", "Controlnet"]
let bases = ["SD 1.5", "SDXL 1.0", "Pony", "Illustrious", "Flux.1 D"]

func pick<T>(_ list: [T]) -> T { list.randomElement()! }

FileHandle.standardError.write(Data("building a cache of \(count) models…\n".utf8))
var batch: [CachedModel] = []
for id in 1...count {
    let name = "\(pick(adjectives).capitalized) \(pick(nouns).capitalized) \(id)"
    let versions = (0..<Int.random(in: 1...3)).map { index in
        CachedVersion(
            civitaiId: Int64(id * 10 + index), name: "v\(3 - index)", baseModel: pick(bases), index: index,
            trainedWords: ["\(pick(adjectives))\(id)", pick(nouns)],
            files: [CachedFile(civitaiId: Int64(id * 100 + index), name: "m\(id)-\(index).safetensors", sizeKB: 1024, primary: true,
                               hashes: ["SHA256": String(format: "%064X", id * 10 + index), "AutoV2": String(format: "%010X", id)])])
    }
    batch.append(CachedModel(
        civitaiId: Int64(id), name: name, type: pick(types), creator: "creator\(id % 5000)", downloadCount: Int.random(in: 0...100_000),
        tags: [pick(nouns), pick(adjectives)], versions: versions, complete: true))
    // Pages of 100, as `tsr search` stores them.
    if batch.count == 100 || id == count {
        try registry.cacheModels(batch)
        batch.removeAll()
    }
}

let queries = (0..<200).map { i -> String in
    switch i % 4 {
    case 0: return pick(adjectives)
    case 1: return "\(pick(adjectives)) \(pick(nouns))"
    case 2: return "creator\(Int.random(in: 0..<5000))"
    default: return String(pick(nouns).prefix(4))
    }
}

func percentiles(_ body: (String) throws -> Void) rethrows -> (p50: Double, p99: Double) {
    var times: [Double] = []
    for query in queries {
        let start = ContinuousClock.now
        try body(query)
        let elapsed = ContinuousClock.now - start
        times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
    }
    times.sort()
    return (times[times.count / 2], times[min(times.count - 1, times.count * 99 / 100)])
}

let seed = try percentiles { _ = try registry.searchModelsLikeSeed($0, limit: 20) }
let ours = try percentiles { _ = try registry.searchModels(query: $0, type: nil, baseModel: nil, limit: 20) }
func row(_ label: String, _ base: Double, _ value: Double) {
    print(label.padding(toLength: 54, withPad: " ", startingAt: 0),
          String(format: "%8.2fms %8.2fms %8.2f %10@ %7@", base, value, value / base, "<50ms", value < 50 ? "ok" : "MISSED"))
}
row("db search p50, \(count) models (vs LIKE)", seed.p50, ours.p50)
row("db search p99, \(count) models (vs LIKE)", seed.p99, ours.p99)
