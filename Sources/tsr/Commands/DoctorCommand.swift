import ArgumentParser
import Foundation
import TSRLibrary
import TSRMount
import TSRRegistry
import TSRStore

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check what mounting and the library need, and say how to fix what is wrong.",
        discussion: "Exit status 1 when a check fails; warnings do not fail. --json prints [{check, status, detail, fix}].")

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    struct Check: Encodable {
        enum Status: String, Encodable { case ok, info, warn, fail }
        var check: String
        var status: Status
        var detail: String
        var fix: String?
    }

    func run() throws {
        var checks: [Check] = []
        func add(_ name: String, _ status: Check.Status, _ detail: String, fix: String? = nil) {
            checks.append(Check(check: name, status: status, detail: detail, fix: fix))
        }

        // FUSE itself.
        if let failure = SystemCalls.readWriteOpenFailure("/dev/fuse") {
            add("fuse device", .fail, "/dev/fuse cannot be opened: \(failure)",
                fix: "load the module (modprobe fuse); in a container, run it with --device /dev/fuse --cap-add SYS_ADMIN")
        } else {
            add("fuse device", .ok, "/dev/fuse can be opened")
        }
        if let path = ["/bin/fusermount3", "/usr/bin/fusermount3"].first(where: { (path: String) in access(path, X_OK) == 0 }) {
            add("fusermount3", .ok, path)
        } else {
            add("fusermount3", .fail, "fusermount3 is missing (unmounting and non-root mounts need it)", fix: "apt-get install fuse3")
        }
        if getuid() == 0 {
            add("allow_other", .ok, "root may mount with --allow-other")
        } else {
            let conf = (try? String(contentsOfFile: "/etc/fuse.conf", encoding: .utf8)) ?? ""
            let allowed = conf.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "user_allow_other" }
            add("allow_other", allowed ? .ok : .warn,
                allowed ? "user_allow_other is set in /etc/fuse.conf" : "--allow-other (ComfyUI running as another user) is refused for non-root users",
                fix: allowed ? nil : "add the line user_allow_other to /etc/fuse.conf (as root)")
        }
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        let passthrough = numbers.count == 2 && (numbers[0], numbers[1]) >= (6, 9)
        add("kernel passthrough", .info,
            passthrough ? "kernel \(release) supports FUSE passthrough: mounts made as root read complete models at native speed (`tsr status` shows each mount's path)"
                : "kernel \(release) has no FUSE passthrough (needs 6.9): reads use the plain path")

        // The home.
        let home = homeOptions.resolved
        do {
            let library = try Library(home: home)
            let problems = try library.registry.quickCheck()
            if problems.isEmpty {
                let stats = try library.registry.stats()
                add("registry", .ok, "\(library.layout.database): \(stats.aliases) names, \(stats.blobs) blobs here, \(stats.remoteBlobs) not downloaded yet")
            } else {
                add("registry", .fail, "\(library.layout.database) is damaged: \(problems.prefix(3).joined(separator: "; "))",
                    fix: "stop every tsr process, copy the home aside, and run sqlite3 \(library.layout.database) '.recover' into a new models.db")
            }
            let quarantined = try library.registry.blobs(state: .quarantined)
            if !quarantined.isEmpty {
                add("store", .warn, "\(quarantined.count) stored blob\(quarantined.count == 1 ? "" : "s") failed verification",
                    fix: "`tsr pull --all-missing` fetches those with a source again; `tsr verify` re-checks the rest")
            }
            let files = try library.store.quarantinedFiles()
            if files.isEmpty {
                if quarantined.isEmpty { add("store", .ok, "nothing quarantined") }
            } else {
                let bytes = files.reduce(0) { $0 + $1.size }
                add("quarantine", .info, "\(files.count) file\(files.count == 1 ? "" : "s") of wrong bytes kept for inspection, \(formatBytes(bytes)) in \(library.layout.quarantine) (at most \(formatBytes(library.store.quarantineLimit)))",
                    fix: "`tsr gc` removes those older than a week, `tsr gc --quarantine` all of them")
            }
            let failures = try library.registry.fetchFailures()
            if !failures.isEmpty {
                let example = failures.min { $0.value.nextTryAt < $1.value.nextTryAt }!
                add("downloads", .warn, "\(failures.count) download\(failures.count == 1 ? "" : "s") failed; reads of \(failures.count == 1 ? "that file" : "those files") answer EIO until the next try (e.g. \(example.key.short): \(example.value.summary))",
                    fix: "`tsr pull NAME` tries one again now; `tsr list` shows which")
            }
            let temp = try library.store.staleTempFiles().count
            let partials = try library.store.idlePartials()
            if temp + partials.count > 0 {
                add("temp files", .info, "\(temp) left by crashed writers, \(partials.count) stopped download\(partials.count == 1 ? "" : "s") (resumed by the next pull)",
                    fix: "`tsr gc` removes what nothing waits for")
            }
            var space = statvfs()
            if statvfs(home, &space) == 0 {
                let free = Int64(space.f_bavail) * Int64(space.f_frsize)
                let total = Int64(space.f_blocks) * Int64(space.f_frsize)
                let low = free < 10 << 30 || (total > 0 && free * 20 < total)
                add("free space", low ? .warn : .ok, "\(formatBytes(free)) free of \(formatBytes(total)) where the home is",
                    fix: low ? "free space, or move the home (--home / TSR_HOME) to a larger filesystem: downloads stop when it is full" : nil)
            }
        } catch {
            add("home", .fail, "\(home) cannot be opened: \(error)", fix: "check the path and its permissions, or pass --home")
        }

        // Mounts, live and dead.
        let mounts = LiveMount.all()
        if mounts.isEmpty { add("mounts", .info, "no tsr mount") }
        for mount in mounts {
            var status = stat()
            if stat(mount.mountpoint, &status) != 0 && errno == ENOTCONN {
                add("mounts", .fail, "\(mount.mountpoint): its daemon is gone (Transport endpoint is not connected)",
                    fix: "fusermount3 -u \(mount.mountpoint), then tsr mount \(mount.mountpoint) --home \(mount.home); its log: \(mount.home)/logs/mount.log")
            } else {
                add("mounts", .ok, "\(mount.mountpoint) (home \(mount.home)\(mount.readOnly ? ", read-only" : ""))")
            }
        }

        if output.json {
            try Out.json(checks)
        } else {
            for check in checks {
                Out.line("\(check.status.rawValue.uppercased().padding(toLength: 5, withPad: " ", startingAt: 0)) \(check.check): \(check.detail)")
                if let fix = check.fix, check.status != .ok { Out.line("      fix: \(fix)") }
            }
        }
        if checks.contains(where: { $0.status == .fail }) { throw ExitCode(1) }
    }
}
