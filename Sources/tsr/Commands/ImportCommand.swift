import ArgumentParser
import TSRLibrary
import TSRStore

extension AdoptMode: EnumerableFlag {
    public static func help(for value: AdoptMode) -> ArgumentHelp? {
        switch value {
        case .link: return "Hard-link each file into the store: the original path keeps working (default; copies across filesystems)."
        case .move: return "Move each file into the store; the original is removed once its blob is committed and registered."
        case .copy: return "Copy each file (a reflink clone where the filesystem supports it)."
        }
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import an existing ComfyUI models tree: every file stored once, every path an alias.",
        discussion: """
            The first directory level is the folder key (checkpoints/, loras/ …) and the rest the \
            alias path, as ComfyUI names files. Re-running on an unchanged tree hashes nothing.
            """)

    @Argument(help: "The models directory (ComfyUI's models/), or one folder with --folder.")
    var directory: String

    @Option(help: "Treat DIRECTORY as this folder key (e.g. loras) instead of a whole models tree.")
    var folder: String?

    @Option(help: "Of a whole models tree, import only these folders (comma-separated keys, e.g. checkpoints,loras).")
    var only: String?

    @Flag(help: "Hash and report, change nothing.")
    var dryRun = false

    @Flag(help: "Import every file (sidecars too), not only model extensions.")
    var all = false

    @Flag var mode: AdoptMode?

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            var options = ImportOptions()
            options.mode = mode ?? .link
            options.modeExplicit = mode != nil
            options.folder = folder
            options.only = only.map { Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }) }
            options.dryRun = dryRun
            options.includeAll = all
            let root = directory.hasPrefix("/") ? directory : currentDirectory + "/" + directory
            let summary = try withProgress("hashing", enabled: !output.json) { progress in
                try Importer(library: library).run(root: root, options: options, progress: progress)
            }
            if output.json {
                try Out.json(summary)
            } else {
                let verb = summary.dryRun ? "Would import" : "Imported"
                Out.line("\(verb) \(counted(summary.files, "file")): \(summary.imported) hashed, \(summary.unchanged) unchanged")
                Out.line("  unique blobs: \(summary.uniqueBlobs), duplicates: \(summary.duplicates), bytes saved: \(formatBytes(summary.bytesSaved))")
                if !summary.dryRun {
                    Out.line("  aliases created: \(summary.aliasesCreated), replaced: \(summary.aliasesReplaced)" + (options.mode == .move ? ", originals removed: \(summary.originalsRemoved)" : ""))
                }
                if summary.skipped > 0 { Out.line("  skipped \(summary.skipped) non-model or partial files" + (all ? "" : " (--all takes sidecars too)")) }
                printIssues(summary.errors)
            }
            if !summary.errors.isEmpty { throw ExitCode(1) }
        }
    }
}
