import ArgumentParser
import Foundation
import Logging
import TSRFetch
import TSRLibrary
import TSRStore

/// `--home`, shared by every command that opens a home.
struct HomeOptions: ParsableArguments {
    @Option(name: .long, help: "The tensors home (default: $TSR_HOME, $XDG_DATA_HOME/tensors or ~/.local/share/tensors).")
    var home: String?

    var resolved: String {
        StoreLayout.resolveHome(explicit: home, environment: ProcessInfo.processInfo.environment, cwd: FileManager.default.currentDirectoryPath)
    }

    func open() throws -> Library {
        do {
            return try Library(home: resolved)
        } catch {
            throw Failure(error.description)
        }
    }
}

/// `-j/--json`.
struct OutputOptions: ParsableArguments {
    @Flag(name: [.short, .long], help: "Print JSON instead of text.")
    var json = false
}

/// A failure already explained to the user: print the message, exit non-zero.
struct Failure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
    init(_ message: String) { self.message = message }
}

/// Writes to stdout/stderr without Foundation's buffering surprises.
enum Out {
    static func line(_ text: String) {
        print(text)
    }

    static func error(_ text: String) {
        FileHandle.standardError.write(Data(("tsr: " + text + "\n").utf8))
    }

    static func json<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
        let data = try encoder.encode(value)
        print(String(decoding: data, as: UTF8.self))
    }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }
}

/// Runs a command body: library errors become a one-line diagnostic (or a JSON error with
/// --json) and exit code 1.
func runReporting(json: Bool, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch let error as RegistrationError where error.isUsage {
        throw ValidationError(error.description)
    } catch {
        let message = String(describing: error)
        if json {
            try? Out.json(["error": message])
        } else {
            Out.error(message)
        }
        throw ExitCode(1)
    }
}

/// Human-readable byte counts (binary units).
func formatBytes(_ bytes: Int64) -> String { ByteCount.text(bytes) }

/// A progress bar on stderr while `body` runs, only when stderr is a terminal and not --json.
func withProgress<T>(_ label: String, enabled: Bool, _ body: (ProgressCounter?) throws -> T) rethrows -> T {
    guard enabled, Out.stderrIsTerminal else { return try body(nil) }
    let counter = ProgressCounter()
    let bar = ProgressBar(label: label, counter: counter)
    bar.start()
    defer { bar.stop() }
    return try body(counter)
}

/// Redraws one status line from a `ProgressCounter` on its own thread.
final class ProgressBar: @unchecked Sendable {
    // @unchecked: `running` is only touched under `lock`.
    private let label: String
    private let counter: ProgressCounter
    private let lock = NSLock()
    private var running = true
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    init(label: String, counter: ProgressCounter) {
        self.label = label
        self.counter = counter
    }

    func start() {
        // Draws at least once, however soon stop() comes (a loaded machine may start this
        // thread only after short work is done), and last before stop() clears the line.
        let thread = Thread { [self] in
            while true {
                draw()
                guard lock.withLock({ running }) else { break }
                Thread.sleep(forTimeInterval: 0.1)
            }
            done.signal()
        }
        self.thread = thread
        thread.start()
    }

    func stop() {
        lock.withLock { running = false }
        done.wait()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }

    private func draw() {
        let total = counter.bytesTotal
        let doneBytes = counter.bytesDone
        let fraction = total > 0 ? min(1, Double(doneBytes) / Double(total)) : 0
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let text = "\r\(label) [\(bar)] \(Int(fraction * 100))% \(formatBytes(doneBytes))/\(formatBytes(total)) \(counter.filesDone)/\(counter.filesTotal) files\u{1B}[K"
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Prints per-file problems under a heading.
func printIssues(_ issues: [FileIssue]) {
    guard !issues.isEmpty else { return }
    Out.line("\(issues.count) problem\(issues.count == 1 ? "" : "s"):")
    for issue in issues { Out.line("  \(issue.path): \(issue.message)") }
}

var currentDirectory: String { FileManager.default.currentDirectoryPath }

/// Logging for commands that run until stopped (`tsr mount --foreground`, `tsr serve`).
enum Logs {
    /// Log lines to stderr at `TSR_LOG_LEVEL` (trace … critical), else `defaultLevel`.
    static func toStandardError(defaultLevel: Logger.Level) {
        let level = ProcessInfo.processInfo.environment["TSR_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? defaultLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return EscapingLogHandler(inner: handler)
        }
    }
}

/// One event, one line: control characters in a message (a file name with a newline) are escaped
/// before the line is written, so nothing from outside forges a log line.
struct EscapingLogHandler: LogHandler {
    var inner: StreamLogHandler

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var escaped = event
        escaped.message = "\(LogText.escaped(event.message.description))"
        inner.log(event: escaped)
    }
}

/// Secrets a long-running process was started with, once read into memory.
enum EnvironmentSecrets {
    static let names = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_API_KEY", "TSR_API_TOKEN"]

    /// Overwrites the values of `names` in this process's own environment block (what
    /// /proc/PID/environ shows, to the process's user and root) and removes them, so children
    /// (fusermount3) do not inherit them either. Call only after reading them; single-threaded.
    static func scrub(_ names: [String] = names) {
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "="), names.contains(String(text[..<equals])) {
                let valueStart = text.utf8.distance(from: text.utf8.startIndex, to: equals) + 1
                let length = strlen(pointer)
                if length > valueStart { memset(pointer + valueStart, 0x78, length - valueStart) }
            }
            entry += 1
        }
        for name in names { unsetenv(name) }
    }
}

/// "1 file", "2 files": a count with its noun, singular for one.
func counted(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }
