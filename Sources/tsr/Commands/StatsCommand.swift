import ArgumentParser
import TSRLibrary
import TSRRegistry

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Blobs, aliases, bytes stored and saved, per folder.")

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    struct Report: Codable {
        var home: String
        var blobs: Int
        var remoteBlobs: Int
        var quarantinedBlobs: Int
        var aliases: Int
        var bytesStored: Int64
        var bytesSaved: Int64
        var folders: [RegistryStats.Folder]

        enum CodingKeys: String, CodingKey {
            case home, blobs, aliases, folders
            case remoteBlobs = "remote_blobs", quarantinedBlobs = "quarantined_blobs"
            case bytesStored = "bytes_stored", bytesSaved = "bytes_saved"
        }
    }

    func run() throws {
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let stats = try library.registry.stats()
            let report = Report(
                home: library.layout.home, blobs: stats.blobs, remoteBlobs: stats.remoteBlobs, quarantinedBlobs: stats.quarantinedBlobs,
                aliases: stats.aliases, bytesStored: stats.bytesStored, bytesSaved: stats.bytesSaved, folders: stats.folders)
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
