import ArgumentParser
import Foundation
import TSRCivitAI
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore

/// `tsr outdated`: names whose source has something newer.
struct OutdatedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outdated", abstract: "Names whose source has something newer: a newer CivitAI version, or a Hugging Face revision that serves other content now.",
        discussion: """
            CivitAI-linked files (`tsr db link`) are compared with the newest version the cache lists, \
            offline; --refresh asks CivitAI for each model first (a 429 or no network stops the asking, \
            the cache answers for the rest). Names from Hugging Face are checked only with --refresh: \
            a HEAD of the resolve URL they were taken from says whether it serves other content now. \
            A newer version one of whose files is here already is not listed. `tsr update` fetches.
            """)
    @Flag(help: "Ask CivitAI and Hugging Face now instead of answering from the cache.") var refresh = false
    @OptionGroup var fetchOptions: FetchOptions
    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        var failed = false
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let credentials = try fetchOptions.credentials(for: UpdateFinder.services(of: [], in: library.registry))
            let report = try UpdateFinder(fetcher: Fetcher(library: library, settings: fetchOptions.settings, credentials: credentials)).find(refresh: refresh)
            failed = report.stoppedEarly != nil || !report.errors.isEmpty
            if output.json { return try Out.json(report) }
            for item in report.outdated {
                Out.line("\(item.name)  \(item.source)  \(LogText.escaped(item.current)) → \(LogText.escaped(item.newest))")
            }
            if report.outdated.isEmpty { Out.line("nothing newer found (\(counted(report.checked, "name")) checked)") }
            if report.notAsked > 0 { Out.line("\(counted(report.notAsked, "name")) from Hugging Face not asked: add --refresh") }
            if !report.outdated.isEmpty { Out.line("`tsr update NAME…` or `tsr update --all` fetches them (beside the old ones; --replace repoints the names)") }
            if let stopped = report.stoppedEarly { Out.error(stopped) }
            printIssues(report.errors)
        }
        if failed { throw ExitCode(1) }
    }
}

/// `tsr update`: fetches what `tsr outdated` finds.
struct UpdateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Fetch the newer version of names `tsr outdated` lists.",
        discussion: """
            By default the newer content gets a name beside the old one that says its version \
            (loras/style.safetensors → loras/style.v2.safetensors; from Hugging Face, the new \
            content's short hash), so workflows that name the old file keep working. --replace \
            points the name itself at the newer content; the old blob stays until `tsr gc`. CivitAI \
            and Hugging Face are asked now (the same as `tsr outdated --refresh`); the bytes are \
            verified before any name shows them.
            """)
    @Argument(help: "Names (FOLDER/NAME) to update.") var names: [String] = []
    @Flag(help: "Update every name that has something newer.") var all = false
    @Flag(help: "Point the names at the newer content instead of adding names beside them.") var replace = false
    @OptionGroup var fetchOptions: FetchOptions
    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard all != !names.isEmpty else { throw ValidationError(all ? "--all updates every name; give no NAME with it" : "name what to update (FOLDER/NAME…), or --all") }
    }

    func run() throws {
        let reporter = DownloadReporter(json: output.json)
        var failures = 0
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            var wanted: Set<String> = []
            for name in names {
                let alias: (folder: String, path: String)
                do { alias = try ModelPath.parseAlias(name) } catch { throw ValidationError("\(error)") }
                guard try library.registry.alias(folder: alias.folder, path: alias.path) != nil else { throw Failure("\(name): no such name") }
                wanted.insert("\(alias.folder)/\(alias.path)")
            }
            var credentials = try fetchOptions.credentials(for: UpdateFinder.services(of: wanted, in: library.registry))
            let settings = fetchOptions.settings
            let report = try UpdateFinder(fetcher: Fetcher(library: library, settings: settings, credentials: credentials)).find(refresh: true, names: wanted)
            if let stopped = report.stoppedEarly { Out.error(stopped) }
            printIssues(report.errors)
            failures += report.errors.count + (report.stoppedEarly == nil ? 0 : 1)
            let found = Set(report.outdated.map(\.name))
            for name in wanted.sorted() where !found.contains(name) && !output.json { Out.line("\(name): nothing newer") }
            if report.outdated.isEmpty && wanted.isEmpty && !output.json { Out.line("nothing newer found (\(counted(report.checked, "name")) checked)") }
            for item in report.outdated {
                let target = replace ? item.path : UpdateFinder.besideName(for: item)
                let label = "\(item.folder)/\(target)"
                do {
                    let spec = try SourceSpec.parse(item.update, settings: settings).0
                    let request = PullRequest(spec: spec, folder: item.folder, name: target, sha256: item.newestSha256, force: replace)
                    let result = try TokenPrompt.retrying(&credentials) {
                        try Fetcher(library: library, settings: settings, credentials: $0).pull(request, progress: reporter.progress(for: label))
                    }
                    reporter.finished(label, result: .success((result.committed.digest, result.committed.size, "\(result.folder)/\(result.path)")))
                    if !output.json {
                        Out.line(replace
                            ? "\(item.name): now \(LogText.escaped(item.newest)) (the old content stays until `tsr gc`)"
                            : "\(item.name): \(LogText.escaped(item.newest)) is \(result.folder)/\(result.path), beside it")
                    }
                } catch {
                    failures += 1
                    reporter.finished(label, result: .failure(error))
                }
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }
}
