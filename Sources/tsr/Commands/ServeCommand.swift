import ArgumentParser
import Foundation
import Logging
import Synchronization
import TSRFetch
import TSRLibrary
import TSRServer

/// `--api` / `--listen` and where the API's bearer token comes from.
struct APIOptions: ParsableArguments {
    @Flag(help: "Read the API's bearer token from the first line of stdin (else TSR_API_TOKEN); needed to listen beyond loopback. Kept in memory only.")
    var apiTokenStdin = false

    /// The configuration for `address`, with the token from stdin or TSR_API_TOKEN.
    func configuration(_ address: String) throws -> APIConfiguration {
        var token = ProcessInfo.processInfo.environment["TSR_API_TOKEN"]
        if apiTokenStdin {
            guard let line = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces), !line.isEmpty else {
                throw ValidationError("--api-token-stdin: nothing was read from stdin")
            }
            token = line
        }
        let hosts = (ProcessInfo.processInfo.environment["TSR_API_HOSTS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        do { return try APIConfiguration.parse(address, token: token, allowedHosts: hosts) } catch { throw ValidationError(error.description) }
    }
}

/// Runs the API on a task of its own.
enum APIRunner {
    /// The words the daemon logs its API's address with; `tsr mount` reads the address back
    /// from the log after them.
    static let announcement = "API and web page at "

    /// Starts the server and returns once it listens (`announce` is told where); throws, in
    /// words a user can act on, if it cannot listen. `stopped` is told when the server ends
    /// after that: nil for a signal or cancellation, else why. The mount daemon starts it before
    /// mounting, so a mount that appears has its API answering and a taken port mounts nothing.
    static func startListening(
        _ server: APIServer, signals: Bool, announce: @escaping @Sendable (String) -> Void,
        stopped: @escaping @Sendable (String?) -> Void = { _ in }
    ) throws -> Task<Void, any Error> {
        let settled = DispatchSemaphore(value: 0)
        let state = ListenState()
        let running = Task {
            try await server.run(gracefulShutdownSignals: signals) { port in
                state.value.withLock { $0.listening = true }
                announce(server.configuration.url(port: port))
                settled.signal()
            }
        }
        Task {
            var failure: String?
            do { try await running.value } catch is CancellationError {} catch { failure = explain("\(error)", server.configuration) }
            // A failure to listen is thrown to the caller instead.
            let tell = state.value.withLock { state in
                state.failure = failure
                return state.listening || failure == nil
            }
            if tell { stopped(failure) }
            settled.signal()
        }
        settled.wait()
        if let failure = state.value.withLock({ $0.listening ? nil : $0.failure }) { throw Failure(failure) }
        return running
    }

    private final class ListenState: Sendable {
        let value = Mutex<(listening: Bool, failure: String?)>((false, nil))
    }
}

extension APIRunner {
    /// The server's failure in words a user can act on.
    static func explain(_ error: String, _ configuration: APIConfiguration) -> String {
        if error.contains("Address already in use") {
            return "port \(configuration.port) on \(configuration.host) is already in use; choose another (e.g. :\(configuration.port + 1))"
        }
        if error.contains("Cannot assign requested address") || error.contains("not resolve") {
            return "\(configuration.host) is not an address of this machine"
        }
        return "the API stopped: \(error)"
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the local HTTP API and the library web page (without mounting).",
        discussion: """
            Listens on 127.0.0.1:8189 unless --listen says otherwise; listening beyond loopback needs a \
            bearer token (TSR_API_TOKEN or --api-token-stdin). The page at / browses the library and \
            checks and downloads workflows; /openapi.json describes every endpoint (docs/API.md). \
            To share downloads with a mount, use `tsr mount DIR --api ADDR` instead.
            """)

    @Option(help: "HOST:PORT, :PORT or PORT to listen on.") var listen = "127.0.0.1:8189"
    @OptionGroup var apiOptions: APIOptions
    @OptionGroup var fetchOptions: FetchOptions
    @OptionGroup var homeOptions: HomeOptions

    func run() throws {
        let configuration = try apiOptions.configuration(listen)
        Logs.toStandardError(defaultLevel: .notice)
        try runReporting(json: false) {
            let library = try homeOptions.open()
            let fetcher = Fetcher(library: library, settings: fetchOptions.settings, credentials: try fetchOptions.credentials(for: []))
            // Read: from now on they live in memory only, not in /proc/PID/environ.
            EnvironmentSecrets.scrub()
            let server = try APIServer(fetcher: fetcher, configuration: configuration)
            let done = DispatchSemaphore(value: 0)
            let failure = SharedText("")
            _ = try APIRunner.startListening(server, signals: true) { url in
                FileHandle.standardOutput.write(Data("serving \(library.layout.home) at \(url)\n".utf8))
            } stopped: { error in
                failure.value = error ?? ""
                done.signal()
            }
            done.wait()
            if !failure.value.isEmpty { throw Failure(failure.value) }
        }
    }
}
