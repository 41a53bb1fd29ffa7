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
            let civitai = try CivitAIInfo(library: library, sha256: report.sha256)
            if output.json {
                try Out.json(ReportWithCivitAI(report: report, civitai: civitai))
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
            if let civitai {
                let link = civitai.status.link
                Out.line("civitai:      \(LogText.escaped(link.modelName)) — \(LogText.escaped(link.versionName)) (\(link.type), model \(link.modelId), version \(link.versionId))")
                if let creator = link.creator { Out.line("creator:      \(LogText.escaped(creator))") }
                if !civitai.triggerWords.isEmpty { Out.line("trigger words: \(civitai.triggerWords.map(LogText.escaped).joined(separator: ", "))") }
                if let newest = civitai.status.newestVersionName, let id = civitai.status.newestVersionId {
                    let note = id == link.versionId ? "this is the newest version"
                        : civitai.status.updateAvailable ? "\(LogText.escaped(newest)) (version \(id)): an update is available (`tsr update`)"
                        : "\(LogText.escaped(newest)) (version \(id)), which is here already"
                    Out.line("newest:       \(note)")
                }
            }
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

/// What the CivitAI cache knows of a file (`tsr info`), when it is linked: the shared status
/// (link, newest version, update available) and the version's trigger words.
struct CivitAIInfo: Encodable {
    var status: CivitAIStatus
    var triggerWords: [String]

    init?(library: Library, sha256: String) throws {
        guard let digest = Digest(rawValue: sha256), let status = try library.registry.civitaiStatus(digest) else { return nil }
        self.status = status
        triggerWords = try library.registry.triggerWords(versionId: status.link.versionId)
    }

    enum CodingKeys: String, CodingKey { case triggerWords = "trigger_words" }

    func encode(to encoder: any Encoder) throws {
        try status.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(triggerWords, forKey: .triggerWords)
    }
}

/// `tsr info --json`: the report, with `civitai` when the file is linked.
struct ReportWithCivitAI: Encodable {
    var report: InfoReport
    var civitai: CivitAIInfo?

    func encode(to encoder: any Encoder) throws {
        try report.encode(to: encoder)
        var container = encoder.container(keyedBy: Key.self)
        try container.encodeIfPresent(civitai, forKey: .civitai)
    }

    enum Key: String, CodingKey { case civitai }
}
