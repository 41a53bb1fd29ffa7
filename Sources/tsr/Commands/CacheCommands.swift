import ArgumentParser
import TSRLibrary
import TSRStore

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "The bounded cache: what is here, its limit, and what may be evicted.",
        discussion: """
            Blobs that can be fetched again (they have a recorded source) may be evicted, least
            recently used first, unless pinned (tsr pin) or open. An evicted name stays as it was
            and is fetched again on the next read. `tsr gc --evict-to SIZE` cleans up once.
            """,
        subcommands: [CacheStatusCommand.self, CacheLimitCommand.self],
        defaultSubcommand: CacheStatusCommand.self)
}

struct CacheStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show the cache's size, limit, pinned and evictable bytes.")

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runReporting(json: output.json) {
            let status = try Cache(library: try homeOptions.open()).status()
            if output.json { return try Out.json(status) }
            let limit = status.limit.map { "\(formatBytes($0)) (\(status.limitSource ?? "home"))" } ?? "none (tsr cache limit SIZE sets one)"
            Out.line("size        \(formatBytes(status.size)) in \(counted(status.blobs, "blob"))")
            Out.line("limit       \(limit)")
            if let floor = status.minFree { Out.line("min free    \(floor) of the disk kept free") }
            Out.line("pinned      \(formatBytes(status.pinned))")
            Out.line("evictable   \(formatBytes(status.evictable))")
            Out.line("unevictable \(formatBytes(status.unevictable)) (no source to fetch them again from)")
            Out.line("mount opens \(status.hits) of content here, \(status.misses) fetched (since the mount started)")
            for eviction in status.recentEvictions {
                Out.line("evicted     \(eviction.sha256.prefix(12)) \(formatBytes(eviction.size)) at \(eviction.at)")
            }
        }
    }
}

struct CacheLimitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "limit", abstract: "Set the home's cache limit (200G, 512M, bytes; 0 or none: no limit). TSR_CACHE_LIMIT overrides it.")

    @Argument(help: "The limit: 200G, 512M, 1.5T, bytes; 0 or none for no limit.")
    var size: String

    @Option(help: "Also keep this much of the disk free: a share (10%) or a size (50G); none removes it. TSR_CACHE_MIN_FREE overrides it.")
    var minFree: String?

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard let limit = Cache.parseLimit(size) else { throw ValidationError("'\(size)' is not a size: give 200G, 512M, 1.5T, a number of bytes, or none") }
        var floor: Cache.MinFree??
        if let minFree {
            if minFree == "none" || minFree == "0" {
                floor = .some(nil)
            } else {
                guard let parsed = Cache.MinFree.parse(minFree) else { throw ValidationError("--min-free '\(minFree)' is not a share of the disk (10%) or a size (50G)") }
                floor = .some(parsed)
            }
        }
        try runReporting(json: output.json) {
            let cache = Cache(library: try homeOptions.open())
            try cache.setLimit(limit.bytes)
            if let floor { try cache.setMinFree(floor) }
            let status = try cache.status()
            if output.json { return try Out.json(status) }
            Out.line(limit.bytes.map { "cache limit: \(formatBytes($0)) (\(formatBytes(status.size)) here now)" } ?? "cache limit: none")
            if let bytes = limit.bytes, status.size > bytes {
                Out.line("more than the limit is here: `tsr gc --evict-to \(size)` evicts down to it now")
            }
        }
    }
}

/// The models `tsr pin` and `tsr unpin` act on: names, hashes and workflows' models.
struct PinTargets: ParsableArguments {
    @Argument(help: "Names (folder/path) or SHA-256s (a unique prefix of at least 8 digits).")
    var names: [String] = []

    @Option(help: "Also every model this workflow needs (repeatable).")
    var workflow: [String] = []

    func validate() throws {
        if names.isEmpty && workflow.isEmpty { throw ValidationError("name at least one model or --workflow") }
    }

    func digests(_ cache: Cache) throws -> [Digest] {
        var digests = try cache.digests(for: names)
        for name in workflow { digests += try cache.workflowDigests(name) }
        return Array(Set(digests)).sorted { $0.rawValue < $1.rawValue }
    }

    /// Resolves the targets, applies `change` (which says what it did) and reports it; with
    /// --json, `{key: [sha256…]}`.
    func run(_ homeOptions: HomeOptions, _ output: OutputOptions, key: String, _ change: @escaping (Cache, [Digest]) throws -> String) throws {
        try runReporting(json: output.json) {
            let cache = Cache(library: try homeOptions.open())
            let digests = try digests(cache)
            let said = try change(cache, digests)
            if output.json { return try Out.json([key: digests.map(\.rawValue)]) }
            Out.line(said)
        }
    }
}

struct PinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pin", abstract: "Keep models in the cache: a pinned blob is never evicted (tsr unpin undoes it).")

    @OptionGroup var targets: PinTargets
    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try targets.run(homeOptions, output, key: "pinned") { cache, digests in
            "pinned \(counted(digests.count, "blob")) (\(try cache.pin(digests)) newly)"
        }
    }
}

struct UnpinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unpin", abstract: "Let pinned models be evicted again.")

    @OptionGroup var targets: PinTargets
    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try targets.run(homeOptions, output, key: "unpinned") { cache, digests in
            "unpinned \(counted(try cache.unpin(digests), "blob"))"
        }
    }
}
