import ArgumentParser
import CLinux
import Foundation
import Logging
import TSRFetch
import TSRLibrary
import TSRMount
import TSRServer

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount the library as a ComfyUI models folder (FUSE).",
        discussion: """
            Shows checkpoints/, loras/, vae/ … (one directory per ComfyUI folder key), by-base/, \
            by-creator/, by-hash/ and workflows/. Mounting over a non-empty directory works (its \
            files are hidden while mounted). Runs in the background with its log in \
            <home>/logs/mount.log unless --foreground; stop it with `tsr umount`.
            """)

    @Argument(help: "The directory to mount on (e.g. ~/ComfyUI/models).")
    var mountpoint: String

    @Flag(help: "Stay in the foreground and log to stderr; Ctrl-C unmounts.")
    var foreground = false

    @Flag(help: "Refuse every change (EROFS).")
    var readOnly = false

    @Flag(help: "Let other users (e.g. ComfyUI running as another user) use the mount; needs user_allow_other in /etc/fuse.conf unless root.")
    var allowOther = false

    @Flag(inversion: .prefixedNo, help: "Serve reads and mmap of complete models by kernel FUSE passthrough (native speed) when the kernel allows it (Linux 6.9+, mounted as root), else the plain path; `tsr status` says which. --no-passthrough forces the plain path (docs/SEMANTICS.md §10).")
    var passthrough = true

    @Option(help: "Also serve the HTTP API and web page at HOST:PORT, :PORT or PORT (downloads share the mount's); see `tsr serve`.")
    var api: String?

    @Option(help: "The cache limit for downloads this mount starts (200G, 512M, bytes; none: no limit), over TSR_CACHE_LIMIT and the home's (`tsr cache limit`). Least recently used models are evicted to make room.")
    var cacheLimit: String?

    @OptionGroup var apiOptions: APIOptions
    @OptionGroup var homeOptions: HomeOptions

    func run() throws {
        let apiConfiguration = try api.map { try apiOptions.configuration($0) }
        let limit = try cacheLimit.map { text throws -> Cache.Limit in
            guard let limit = Cache.parseLimit(text) else { throw ValidationError("--cache-limit '\(text)' is not a size: give 200G, 512M, a number of bytes, or none") }
            return limit
        }
        let point = mountpoint.hasPrefix("/") ? mountpoint : currentDirectory + "/" + mountpoint
        let home = homeOptions.resolved
        if foreground {
            Logs.toStandardError(defaultLevel: .info)
            var request = MountRequest(home: home, mountpoint: point)
            request.readOnly = readOnly
            request.allowOther = allowOther
            request.settings.passthrough = passthrough
            if let tuning = ProcessInfo.processInfo.environment["TSR_MOUNT_TUNING"] {
                if let problem = request.settings.tune(tuning) { throw ValidationError("TSR_MOUNT_TUNING: \(problem)") }
            }
            // Lazy reads download through the fetch engine, with the tokens of this environment
            // (HF_TOKEN, CIVITAI_API_KEY), kept in memory only.
            var fetchSettings = FetchSettings.from(environment: ProcessInfo.processInfo.environment)
            if let limit { fetchSettings.cacheLimit = limit.bytes ?? Int64.max }
            let settings = fetchSettings
            let credentials = Credentials.from(environment: ProcessInfo.processInfo.environment)
            // Read: from now on they live in memory only, not in /proc/PID/environ.
            EnvironmentSecrets.scrub()
            // One fetcher for lazy reads and the API: one download per blob between them.
            let shared = SharedFetcher()
            request.makeFetcher = { library in
                MountBlobFetcher(fetcher: shared.make(library: library, settings: settings, credentials: credentials))
            }
            try runReporting(json: false) {
                let daemon = try MountDaemon.make(request, logger: Logger(label: "tsr.mount"))
                var apiTask: Task<Void, any Error>?
                if let apiConfiguration {
                    let fetcher = shared.make(library: daemon.core.library, settings: settings, credentials: credentials)
                    let server = try APIServer(fetcher: fetcher, configuration: apiConfiguration)
                    let logger = Logger(label: "tsr.api")
                    apiTask = try APIRunner.startListening(server, signals: false) { url in
                        logger.notice("\(APIRunner.announcement)\(url)")
                    } stopped: { error in
                        if let error { logger.error("\(error)") }
                    }
                }
                defer { apiTask?.cancel() }
                try daemon.run(handleSignals: true)
            }
            return
        }
        try runReporting(json: false) {
            var arguments = ["mount", point, "--foreground", "--home", home]
            if readOnly { arguments.append("--read-only") }
            if allowOther { arguments.append("--allow-other") }
            if !passthrough { arguments.append("--no-passthrough") }
            if let api { arguments += ["--api", api] }
            if let cacheLimit { arguments += ["--cache-limit", cacheLimit] }
            // The API token reaches the daemon through a pipe, never its arguments.
            let token = apiConfiguration?.token
            if token != nil { arguments.append("--api-token-stdin") }
            let logStart = (try? FileManager.default.attributesOfItem(atPath: DaemonLauncher.logPath(home))[.size] as? Int) ?? 0
            let pid = try DaemonLauncher.spawn(arguments: arguments, home: home, stdin: token)
            try DaemonLauncher.waitForMount(point, pid: pid, home: home, slow: { Out.error($0) })
            Out.line("mounted \(home) at \(point) (pid \(pid); log: \(DaemonLauncher.logPath(home)))")
            if let apiConfiguration {
                // The daemon listened before mounting and logged its address (the port it was
                // given, or the one the system chose for port 0).
                let url = DaemonLauncher.loggedValue(after: APIRunner.announcement, home: home, from: logStart) ?? apiConfiguration.url(port: apiConfiguration.port)
                Out.line("API and web page: \(url)")
            }
        }
    }
}

