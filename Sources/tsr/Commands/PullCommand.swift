import ArgumentParser
import Foundation
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore

struct PullCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Download models now: new sources, or everything registered but not here yet.",
        discussion: """
            `tsr pull SOURCE` registers SOURCE like `tsr add` and downloads it; `tsr pull FOLDER/NAME` \
            downloads a registered name's bytes now, also when an earlier download failed and the \
            mount is waiting before it tries again. A source that does not \
            tell its SHA-256 is trusted on this first download (give --sha256 to check it). Downloads \
            resume where they stopped, are verified, and are never visible before they are. --json \
            prints one NDJSON event per line (message, progress, bytes, total_bytes), then a \
            "completed" or "error" line per file.
            """)

    @Argument(help: "hf://…, civitai:…, URLs, or registered names (FOLDER/NAME).") var sources: [String] = []
    @Flag(help: "Download every registered file whose bytes are not here (or were quarantined and have a source).") var allMissing = false
    @Option(help: "ComfyUI folder key (default: the CivitAI type's folder).") var folder: String?
    @Option(help: "Name inside the folder (one SOURCE only).") var name: String?
    @Option(help: "The expected SHA-256 (one SOURCE only).") var sha256: String?
    @Flag(help: "Repoint names that already name other content.") var force = false
    @Option(help: "Files downloaded at once.") var jobs = 3
    @OptionGroup var fetchOptions: FetchOptions
    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard allMissing || !sources.isEmpty else { throw ValidationError("name a SOURCE to pull, or --all-missing") }
        guard sources.count <= 1 || (name == nil && sha256 == nil) else { throw ValidationError("--name and --sha256 go with one SOURCE") }
        guard (1...16).contains(jobs) else { throw ValidationError("--jobs must be 1…16") }
    }

    func run() throws {
        let settings = fetchOptions.settings
        var specs: [(SourceSpec, String?)] = []
        var names: [(folder: String, path: String)] = []
        for source in sources {
            do {
                specs.append(try SourceSpec.parse(source, settings: settings))
            } catch {
                // Not a source: a registered name (checked once the home is open).
                guard let alias = try? ModelPath.parseAlias(source) else { throw ValidationError(error.description) }
                names.append(alias)
            }
        }
        let reporter = DownloadReporter(json: output.json)
        var failures = 0
        var credentials = Credentials()
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            // The key (--token-stdin) is for the service of what is downloaded: the sources
            // given, the registered names' sources, and with --all-missing every missing file's.
            var kinds = Set(specs.map(\.0.kind))
            let named = names.compactMap { try? library.registry.alias(folder: $0.folder, path: $0.path)?.sha256 }
            let missing = allMissing ? try library.registry.blobs(state: .remote).map(\.sha256) + library.registry.blobs(state: .quarantined).map(\.sha256) : []
            kinds.formUnion(FetchOptions.kinds(ofSourcesOf: named + missing, in: library))
            credentials = try fetchOptions.credentials(for: kinds, urlKey: specs.compactMap(\.1).first)
            for alias in names {
                let label = "\(alias.folder)/\(alias.path)"
                do {
                    guard let record = try library.registry.alias(folder: alias.folder, path: alias.path) else {
                        throw ValidationError("\(label) is neither a source (hf://…, civitai:…, a URL) nor a registered name")
                    }
                    // Tried now, whatever the back-off of an earlier failure.
                    try library.registry.clearFetchFailure(record.sha256)
                    let fetcher = Fetcher(library: library, settings: settings, credentials: credentials)
                    let committed = try fetcher.fetch(record.sha256, progress: reporter.progress(for: label))
                    reporter.finished(label, result: .success((committed.digest, committed.size, label)))
                } catch {
                    failures += 1
                    reporter.finished(label, result: .failure(error))
                }
            }
            for (spec, _) in specs {
                do {
                    try TokenPrompt.retrying(&credentials) { try pull(spec, library: library, settings: settings, credentials: $0, reporter: reporter) }
                } catch {
                    failures += 1
                    reporter.finished(spec.canonicalURL, result: .failure(error))
                }
            }
            if allMissing {
                failures += try pullMissing(library: library, settings: settings, credentials: credentials, reporter: reporter)
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    private func pull(_ spec: SourceSpec, library: Library, settings: FetchSettings, credentials: Credentials, reporter: DownloadReporter) throws {
        let fetcher = Fetcher(library: library, settings: settings, credentials: credentials)
        // Progress is reported under the file's name, known once the source is resolved.
        let label = SharedText(spec.canonicalURL)
        let request = PullRequest(spec: spec, folder: folder, name: name, sha256: sha256, force: force)
        let progress: DownloadProgress = { bytes, total in reporter.progress(for: label.value)(bytes, total) }
        let result = try fetcher.pull(request, progress: progress, resolved: { file in label.value = file.fileName })
        reporter.finished(result.fileName, result: .success((result.committed.digest, result.committed.size, "\(result.folder)/\(result.path)")))
    }

    /// Downloads every remote blob, `jobs` at a time; returns the number that failed.
    private func pullMissing(library: Library, settings: FetchSettings, credentials: Credentials, reporter: DownloadReporter) throws -> Int {
        // Quarantined blobs (bytes that failed verification) come back from their sources too.
        let quarantined = try library.registry.blobs(state: .quarantined).filter { !((try? library.registry.sources(of: $0.sha256)) ?? []).isEmpty }
        let missing = try library.registry.blobs(state: .remote) + quarantined
        if missing.isEmpty && !output.json { Out.line("nothing to pull: every registered file is here") }
        reporter.plan(bytes: missing.reduce(0) { $0 + $1.size }, files: missing.count)
        return downloadAll(missing, jobs: jobs, reporter: reporter, credentials: credentials, label: { blob in
            let names = (try? library.registry.aliases(of: blob.sha256)) ?? []
            return names.first.map { "\($0.folder)/\($0.path)" } ?? blob.sha256.short
        }) { blob, credentials, progress in
            try? library.registry.clearFetchFailure(blob.sha256)
            return try Fetcher(library: library, settings: settings, credentials: credentials).fetch(blob.sha256, progress: progress)
        }
    }
}
