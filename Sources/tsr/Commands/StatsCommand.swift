import ArgumentParser
import TSRLibrary
import TSRRegistry

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Blobs, aliases, bytes stored and saved, per folder.")

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let report = try library.statsReport()
            if output.json {
                try Out.json(report)
                return
            }
            Out.line("home:          \(report.home)")
            Out.line("blobs:         \(report.blobs)" + (report.remoteBlobs > 0 ? " (+\(report.remoteBlobs) not downloaded)" : "")
                + (report.quarantinedBlobs > 0 ? " (\(report.quarantinedBlobs) quarantined)" : ""))
            Out.line("aliases:       \(report.aliases)")
            Out.line("bytes stored:  \(formatBytes(report.bytesStored))")
            Out.line("bytes saved:   \(formatBytes(report.bytesSaved)) (by storing duplicates once)")
            for folder in report.folders {
                Out.line("  \(folder.folder.padded(22)) \(String(folder.aliases).leftPadded(6)) files  \(formatBytes(folder.bytes).leftPadded(10))")
            }
        }
    }
}
