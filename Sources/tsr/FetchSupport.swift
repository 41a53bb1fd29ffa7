import ArgumentParser
import Foundation
import Synchronization
import TSRFetch
import TSRLibrary
import TSRMount
import TSRStore
import TSRWorkflow

/// Options shared by the commands that download.
struct FetchOptions: ParsableArguments {
    @Flag(help: "Read a token for the source's service (Hugging Face or CivitAI) from the first line of stdin; it is kept in memory only.")
    var tokenStdin = false

    @Option(help: "With --token-stdin, when the files come from both services: which one the key is for (huggingface or civitai).")
    var tokenFor: String?

    @Option(name: .customLong("allow-host"), help: "Also allow downloads from this host (repeatable; TSR_ALLOW_HOSTS does the same).")
    var allowHosts: [String] = []

    var settings: FetchSettings {
        var settings = FetchSettings.from(environment: ProcessInfo.processInfo.environment)
        settings.allowedHosts += allowHosts.map { $0.lowercased() }
        return settings
    }

    /// Credentials from HF_TOKEN / CIVITAI_API_KEY, a `token=` found in the source URL, and
    /// `--token-stdin` for the service of `kinds` (the kinds of the sources to be downloaded).
    func credentials(for kinds: Set<String>, urlKey: String? = nil) throws -> Credentials {
        var credentials = Credentials.from(environment: ProcessInfo.processInfo.environment)
        if let urlKey { credentials.civitai = urlKey }
        guard tokenStdin else { return credentials }
        let services = kinds.intersection(["huggingface", "civitai"])
        let service: String
        if let tokenFor {
            guard ["huggingface", "civitai"].contains(tokenFor) else { throw ValidationError("--token-for is huggingface or civitai, not \(tokenFor)") }
            service = tokenFor
        } else if services.count == 1, let only = services.first {
            service = only
        } else if services.isEmpty {
            throw ValidationError("--token-stdin: none of these files comes from Hugging Face or CivitAI, the only services a key is sent to")
        } else {
            throw ValidationError("--token-stdin: these files come from Hugging Face and from CivitAI; say which the key is for with --token-for huggingface|civitai")
        }
        guard let line = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces), !line.isEmpty else {
            throw ValidationError("--token-stdin: nothing was read from stdin")
        }
        if service == "huggingface" { credentials.huggingFace = line } else { credentials.civitai = line }
        return credentials
    }
}

/// Asks for a token without echo when a download was refused for lack of one and a person is at
/// the terminal. The answer lives in memory only.
enum TokenPrompt {
    /// A person at the terminal: stdin and stderr are both one.
    static var canAsk: Bool { isatty(0) == 1 && isatty(2) == 1 }

    static func ask(after error: FetchError, credentials: inout Credentials) -> Bool {
        guard canAsk, let variable = error.keyVariable else { return false }
        let label = variable == "HF_TOKEN" ? "Hugging Face token" : "CivitAI API key"
        guard let token = readSilently(prompt: "tsr: \(error)\n\(label) (used for this download only, never saved): ") else { return false }
        if variable == "HF_TOKEN" { credentials.huggingFace = token } else { credentials.civitai = token }
        return true
    }

    /// Asks up front, on a terminal, for the key of each service in `services` that has none yet
    /// (a workflow that says its files need one), so nothing starts only to be refused.
    static func askUpFront(for services: Set<String>, why: String, credentials: inout Credentials) {
        guard canAsk else { return }
        for service in services.sorted() {
            let missing = service == "huggingface" ? credentials.huggingFace == nil : service == "civitai" ? credentials.civitai == nil : false
            guard missing else { continue }
            let label = service == "huggingface" ? "Hugging Face token" : "CivitAI API key"
            guard let token = readSilently(prompt: "tsr: \(why) a \(label)\n\(label) (used for these downloads only, never saved; empty to go on without): ") else { continue }
            if service == "huggingface" { credentials.huggingFace = token } else { credentials.civitai = token }
        }
    }

    /// One line read from the terminal without echo; nil when empty.
    static func readSilently(prompt: String) -> String? {
        FileHandle.standardError.write(Data(prompt.utf8))
        var saved = termios()
        tcgetattr(0, &saved)
        var silent = saved
        silent.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(0, TCSANOW, &silent)
        let line = readLine(strippingNewline: true)
        tcsetattr(0, TCSANOW, &saved)
        FileHandle.standardError.write(Data("\n".utf8))
        guard let token = line?.trimmingCharacters(in: .whitespaces), !token.isEmpty else { return nil }
        return token
    }

