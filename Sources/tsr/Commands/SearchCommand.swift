import ArgumentParser
import Foundation
import TSRCivitAI
import TSRRegistry

struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search CivitAI online; every model seen is cached for `tsr db search` offline.",
        discussion: "Pages with CivitAI's cursor; --json prints {items, next_cursor}. Continue with --cursor.")

    @Argument(help: "Words to search for.") var query: [String] = []
    @Option(name: [.short, .customLong("type")], help: "Model type, repeatable (Checkpoint, LORA, TextualInversion …).") var types: [String] = []
    @Option(name: [.short, .customLong("base")], help: "Base model, repeatable (SDXL 1.0, Pony …).") var bases: [String] = []
    @Option(help: "Highest Rated, Most Downloaded or Newest.") var sort: String?
    @Option(help: "AllTime, Year, Month, Week or Day.") var period: String?
    @Option(help: "Only models with this tag.") var tag: String?
    @Option(help: "Only models by this creator.") var user: String?
    @Flag(inversion: .prefixedNo, help: "Include (or exclude) NSFW models.") var nsfw: Bool?
    @Option(name: [.short, .customLong("limit")], help: "Results per page (1–100).") var limit = 20
    @Option(help: "Pages to fetch.") var pages = 1
    @Option(help: "Continue from this cursor (printed by a previous search).") var cursor: String?
    @OptionGroup var fetchOptions: FetchOptions
    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    struct Result: Encodable {
        var items: [DBCommand.Search.Hit]
        var nextCursor: String?
        enum CodingKeys: String, CodingKey {
            case items
            case nextCursor = "next_cursor"
        }
    }

    func validate() throws {
        guard (1...100).contains(limit) else { throw ValidationError("--limit must be 1…100") }
        guard (1...50).contains(pages) else { throw ValidationError("--pages must be 1…50") }
    }

    func run() throws {
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let client = CivitAIClient(settings: fetchOptions.settings, credentials: try fetchOptions.credentials(for: ["civitai"]), registry: library.registry)
            var search = CivitAISearch()
            search.query = query.isEmpty ? nil : query.joined(separator: " ")
            search.types = types
            search.baseModels = bases
            search.sort = sort
            search.period = period
            search.tag = tag
            search.username = user
            search.nsfw = nsfw
            search.limit = limit
            var next = cursor
            var hits: [DBCommand.Search.Hit] = []
            for _ in 0..<pages {
                let page = try client.search(search, cursor: next)
                hits += page.models.map { model in
                    let latest = model.versions.first
                    return DBCommand.Search.Hit(
                        civitaiId: model.civitaiId, name: model.name, type: model.type, creator: model.creator, baseModel: latest?.baseModel,
                        latestVersion: latest?.name, downloads: model.downloadCount, tags: model.tags, triggerWords: latest?.trainedWords ?? [])
                }
                next = page.next
                if next == nil { break }
            }
            if output.json { return try Out.json(Result(items: hits, nextCursor: next)) }
            if hits.isEmpty { Out.line("CivitAI found nothing") }
            for hit in hits {
                Out.line("\(hit.civitaiId)  \(hit.name)  [\(hit.type), \(hit.baseModel ?? "?")] by \(hit.creator ?? "unknown")")
            }
            if let next { Out.line("more: tsr search … --cursor \(next)") }
        }
    }
}
