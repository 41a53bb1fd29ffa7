import ArgumentParser
import TSRLibrary
import TSRRegistry
import TSRStore

struct AliasCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alias", abstract: "Add, remove or rename the names of stored models.",
        subcommands: [Add.self, Remove.self, Move.self])

    static func parse(_ text: String) throws -> (folder: String, path: String) {
        do { return try ModelPath.parseAlias(text) } catch { throw ValidationError(error.description) }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Give a stored blob another name.")
        @Argument(help: "The new name, FOLDER/PATH (e.g. loras/style/detail.safetensors).") var alias: String
        @Argument(help: "The content: a SHA-256 (or a unique prefix of at least 8 hex digits, as `tsr list` prints) or an existing alias.") var target: String
        @Flag(help: "Repoint the name if it already names other content.") var force = false
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let name = try AliasCommand.parse(alias)
            try runReporting(json: output.json) {
                let library = try homeOptions.open()
                let digest: Digest
                if let parsed = try library.digest(named: target) {
                    digest = parsed
                } else if !target.contains("/"), !target.isEmpty, target.allSatisfy(\.isHexDigit) {
                    throw ValidationError("\(target) is too short to name a blob: give at least 8 hex digits of its SHA-256, or an alias FOLDER/NAME")
                } else {
                    let source = try AliasCommand.parse(target)
                    guard let existing = try library.registry.alias(folder: source.folder, path: source.path) else {
                        throw RegistryError.aliasMissing(target)
                    }
                    digest = existing.sha256
                }
                let change = try library.registry.addAlias(folder: name.folder, path: name.path, sha256: digest, replace: force)
                let result: String
                switch change {
                case .created: result = "created"
                case .unchanged: result = "unchanged"
                case .replaced: result = "replaced"
                case let .conflict(existing): throw RegistryError.aliasExists(name: name.folder + "/" + name.path, sha256: existing)
                }
                if output.json {
                    try Out.json(["alias": name.folder + "/" + name.path, "sha256": digest.rawValue, "result": result])
                } else {
                    Out.line("\(name.folder)/\(name.path) -> \(digest.short)… (\(result))")
                }
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a name; the blob stays until `tsr gc`.")
        @Argument(help: "The name, FOLDER/PATH.") var alias: String
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let name = try AliasCommand.parse(alias)
            try runReporting(json: output.json) {
                let removed = try homeOptions.open().registry.removeAlias(folder: name.folder, path: name.path)
                if output.json {
                    try Out.json(["alias": removed.name, "sha256": removed.sha256.rawValue, "result": "removed"])
                } else {
                    Out.line("removed \(removed.name) (\(removed.sha256.short)…)")
                }
            }
        }
    }

    struct Move: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "mv", abstract: "Rename a name (it may change folder).")
        @Argument(help: "The current name, FOLDER/PATH.") var from: String
        @Argument(help: "The new name, FOLDER/PATH.") var to: String
        @Flag(help: "Replace the new name if it exists.") var force = false
        @OptionGroup var homeOptions: HomeOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let source = try AliasCommand.parse(from)
            let target = try AliasCommand.parse(to)
            try runReporting(json: output.json) {
                try homeOptions.open().registry.moveAlias(from: source, to: target, replace: force)
                let old = source.folder + "/" + source.path
                let new = target.folder + "/" + target.path
                if output.json {
                    try Out.json(["from": old, "to": new, "result": "moved"])
                } else {
                    Out.line("\(old) -> \(new)")
                }
            }
        }
    }
}
