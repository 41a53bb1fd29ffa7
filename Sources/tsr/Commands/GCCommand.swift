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

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runReporting(json: output.json) {
            let report = try Maintenance(library: try homeOptions.open()).collectGarbage(dryRun: dryRun, quarantineAge: quarantine ? 0 : Maintenance.quarantineAge)
            if output.json {
                try Out.json(report)
                return
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