    /// Runs `body`, and once more with a typed token if it failed for lack of one.
    static func retrying<T>(_ credentials: inout Credentials, _ body: (Credentials) throws -> T) throws -> T {
        do {
            return try body(credentials)
        } catch let error as FetchError {
            guard ask(after: error, credentials: &credentials) else { throw error }
            return try body(credentials)
        }
    }
}

/// The fetcher a mount daemon shares between lazy reads and its API: made once.
final class SharedFetcher: Sendable {
    private let fetcher = Mutex<Fetcher?>(nil)
    func make(library: Library, settings: FetchSettings, credentials: Credentials) -> Fetcher {
        fetcher.withLock { existing in
            if let existing { return existing }
            let made = Fetcher(library: library, settings: settings, credentials: credentials)
            existing = made
            return made
        }
    }
}

/// A string several threads read and one sets.
final class SharedText: Sendable {
    private let text: Mutex<String>
    init(_ text: String) { self.text = Mutex(text) }
    var value: String {
        get { text.withLock { $0 } }
        set { text.withLock { $0 = newValue } }
    }
}

/// Progress of downloads: NDJSON events with --json, a status line on a terminal, nothing on a pipe.
final class DownloadReporter: Sendable {
    let json: Bool
    private let lastEvent = Mutex<[String: Int64]>([:])
    private let started = Mutex<[String: ContinuousClock.Instant]>([:])
    /// Bytes each file holds now, and what the whole pull amounts to (0: one file, no total).
    private let perFile = Mutex<[String: Int64]>([:])
    private let planned = Mutex<(bytes: Int64, files: Int, start: ContinuousClock.Instant)>((0, 0, .now))

    init(json: Bool) { self.json = json }

    /// Announces a pull of several files, so events carry the overall progress too.
    func plan(bytes: Int64, files: Int) {
        planned.withLock { $0 = (bytes, files, .now) }
    }

    /// Overall bytes so far, the planned total, and the overall speed; nil without a plan.
    private func overall() -> (bytes: Int64, total: Int64, speed: Double)? {
        let plan = planned.withLock { $0 }
        guard plan.files > 1, plan.bytes > 0 else { return nil }
        let bytes = perFile.withLock { $0.values.reduce(0, +) }
        return (bytes, plan.bytes, Double(bytes) / max(0.001, (ContinuousClock.now - plan.start).inSeconds))
    }

    /// A progress callback for one file.
    func progress(for name: String) -> DownloadProgress {
        { [self] bytes, total in event(name, bytes: bytes, total: total) }
    }

    private func event(_ name: String, bytes: Int64, total: Int64?) {
        perFile.withLock { $0[name] = bytes }
        let now = ContinuousClock.now
        let start = started.withLock { $0[name, default: now] }
        started.withLock { $0[name] = start }
        // At most one event per 4 MiB (and the last one).
        let due = lastEvent.withLock { last -> Bool in
            if bytes - last[name, default: -(1 << 40)] < 4 << 20 && bytes != total { return false }
            last[name] = bytes
            return true
        }
        guard due else { return }
        let elapsed = max(0.001, (now - start).inSeconds)
        let speed = Double(bytes) / elapsed
        if json {
            var line: [String: Any] = ["file": name, "bytes": bytes, "speed": Int(speed)]
            if let total, total > 0 {
                line["total_bytes"] = total
                line["progress"] = (Double(bytes) / Double(total) * 1000).rounded() / 10
                line["message"] = "Downloading \(name): \(Int(Double(bytes) / Double(total) * 100))%"
            } else {
                line["message"] = "Downloading \(name): \(formatBytes(bytes))"
            }
            if let all = overall() {
                line["overall_bytes"] = all.bytes
                line["overall_total_bytes"] = all.total
                line["overall_speed"] = Int(all.speed)
            }
            emit(line)
        } else if Out.stderrIsTerminal {
            var text = "\r\(name): \(formatBytes(bytes))"
            if let total, total > 0 {
                let eta = speed > 0 ? Int(Double(total - bytes) / speed) : 0
                text += " / \(formatBytes(total)) \(Int(Double(bytes) / Double(total) * 100))% \(formatBytes(Int64(speed)))/s ETA \(eta)s"
            }
            if let all = overall() {
                let eta = all.speed > 0 ? Int(Double(all.total - all.bytes) / all.speed) : 0
                text += "  | all: \(formatBytes(all.bytes)) / \(formatBytes(all.total)) \(formatBytes(Int64(all.speed)))/s ETA \(eta)s"
            }
            FileHandle.standardError.write(Data((text + "\u{1B}[K").utf8))
        }
    }

