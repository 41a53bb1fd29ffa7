import ArgumentParser
import TSRLibrary
import TSRRegistry
import TSRStore

/// One `tsr list --json` item.
struct ListItem: Codable {
    var folder: String
    var name: String
    var sha256: String
    var size: Int64
    var state: String
    var baseModel: String
    /// Why the last download failed and when the mount tries again (state "failed").
    var error: String?
    /// Never evicted from the cache (tsr pin).
    var pinned: Bool

    enum CodingKeys: String, CodingKey {
        case folder, name, sha256, size, state, error, pinned
        case baseModel = "base_model"
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List aliases with their size, state and base model.")

    @Option(name: .long, help: "Only this folder key (e.g. loras).")
    var folder: String?

    @Option(name: [.short, .long], help: "Only this base model (e.g. \"SDXL 1.0\", unknown).")
    var base: String?

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let key = try folder.map { (value) throws -> String in
                do throws(NameError) { return try ModelPath.validateFolder(value) } catch { throw ValidationError(error.description) }
            }
            let rows = try library.registry.listing(folder: key, baseModel: base)
            let failures = try library.registry.fetchFailures()
            let items = rows.map { row in
                let failure = row.state == .remote ? failures[row.sha256] : nil
                return ListItem(
                    folder: row.folder, name: row.path, sha256: row.sha256.rawValue, size: row.size,
                    state: failure != nil ? "failed" : row.evicted ? "evicted" : row.state.rawValue,
                    baseModel: row.baseModel ?? BaseModel.unknown, error: failure?.summary, pinned: row.pinned)
            }
            if output.json {
                try Out.json(items)
                return
            }
            if items.isEmpty {
                Out.line("no models" + (folder != nil || base != nil ? " match" : " yet: tsr import DIR"))
                return
            }
            let width = min(70, items.map { $0.folder.count + 1 + $0.name.count }.max() ?? 0)
            for item in items {
                let name = item.folder + "/" + item.name
                let padded = name.count < width ? name + String(repeating: " ", count: width - name.count) : name
                Out.line("\(padded)  \(formatBytes(item.size).leftPadded(10))  \(item.state.padded(7))  \(item.baseModel.padded(12))  \(item.sha256.prefix(12))\(item.pinned ? "  pinned" : "")")
            }
            for item in items {
                if let error = item.error { Out.line("\(item.folder)/\(item.name): \(error) (`tsr pull \(item.folder)/\(item.name)` tries now)") }
            }
        }
    }
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
