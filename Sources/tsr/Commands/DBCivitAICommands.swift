import ArgumentParser
import Foundation
import TSRCivitAI
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore

/// A file, alias or SHA-256 as the digest it stands for.
func digest(of argument: String, in library: Library) throws -> Digest {
    let report = try Inspector(library: library).info(argument, cwd: currentDirectory)
    guard let digest = Digest(rawValue: report.sha256) else { throw Failure("\(argument): no SHA-256") }
    return digest
}

extension DBCommand {
    struct Link: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "link", abstract: "Link stored and scanned files to CivitAI by SHA-256 and cache their models.",
            discussion: """
                Asks CivitAI's /model-versions/by-hash for every file not linked yet; a hit caches the \
                version and its whole model (trigger words, example prompts, creator, tags). A file \
                CivitAI does not know is remembered and not asked about again unless --retry-unknown. \
                Without network the work already done is kept. The mount's by-base/ and by-creator/ \
                follow within a second.
                """)
        @Flag(help: "Ask again about files CivitAI did not know.") var retryUnknown = false
        @OptionGroup var fetchOptions: FetchOptions
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        struct Summary: Encodable {
            var checked = 0, linked = 0, notFound = 0
            var errors: [FileIssue] = []
            var stoppedEarly: String?
            enum CodingKeys: String, CodingKey {
                case checked, linked, errors
                case notFound = "not_found", stoppedEarly = "stopped_early"
            }
        }

        func run() throws {
            var summary = Summary()
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let credentials = try fetchOptions.credentials(for: ["civitai"])
                let client = CivitAIClient(settings: fetchOptions.settings, credentials: credentials, registry: library.registry)
                let candidates = try library.registry.civitaiLinkCandidates(retryUnknown: retryUnknown)
                for digest in candidates {
                    summary.checked += 1
                    do {
                        switch try client.link(digest) {
                        case .linked: summary.linked += 1
                        case .notFound: summary.notFound += 1
                        }
                    } catch let error as CivitAIError where error.isUnreachable {
                        summary.checked -= 1
                        summary.stoppedEarly = "\(error); \(summary.linked) linked so far are kept, run `tsr db link` again later"
                        break
                    } catch {
                        summary.errors.append(FileIssue(path: digest.rawValue, message: "\(error)"))
                    }
                }
                // Scanned files take their links from the cache (the seed's v_local_files_full).
                try library.registry.linkLocalFiles()
                if output.json {
                    try Out.json(summary)
                } else {
                    Out.line("checked \(summary.checked) of \(candidates.count): \(summary.linked) linked, \(summary.notFound) not on CivitAI")
                    if let stopped = summary.stoppedEarly { Out.error(stopped) }
                    printIssues(summary.errors)
                }
            }
            if summary.stoppedEarly != nil || !summary.errors.isEmpty { throw ExitCode(1) }
        }
    }

    struct Cache: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cache", abstract: "Fetch and cache one CivitAI model with all its versions, files, images and prompts.")
        @Argument(help: "The CivitAI model id.") var modelId: Int64
        @OptionGroup var fetchOptions: FetchOptions
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let client = CivitAIClient(settings: fetchOptions.settings, credentials: try fetchOptions.credentials(for: ["civitai"]), registry: library.registry)
                let model = try client.cacheModel(modelId)
                if output.json {
                    try Out.json(["civitai_id": "\(model.civitaiId)", "name": model.name, "type": model.type, "versions": "\(model.versions.count)"])
                } else {
                    Out.line("cached \(model.name) (\(model.type), \(model.versions.count) version\(model.versions.count == 1 ? "" : "s"))")
                }
            }
        }
    }

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "search", abstract: "Search the cached CivitAI models offline (names, tags, creators, trigger words).")
        @Argument(help: "Words to look for (prefixes match).") var query: [String] = []
        @Option(name: [.short, .customLong("type")], help: "Model type (Checkpoint, LORA, …).") var type: String?
        @Option(name: [.short, .customLong("base")], help: "Base model (SDXL 1.0, Pony, …).") var base: String?
        @Option(name: [.short, .customLong("limit")], help: "At most this many results.") var limit = 20
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        struct Hit: Encodable {
            var civitaiId: Int64
            var name, type: String
            var creator, baseModel, latestVersion: String?
            var downloads: Int?
            var tags, triggerWords: [String]
            enum CodingKeys: String, CodingKey {
                case name, type, creator, downloads, tags
                case civitaiId = "civitai_id", baseModel = "base_model", latestVersion = "latest_version", triggerWords = "trigger_words"
            }
        }

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let hits = try library.registry.searchModels(query: query.isEmpty ? nil : query.joined(separator: " "), type: type, baseModel: base, limit: max(1, limit))
                if output.json {
                    return try Out.json(hits.map {
                        Hit(civitaiId: $0.civitaiId, name: $0.name, type: $0.type, creator: $0.creator, baseModel: $0.baseModel,
                            latestVersion: $0.latestVersion, downloads: $0.downloadCount, tags: $0.tags, triggerWords: $0.triggerWords)
                    })
                }
                if hits.isEmpty { Out.line("no cached model matches (cache more with `tsr db link` or `tsr db cache ID`)") }
                for hit in hits {
                    Out.line("\(hit.civitaiId)  \(hit.name)  [\(hit.type), \(hit.baseModel ?? "?")] by \(hit.creator ?? "unknown")\(hit.triggerWords.isEmpty ? "" : "  triggers: " + hit.triggerWords.prefix(5).joined(separator: ", "))")
                }
            }
        }
    }

    struct Triggers: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "triggers", abstract: "The trigger words of a linked file, in order.")
        @Argument(help: "A file, an alias (FOLDER/NAME) or a SHA-256.") var target: String
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let sha = try digest(of: target, in: library)
                guard let link = try library.registry.civitaiLink(sha) else {
                    throw Failure("\(target) is not linked to CivitAI; run `tsr db link` first")
                }
                let words = try library.registry.triggerWords(versionId: link.versionId)
                if output.json { return try Out.json(words) }
                if words.isEmpty { Out.line("\(link.modelName) (\(link.versionName)) has no trigger words") }
                for word in words { Out.line(word) }
            }
        }
    }

    struct Prompts: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prompts", abstract: "Generation parameters of a model's example images (prompt, negative prompt, sampler, steps, cfg, seed, resources).")
        @Argument(help: "A CivitAI model id, a file, an alias (FOLDER/NAME) or a SHA-256.") var target: String
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        struct Item: Encodable {
            var versionId: Int64
            var image: String?
            var prompt, negativePrompt, sampler, steps, cfgScale, seed: String?
            var params: [String: String]
            var resources: [[String: String]]
            enum CodingKeys: String, CodingKey {
                case image, prompt, sampler, steps, seed, params, resources
                case versionId = "version_id", negativePrompt = "negative_prompt", cfgScale = "cfg_scale"
            }
        }

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let versions: [Int64]
                if let model = Int64(target), Digest(rawValue: target) == nil, !FileManager.default.fileExists(atPath: target) {
                    versions = try library.registry.versionIds(modelId: model)
                    if versions.isEmpty { throw Failure("model \(model) is not cached; run `tsr db cache \(model)`") }
                } else {
                    guard let link = try library.registry.civitaiLink(try digest(of: target, in: library)) else {
                        throw Failure("\(target) is not linked to CivitAI; run `tsr db link` first")
                    }
                    versions = [link.versionId]
                }
                let prompts = try library.registry.examplePrompts(versionIds: versions)
                let items = prompts.map { p in
                    Item(
                        versionId: p.versionId, image: p.imageURL, prompt: p.params["prompt"], negativePrompt: p.params["negativePrompt"],
                        sampler: p.params["sampler"], steps: p.params["steps"], cfgScale: p.params["cfgScale"], seed: p.params["seed"],
                        params: p.params,
                        resources: p.resources.map { r in
                            var out: [String: String] = [:]
                            out["name"] = r.name
                            out["type"] = r.type
                            out["hash"] = r.hash
                            out["weight"] = r.weight.map { String($0) }
                            out["model_version_id"] = r.modelVersionId.map { String($0) }
                            return out
                        })
                }
                if output.json { return try Out.json(items) }
                if items.isEmpty { Out.line("no example image of it carries generation parameters") }
                for item in items {
                    Out.line("— version \(item.versionId)\(item.image.map { "  \($0)" } ?? "")")
                    if let prompt = item.prompt { Out.line("  prompt:   \(prompt)") }
                    if let negative = item.negativePrompt { Out.line("  negative: \(negative)") }
                    Out.line("  sampler \(item.sampler ?? "?"), steps \(item.steps ?? "?"), cfg \(item.cfgScale ?? "?"), seed \(item.seed ?? "?")")
                    let names = item.resources.compactMap { r in r["name"].map { name in name + (r["weight"].map { " (\($0))" } ?? "") } }
                    if !names.isEmpty { Out.line("  resources: \(names.joined(separator: ", "))") }
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Stored and scanned files with their CivitAI model, version, base model and creator.",
            discussion: "Names in the store first (folder/name), then files on disk hashed where they are, by `tsr db scan` or read by `tsr import` (their paths).")
        @Option(name: [.short, .customLong("type")], help: "Only this CivitAI model type.") var type: String?
        @Option(name: [.short, .customLong("base")], help: "Only this base model.") var base: String?
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        struct Item: Encodable {
            /// "name" (a name in the store) or "file" (a file on disk hashed where it is, by `tsr db
            /// scan` or read by `tsr import`; name is its path).
            var kind: String
            var name, sha256: String
            var model, version, type, baseModel, creator: String?
            var modelId, versionId: Int64?
            var newestVersion: String?
            var newestVersionId: Int64?
            var updateAvailable: Bool?
            enum CodingKeys: String, CodingKey {
                case kind, name, sha256, model, version, type, creator
                case baseModel = "base_model", modelId = "model_id", versionId = "version_id"
                case newestVersion = "newest_version", newestVersionId = "newest_version_id", updateAvailable = "update_available"
            }

            init(kind: String, name: String, sha256: Digest, status: CivitAIStatus?, baseModel: String?) {
                let link = status?.link
                newestVersion = status?.newestVersionName
                newestVersionId = status?.newestVersionId
                updateAvailable = status?.updateAvailable
                self.kind = kind
                self.name = name
                self.sha256 = sha256.rawValue
                model = link?.modelName
                version = link?.versionName
                type = link?.type
                self.baseModel = link?.baseModel ?? baseModel
                creator = link?.creator
                modelId = link?.modelId
                versionId = link?.versionId
            }
        }

        func run() throws {
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                var items: [Item] = []
                for entry in try library.registry.listing() {
                    items.append(Item(kind: "name", name: "\(entry.folder)/\(entry.path)", sha256: entry.sha256, status: try library.registry.civitaiStatus(entry.sha256), baseModel: entry.baseModel))
                }
                for file in try library.registry.localFilesByPath().values.sorted(by: { $0.filePath < $1.filePath }) {
                    items.append(Item(kind: "file", name: file.filePath, sha256: file.sha256, status: try library.registry.civitaiStatus(file.sha256),
                        baseModel: BaseModel.infer(metadata: try library.registry.localMetadata(path: file.filePath))))
                }
                items = items.filter { item in
                    (type.map { item.type?.lowercased() == $0.lowercased() } ?? true) && (base.map { item.baseModel?.lowercased() == $0.lowercased() } ?? true)
                }
                if output.json { return try Out.json(items) }
                for item in items {
                    let update = item.updateAvailable == true ? "  (update: \(item.newestVersion ?? "?"))" : ""
                    let civitai = item.model.map { "\($0) / \(item.version ?? "?") [\(item.type ?? "?")] by \(item.creator ?? "unknown")\(update)" } ?? "not linked"
                    Out.line("\(item.kind == "file" ? LogText.escaped(item.name) : item.name)  \(item.baseModel ?? "unknown")  \(civitai)")
                }
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stats", abstract: "Rows per table of the registry and the CivitAI cache.")
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            try runReporting(json: output.json) {
                let counts = try homeOptions.open().registry.tableCounts()
                if output.json { return try Out.json(counts) }
                for (table, rows) in counts.sorted(by: { $0.key < $1.key }) { Out.line("\(table.padding(toLength: 26, withPad: " ", startingAt: 0)) \(rows)") }
            }
        }
    }
}
