import SystemPackage
import ArgumentParser
import TSRLibrary
import TSRStore

struct HashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash", abstract: "Print SHA-256 digests like sha256sum, hashing files in parallel.")

    @Argument(help: "Files to hash.")
    var files: [String]

    @OptionGroup var output: OutputOptions

    struct Item: Codable {
        var path: String
        var sha256: String?
        var size: Int64?
        var error: String?
    }

    func run() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one file") }
        let results = withProgress("hashing", enabled: !output.json) { counter -> [Result<(Digest, Stat), StoreError>] in
            guard let counter else { return FileHasher.hashAll(paths: files) }
            counter.addTotal(bytes: files.reduce(0) { $0 + ((try? SystemCalls.status($1).size) ?? 0) }, files: files.count)
            return FileHasher.hashAll(paths: files) { counter.advance(bytes: $0) }
        }
        var failed = false
        var items: [Item] = []
        for (path, result) in zip(files, results) {
            switch result {
            case let .success((digest, status)):
                items.append(Item(path: path, sha256: digest.rawValue, size: status.size))
                if !output.json { Out.line("\(digest.rawValue)  \(path)") }
            case let .failure(error):
                failed = true
                items.append(Item(path: path, error: error.description))
                if !output.json { Out.error(error.description) }
            }
        }
        if output.json { try Out.json(items) }
        if failed { throw ExitCode(1) }
    }
}
