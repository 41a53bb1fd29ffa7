import ArgumentParser
import TSRLibrary

struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Remove blobs no alias names and temp files of writers that are gone.")

    @Flag(help: "Show what would be removed, remove nothing.")
    var dryRun = false

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runReporting(json: output.json) {
            let report = try Maintenance(library: try homeOptions.open()).collectGarbage(dryRun: dryRun)
            if output.json {
                try Out.json(report)
                return
            }
            let verb = dryRun ? "would remove" : "removed"
            for digest in report.blobs { Out.line("\(verb) unreferenced blob \(digest)") }
            for digest in report.orphanFiles { Out.line("\(verb) unregistered blob file \(digest)") }
            for path in report.tempFiles { Out.line("\(verb) stale temp file \(path)") }
            for path in report.partialDownloads { Out.line("\(verb) stopped download \(path)") }
            Out.line("\(verb) \(report.blobs.count + report.orphanFiles.count) blobs, \(report.tempFiles.count) temp files and \(report.partialDownloads.count) stopped downloads, \(formatBytes(report.bytesFreed))")
        }
    }
}
