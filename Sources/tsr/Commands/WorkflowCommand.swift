import ArgumentParser
import Foundation
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRWorkflow

struct WorkflowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflow",
        abstract: "Add workflows, see what they need, and pull it.",
        discussion: """
            Reads the seed format (workflow.dependencies), ComfyUI's UI format (properties.models of \
            nodes and subgraphs, a top-level models list) and the API format (loader inputs: names \
            only, matched against the registry). Each model becomes workflows/<name>/<folder>/<file> \
            in the mount and, unless the folder already has a different file of that name, a name \
            in the folder view too.
            """,
        subcommands: [Add.self, Check.self, Pull.self, List.self, Show.self, Remove.self])

    static func readWorkflow(_ path: String) throws -> ParsedWorkflow {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure("\(path): cannot read the file") }
        do { return try WorkflowParser.parse(data) } catch { throw Failure("\(path): \(error)") }
    }

    static func printCheck(_ check: WorkflowCheck, json: Bool) throws {
        if json { return try Out.json(check) }
        for entry in check.existing {
            Out.line("  here      \(entry.folder)/\(entry.filename)  \(formatBytes(entry.size ?? 0))\(entry.action == "symlink" ? "  (stored under another name)" : "")")
        }
        for entry in check.missing {
            let size = entry.size.map(formatBytes) ?? "size unknown"
            Out.line("  \(entry.state == "unresolved" ? "unresolved" : "missing   ") \(entry.folder)/\(entry.filename)  \(size)\(entry.note.map { "  (\($0))" } ?? "")")
        }
        Out.line("\(check.existing.count) here, \(check.missing.count) missing: \(formatBytes(check.totalDownloadSize)) to download, \(formatBytes(check.totalSavedSize)) already here")
        if !check.problems.isEmpty {
            Out.line("\(check.problems.count) problem\(check.problems.count == 1 ? "" : "s"):")
            for problem in check.problems { Out.line("  \(problem.entry): \(problem.message)") }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a workflow JSON file and register what it needs.")
        @Argument(help: "The workflow file (.json).") var file: String
        @Option(help: "The workflow's name (default: the file name without .json).") var name: String?
        @Flag(help: "Replace a workflow of the same name.") var force = false
        @OptionGroup var fetchOptions: FetchOptions
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let base = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            let chosen: String
            do { chosen = try WorkflowParser.validateName(name ?? base) } catch { throw ValidationError(error.description) }
            try runReporting(json: output.json) {
                let parsed = try WorkflowCommand.readWorkflow(file)
                let library = try homeOptions.open()
                var credentials = try fetchOptions.credentials(for: FetchOptions.kinds(of: parsed.dependencies, settings: fetchOptions.settings))
                TokenPrompt.askUpFront(
                    for: Set(parsed.dependencies.compactMap(\.authProvider)), why: "the workflow says some of its files need", credentials: &credentials)
                let service = WorkflowService(fetcher: Fetcher(library: library, settings: fetchOptions.settings, credentials: credentials))
                let check = try service.add(parsed, name: chosen, replace: force)
                if !output.json { Out.line("workflow \(chosen) (\(parsed.format.rawValue) format): \(parsed.dependencies.count) models") }
                try WorkflowCommand.printCheck(check, json: output.json)
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check", abstract: "What a workflow (a name, or a JSON file not added) needs that is not here.",
            discussion: "--json prints the seed's check-dependencies answer: missing, existing, total_download_size, total_saved_size.")
        @Argument(help: "A workflow name or a .json file.") var workflow: String
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let service = WorkflowService(fetcher: Fetcher(library: library, settings: FetchSettings(), credentials: Credentials()))
                let check: WorkflowCheck
                if FileManager.default.fileExists(atPath: workflow) && workflow.hasSuffix(".json") {
                    check = service.check(try WorkflowCommand.readWorkflow(workflow))
                } else {
                    check = try service.check(name: workflow)
                }
                try WorkflowCommand.printCheck(check, json: output.json)
            }
        }
    }

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pull", abstract: "Download what a workflow needs that is not here, several files at once.",
            discussion: "--json prints NDJSON progress events (message, progress, bytes, total_bytes) and a completed or error line per file.")
        @Argument(help: "The workflow's name.") var name: String
        @Option(help: "Files downloaded at once.") var jobs = 3
        @Flag(help: "Pin what the workflow needs, so the bounded cache never evicts it (tsr unpin --workflow NAME undoes it).") var pin = false
        @OptionGroup var fetchOptions: FetchOptions
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            guard (1...16).contains(jobs) else { throw ValidationError("--jobs must be 1…16") }
        }

        func run() throws {
            let reporter = DownloadReporter(json: output.json)
            var failures = 0
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                // The key (--token-stdin) is for the service the missing files come from.
                let plan = try WorkflowService(fetcher: Fetcher(library: library, settings: fetchOptions.settings, credentials: Credentials())).pullPlan(name: name)
                let digests = plan.items.compactMap { item -> Digest? in if case let .blob(digest, _) = item { return digest } else { return nil } }
                let trusted = plan.items.compactMap { item -> String? in if case let .trusted(_, url, _, _, _) = item { return url } else { return nil } }
                let kinds = FetchOptions.kinds(ofSourcesOf: digests, in: library)
                    .union(trusted.compactMap { try? SourceSpec.parse($0, settings: fetchOptions.settings).0.kind })
                var credentials = try fetchOptions.credentials(for: kinds)
                let planner = WorkflowService(fetcher: Fetcher(library: library, settings: fetchOptions.settings, credentials: credentials))
                TokenPrompt.askUpFront(for: try planner.keysNeeded(name: name), why: "\(name) says some of its missing files need", credentials: &credentials)
                let service = WorkflowService(fetcher: Fetcher(library: library, settings: fetchOptions.settings, credentials: credentials))
                let (items, unresolved) = try service.pullPlan(name: name)
                for line in unresolved { reporter.finished(line, result: .failure(Failure("unresolved; nothing to download it from"))) }
                failures += unresolved.count
                if items.isEmpty && unresolved.isEmpty && !output.json { Out.line("nothing to pull: everything \(name) needs is here") }
                // Pinned before the downloads, so that making room for one never evicts another.
                if pin { try Cache(library: library).pin(try Cache(library: library).workflowDigests(name)) }
                let sizes = items.map { item -> Int64 in
                    guard case let .blob(digest, _) = item else { return 0 }
                    return (try? library.registry.blob(digest))?.size ?? 0
                }
                reporter.plan(bytes: sizes.reduce(0, +), files: items.count)
                let settings = fetchOptions.settings
                failures += downloadAll(items, jobs: jobs, reporter: reporter, credentials: credentials, label: { $0.label }) { item, credentials, progress in
                    try WorkflowService(fetcher: Fetcher(library: library, settings: settings, credentials: credentials)).pull(item, progress: progress)
                }
                // Entries resolved by their first download (trusted URLs) have a hash only now.
                if pin { try Cache(library: library).pin(try Cache(library: library).workflowDigests(name)) }
            }
            if failures > 0 { throw ExitCode(1) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Workflows with their model counts.")
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        struct Item: Encodable {
            var name, format: String
            var models, missing: Int
            var totalSize: Int64
            enum CodingKeys: String, CodingKey {
                case name, format, models, missing
                case totalSize = "total_size"
            }
        }

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let items = try library.registry.workflows().map {
                    Item(name: $0.workflow.name, format: $0.workflow.format, models: $0.entries, missing: $0.missing, totalSize: $0.totalSize)
                }
                if output.json { return try Out.json(items) }
                if items.isEmpty { Out.line("no workflows (add one with `tsr workflow add FILE.json`)") }
                for item in items {
                    Out.line("\(item.name)  \(item.models) models, \(item.missing) missing, \(formatBytes(item.totalSize))  (\(item.format) format)")
                }
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "A workflow's models and their states.")
        @Argument(help: "The workflow's name.") var name: String
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let service = WorkflowService(fetcher: Fetcher(library: library, settings: FetchSettings(), credentials: Credentials()))
                let check = try service.check(name: name)
                if output.json { return try Out.json(check.existing + check.missing) }
                try WorkflowCommand.printCheck(check, json: false)
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove a workflow (names it added to folder views stay; blobs stay until `tsr gc`).")
        @Argument(help: "The workflow's name.") var name: String
        @OptionGroup var homeOptions: HomeOptions

        func run() throws {
            try runReporting(json: false) {
                try homeOptions.open().registry.removeWorkflow(named: name)
                Out.line("removed workflow \(name)")
            }
        }
    }
}
