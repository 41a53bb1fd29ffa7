import ArgumentParser
import TSRLibrary
import TSRStore

struct DBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "The model database: files registered in place and the CivitAI cache.",
        subcommands: [Scan.self, Link.self, Cache.self, Search.self, List.self, Triggers.self, Prompts.self, Stats.self])

    struct Scan: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "scan", abstract: "Register model files where they are: hash them and read their headers, move nothing.",
            discussion: """
                Unchanged files (same device, inode, size and modification time) are not hashed again; \
                files an earlier scan of DIRECTORY found that are gone are forgotten. Files whose \
                SHA-256 the CivitAI cache knows are linked at once (`tsr db list` shows them); \
                duplicates — content another file or the store already has — are listed by hash.
                """)
        @Argument(help: "A directory to scan.") var directory: String
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let root = directory.hasPrefix("/") ? directory : currentDirectory + "/" + directory
                let summary = try withProgress("scanning", enabled: !output.json) { progress in
                    try Scanner(library: library).run(root: root, progress: progress)
                }
                if output.json {
                    try Out.json(summary)
                } else {
                    let gone = summary.gone > 0 ? ", \(summary.gone) gone (forgotten)" : ""
                    Out.line("scanned \(counted(summary.files, "file")): \(summary.hashed) hashed, \(summary.unchanged) unchanged\(gone)")
                    if summary.duplicates > 0 {
                        Out.line("  duplicates: \(summary.duplicates) (content another file already has)")
                        for group in summary.duplicateGroups {
                            let stored = group.names.isEmpty ? "" : "; stored as \(group.names.joined(separator: ", "))"
                            Out.line("    \(group.sha256.prefix(12)) \(formatBytes(group.size)): \(group.paths.map(LogText.escaped).joined(separator: ", "))\(stored)")
                        }
                    }
                    printIssues(summary.errors)
                }
                if !summary.errors.isEmpty { throw ExitCode(1) }
            }
        }
    }
}
