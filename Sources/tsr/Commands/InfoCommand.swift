import ArgumentParser
import TSRLibrary
import TSRRegistry
import TSRStore

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show a model's hash, size, header metadata, base model and aliases.")

    @Argument(help: "A file path, an alias (FOLDER/NAME) or a SHA-256.")
    var target: String

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let report = try Inspector(library: library).info(target, cwd: currentDirectory)
            if output.json {
                try Out.json(report)
                return
            }
            if let path = report.path { Out.line("path:         \(path)") }
            Out.line("sha256:       \(report.sha256)")
            Out.line("size:         \(report.size) (\(formatBytes(report.size)))")
            if let state = report.state {
                let failure = state == BlobState.remote.rawValue ? (Digest(rawValue: report.sha256).flatMap { try? library.registry.fetchFailure($0) }) : nil
                Out.line("state:        \(failure?.summary ?? state)")
            }
            Out.line("base model:   \(report.baseModel)")
            if let count = report.tensorCount { Out.line("tensors:      \(count)") }
            if let size = report.headerSize { Out.line("header size:  \(size)") }
            Out.line("aliases:      \(report.aliases.isEmpty ? "(none)" : report.aliases.joined(separator: ", "))")
            if !report.metadata.isEmpty {
                Out.line("metadata:")
                // Header values come from whoever made the file: control characters (escape
                // sequences that would drive the terminal, newlines) are shown escaped.
                for key in report.metadata.keys.sorted() {
                    var value = LogText.escaped(report.metadata[key] ?? "")
                    if value.count > 120 { value = String(value.prefix(117)) + "..." }
                    Out.line("  \(LogText.escaped(key)): \(value)")
                }
            }
        }
    }
}