struct UmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "umount", abstract: "Unmount a tsr mount (the daemon then exits).")

    @Argument(help: "The mount point.")
    var mountpoint: String

    @Flag(help: "Detach even while files are open (they keep working until closed).")
    var lazy = false

    func run() throws {
        let point = mountpoint.hasPrefix("/") ? mountpoint : currentDirectory + "/" + mountpoint
        let (status, message) = Unmount.run(point, lazy: lazy)
        if status != 0 {
            Out.error("could not unmount \(point): \(message)" + (message.contains("busy") ? " (close the files, or use --lazy)" : ""))
            throw ExitCode(1)
        }
        Out.line("unmounted \(point)")
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "List live tsr mounts and their homes.")

    @OptionGroup var output: OutputOptions

    func run() throws {
        let mounts = LiveMount.all().map { StatusItem(mount: $0) }
        if output.json {
            try Out.json(mounts)
            return
        }
        if mounts.isEmpty { Out.line("no tsr mounts") }
        for item in mounts {
            let mount = item.mount
            let reads = item.io.map { io in io + (item.ioReason.map { " (\($0))" } ?? "") } ?? "unknown (not answering)"
            Out.line("\(mount.mountpoint)  home \(mount.home)\(mount.readOnly ? "  read-only" : "")  reads: \(reads)")
            for (name, failure) in item.failedDownloads.sorted(by: { $0.key < $1.key }) {
                Out.line("  \(name): \(failure) (`tsr pull \(name)` tries now)")
            }
        }
    }

    /// How the mount reads complete models, from its root's `user.tsr.io` attribute
    /// (`passthrough`, or `plain (why)`); nil when the mount does not answer.
    static func readPath(_ mountpoint: String) -> (io: String, reason: String?)? {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = getxattr(mountpoint, "user.tsr.io", &buffer, buffer.count)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer.prefix(count), as: UTF8.self)
        guard text.hasPrefix("plain ("), text.hasSuffix(")") else { return (text, nil) }
        return ("plain", String(text.dropFirst("plain (".count).dropLast()))
    }

    struct StatusItem: Encodable {
        var mount: LiveMount
        var io: String?
        var ioReason: String?
        /// Files of the home whose last download failed: "failed: why, next try at …" by name.
        var failedDownloads: [String: String] = [:]

        init(mount: LiveMount) {
            self.mount = mount
            let path = StatusCommand.readPath(mount.mountpoint)
            io = path?.io
            ioReason = path?.reason
            if let library = try? Library(home: mount.home), let failures = try? library.registry.fetchFailures() {
                for (digest, failure) in failures {
                    let name = ((try? library.registry.aliases(of: digest)) ?? []).first.map { "\($0.folder)/\($0.path)" } ?? digest.short
                    failedDownloads[name] = failure.summary
                }
            }
        }

        func encode(to encoder: any Encoder) throws {
            try mount.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encodeIfPresent(io, forKey: .io)
            try container.encodeIfPresent(ioReason, forKey: .ioReason)
            try container.encode(failedDownloads, forKey: .failedDownloads)
        }

        enum Key: String, CodingKey { case io, ioReason = "io_reason", failedDownloads = "failed_downloads" }
    }
}
