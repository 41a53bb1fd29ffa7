import ArgumentParser
import TSRLibrary

struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove blobs no alias names, temp files of writers that are gone, and quarantined bytes older than a week.")

    @Flag(help: "Show what would be removed, remove nothing.")
    var dryRun = false

    @Flag(help: "Remove every quarantined file, not only those older than a week.")
    var quarantine = false

    @Option(help: "Also evict cached models, least recently used first, until at most this much is here (200G, 512M, bytes). Pinned, open and source-less blobs stay.")
    var evictTo: String?

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        var target: Int64?
        if let evictTo {
            guard let bytes = Cache.parseSize(evictTo) else { throw ValidationError("--evict-to '\(evictTo)' is not a size: give 200G, 512M or a number of bytes") }
            target = bytes
        }
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let eviction = try target.map { try Cache(library: library).evict(downTo: $0, dryRun: dryRun) }
            let report = try Maintenance(library: library).collectGarbage(dryRun: dryRun, quarantineAge: quarantine ? 0 : Maintenance.quarantineAge)
            if output.json {
                if let eviction { return try Out.json(GCWithEviction(gc: report, eviction: eviction)) }
                try Out.json(report)
                return
            }
            if let eviction {
                let verb = dryRun ? "would evict" : "evicted"
                for item in eviction.evicted { Out.line("\(verb) \(item.sha256) (\(formatBytes(item.size)))") }
                Out.line("\(verb) \(counted(eviction.evicted.count, "blob")), \(formatBytes(eviction.freed)); \(formatBytes(eviction.remaining)) left")
                if !eviction.reached {
                    Out.line("could not get down to \(formatBytes(eviction.target)): \(formatBytes(eviction.pinned)) pinned, \(formatBytes(eviction.inUse)) open, \(formatBytes(eviction.unevictable)) with no source to fetch them again from")
                }
            }
            let verb = dryRun ? "would remove" : "removed"
            for digest in report.blobs { Out.line("\(verb) unreferenced blob \(digest)") }
            for digest in report.orphanFiles { Out.line("\(verb) unregistered blob file \(digest)") }
            for path in report.tempFiles { Out.line("\(verb) stale temp file \(path)") }
            for path in report.partialDownloads { Out.line("\(verb) stopped download \(path)") }
            for path in report.quarantinedFiles { Out.line("\(verb) quarantined file \(path)") }
            Out.line(
                "\(verb) \(report.blobs.count + report.orphanFiles.count) blobs, \(report.tempFiles.count) temp files, \(report.partialDownloads.count) stopped downloads and \(report.quarantinedFiles.count) quarantined files, \(formatBytes(report.bytesFreed))")
        }
    }
}

/// `tsr gc --evict-to … -j`: both reports.
struct GCWithEviction: Encodable {
    var gc: GCReport
    var eviction: EvictionReport
}