    func finished(_ name: String, result: Result<(Digest, Int64, String), any Error>) {
        if case let .success((_, size, _)) = result { perFile.withLock { $0[name] = size } }
        switch result {
        case let .success((digest, size, path)):
            if json {
                emit(["status": "completed", "message": "Downloaded \(name)", "file": name, "path": path, "sha256": digest.rawValue, "bytes": size, "total_bytes": size])
            } else {
                if Out.stderrIsTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                Out.line("\(path): \(formatBytes(size)), sha256 \(digest.rawValue)")
            }
        case let .failure(error):
            if json {
                emit(["status": "error", "file": name, "error": "\(error)", "message": "\(error)"])
            } else {
                if Out.stderrIsTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                Out.error("\(name): \(error)")
            }
        }
    }

    private func emit(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// Runs `body` on every item, `jobs` at a time, on plain threads (downloads block); returns how
/// many failed. Each failure is reported through `reporter`. With a person at the terminal, files
/// refused for want of a key wait until the others are done; then the key is asked for once per
/// service (no echo, never saved) and those files are tried again with it.
func downloadAll<Item: Sendable>(
    _ items: [Item], jobs: Int, reporter: DownloadReporter, credentials: Credentials, prompting: Bool = TokenPrompt.canAsk,
    label: @escaping @Sendable (Item) -> String,
    _ body: @escaping @Sendable (Item, Credentials, @escaping DownloadProgress) throws -> Committed
) -> Int {
    /// One pass over `indices`; refused files are held back (not reported) when `holding`.
    func pass(_ indices: [Int], _ credentials: Credentials, holding: Bool) -> (failed: Int, refused: [(index: Int, error: FetchError)]) {
        let next = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        let refused = Mutex<[(index: Int, error: FetchError)]>([])
        DispatchQueue.concurrentPerform(iterations: min(jobs, max(1, indices.count))) { _ in
            while true {
                let position = next.add(1, ordering: .relaxed).oldValue
                guard position < indices.count else { return }
                let index = indices[position]
                let name = label(items[index])
                do {
                    let committed = try body(items[index], credentials, reporter.progress(for: name))
                    reporter.finished(name, result: .success((committed.digest, committed.size, name)))
                } catch let error as FetchError where holding && error.keyVariable != nil {
                    refused.withLock { $0.append((index, error)) }
                } catch {
                    failed.add(1, ordering: .relaxed)
                    reporter.finished(name, result: .failure(error))
                }
            }
        }
        return (failed.load(ordering: .relaxed), refused.withLock { $0 })
    }

    let first = pass(Array(items.indices), credentials, holding: prompting)
    var failures = first.failed
    guard !first.refused.isEmpty else { return failures }
    var credentials = credentials
    var given: [String: Bool] = [:]
    var again: [Int] = []
    for (index, error) in first.refused.sorted(by: { $0.index < $1.index }) {
        let variable = error.keyVariable ?? ""
        if given[variable] == nil {
            let waiting = first.refused.filter { $0.error.keyVariable == variable }.count
            if waiting > 1 { FileHandle.standardError.write(Data("tsr: \(waiting) files wait for this key\n".utf8)) }
            given[variable] = TokenPrompt.ask(after: error, credentials: &credentials)
        }
        if given[variable] == true {
            again.append(index)
        } else {
            failures += 1
            reporter.finished(label(items[index]), result: .failure(error))
        }
    }
    return failures + pass(again, credentials, holding: false).failed
}

extension FetchError {
    /// The variable of the key a refused download wanted (HF_TOKEN, CIVITAI_API_KEY), else nil.
    var keyVariable: String? {
        if case let .unauthorized(_, _, variable?, _) = self { return variable }
        return nil
    }
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The mount's lazy reads, served by the fetch engine.
struct MountBlobFetcher: BlobFetcher {
    let fetcher: Fetcher
    func fetch(_ digest: Digest, size: Int64) throws {
        _ = try fetcher.fetch(digest)
    }

    func isWrongBytes(_ error: any Error) -> Bool {
        switch error as? FetchError {
        case .digestMismatch?, .sizeMismatch?: return true
        default: return false
        }
    }
}

extension FetchOptions {
    /// The services the recorded sources of `digests` belong to.
    static func kinds(ofSourcesOf digests: [Digest], in library: Library) -> Set<String> {
        Set(digests.flatMap { ((try? library.registry.sources(of: $0)) ?? []).map(\.kind) })
    }

    /// The services of the first URLs a workflow's dependencies name.
    static func kinds(of dependencies: [WorkflowDependency], settings: FetchSettings) -> Set<String> {
        Set(dependencies.flatMap { $0.urls.compactMap { try? SourceSpec.parse($0, settings: settings).0.kind } })
    }
}
