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
            let stats = report.stats
            Out.line("home:          \(report.home)")
            Out.line("blobs:         \(stats.blobs)" + (stats.remoteBlobs > 0 ? " (+\(stats.remoteBlobs) not downloaded)" : "")
                + (stats.quarantinedBlobs > 0 ? " (\(stats.quarantinedBlobs) quarantined)" : ""))
            Out.line("aliases:       \(stats.aliases)")
            Out.line("bytes stored:  \(formatBytes(stats.bytesStored))")
            Out.line("bytes saved:   \(formatBytes(stats.bytesSaved)) (by storing duplicates once)")
            for folder in stats.folders {
                Out.line("  \(folder.folder.padded(22)) \(String(folder.aliases).leftPadded(6)) files  \(formatBytes(folder.bytes).leftPadded(10))")
            }
        }
    }
}
