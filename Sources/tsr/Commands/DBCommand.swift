import ArgumentParser
import TSRLibrary

struct DBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "The model database: files registered in place and the CivitAI cache.",
        subcommands: [Scan.self, Link.self, Cache.self, Search.self, List.self, Triggers.self, Prompts.self, Stats.self])

    struct Scan: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "scan", abstract: "Register model files where they are: hash them and read their headers, move nothing.")
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
                    Out.line("scanned \(counted(summary.files, "file")): \(summary.hashed) hashed, \(summary.unchanged) unchanged")
                    printIssues(summary.errors)
                }
                if !summary.errors.isEmpty { throw ExitCode(1) }
            }
        }
    }
}
