import Foundation
import Testing
import TSRStore
import TSRTesting

/// mount-helpers/: the mount(8) helper (direct and through an fstab line) and the systemd units.
@Suite(.serialized) struct DeploymentTests {
    let dir: TempDirectory
    var helpers: String { BuildProducts.packageRoot + "/mount-helpers" }

    init() throws { dir = try TempDirectory("tsr-deploy") }

    /// Installs into a staging root with the built binary; returns the root.
    func stage() throws -> String {
        let root = dir.path + "/root"
        var environment = ProcessInfo.processInfo.environment
        environment["DESTDIR"] = root
        let out = try Shell.run("/bin/sh", [helpers + "/install.sh", BuildProducts.tsr, "/usr/local"], environment: environment)
        #expect(out.status == 0, "\(out.stderr)")
        return root
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze"))
    func theUnitsPassSystemdAnalyzeVerify() throws {
        defer { dir.remove() }
        let root = try stage()
        // Point the units at the staged binary so verify can check ExecStart= exists.
        let staged = root + "/usr/local/bin/tsr"
        let template = try String(contentsOfFile: root + "/etc/systemd/system/tsr-mount@.service", encoding: .utf8)
        #expect(template.contains("ExecStart=/usr/local/bin/tsr mount %f --foreground --allow-other"))
        let instance = dir.path + "/tsr-mount@srv-comfyui-models.service"
        try template.replacingOccurrences(of: "/usr/local/bin/tsr", with: staged).write(toFile: instance, atomically: true, encoding: .utf8)
        let system = try Shell.run("/usr/bin/systemd-analyze", ["verify", instance])
        #expect(system.status == 0, "\(system.stdout)\(system.stderr)")

        let user = dir.path + "/tsr-mount.service"
        let userText = try String(contentsOfFile: root + "/etc/systemd/user/tsr-mount.service", encoding: .utf8)
        try userText.replacingOccurrences(of: "/usr/local/bin/tsr", with: staged).write(toFile: user, atomically: true, encoding: .utf8)
        let runtime = dir.path + "/runtime"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_RUNTIME_DIR"] = runtime
        let userCheck = try Shell.run("/usr/bin/systemd-analyze", ["--user", "verify", user], environment: environment)
        #expect(userCheck.status == 0, "\(userCheck.stdout)\(userCheck.stderr)")
    }

    @Test(.enabled(if: TestMount.isAvailable && getuid() == 0 && FileManager.default.fileExists(atPath: "/usr/bin/mount"), "needs root, /dev/fuse and mount(8)"))
    func theHelperMountsThroughMount8AndFstab() throws {
        defer { dir.remove() }
        let root = try stage()
        // mount(8) finds helpers in /sbin only: install there for the test, restore afterwards.
        let helper = "/sbin/mount.fuse.tsr"
        let previous = FileManager.default.contents(atPath: helper)
        try? FileManager.default.removeItem(atPath: helper)
        let text = try String(contentsOfFile: root + helper, encoding: .utf8).replacingOccurrences(of: "/usr/local/bin/tsr", with: BuildProducts.tsr)
        try text.write(toFile: helper, atomically: true, encoding: .utf8)
        chmod(helper, 0o755)
        let home = dir.path + "/home"
        let mountpoint = dir.path + "/models"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        defer {
            if TestMount.isMounted(mountpoint) { _ = try? Shell.run("/bin/fusermount3", ["-uz", mountpoint]) }
            try? FileManager.default.removeItem(atPath: helper)
            if let previous { _ = FileManager.default.createFile(atPath: helper, contents: previous, attributes: [.posixPermissions: 0o755]) }
        }

        let mounted = try Shell.run("/usr/bin/mount", ["-t", "fuse.tsr", home, mountpoint, "-o", "ro"], timeout: 60)
        #expect(mounted.status == 0, "\(mounted.stdout)\(mounted.stderr)")
        let live = try #require(LiveMountInfo.find(mountpoint))
        #expect(live.home == home && live.options.contains("ro"))
        #expect(FileManager.default.fileExists(atPath: mountpoint + "/checkpoints"))
        #expect(try Shell.run(BuildProducts.tsr, ["status"]).stdout.contains("\(mountpoint)  home \(home)  read-only  reads: passthrough"))
        #expect(try Shell.run("/usr/bin/umount", [mountpoint]).status == 0)
        // nopassthrough: the plain path (SEMANTICS §10).
        #expect(try Shell.run("/usr/bin/mount", ["-t", "fuse.tsr", home, mountpoint, "-o", "nopassthrough"], timeout: 60).status == 0)
        #expect(try Shell.run(BuildProducts.tsr, ["status"]).stdout.contains("\(mountpoint)  home \(home)  reads: plain (--no-passthrough)"))
        #expect(try Shell.run("/usr/bin/umount", [mountpoint]).status == 0)
        #expect(!TestMount.isMounted(mountpoint))

        // api=: the daemon serves the HTTP API too (its log says where).
        let withAPI = try Shell.run("/usr/bin/mount", ["-t", "fuse.tsr", home, mountpoint, "-o", "api=127.0.0.1:0"], timeout: 60)
        #expect(withAPI.status == 0, "\(withAPI.stdout)\(withAPI.stderr)")
        let base = try #require(APICLITests.waitForURL(in: home + "/logs/mount.log"), "the mount log says where the API listens")
        let (status, stats) = try APICLITests.call("GET", base + "/stats")
        #expect(status == 200 && stats.contains("\"home\":\"\(home)\""), "\(stats)")
        #expect(try Shell.run("/usr/bin/umount", [mountpoint]).status == 0)

        // An fstab line, as users write them.
        let fstab = dir.path + "/fstab"
        try "\(home) \(mountpoint) fuse.tsr allow_other,noauto,nofail 0 0\n".write(toFile: fstab, atomically: true, encoding: .utf8)
        let fromFstab = try Shell.run("/usr/bin/mount", ["-T", fstab, mountpoint], timeout: 60)
        #expect(fromFstab.status == 0, "\(fromFstab.stdout)\(fromFstab.stderr)")
        #expect(LiveMountInfo.find(mountpoint)?.superOptions.contains("allow_other") == true)
        #expect(try Shell.run("/usr/bin/umount", [mountpoint]).status == 0)

        let bad = try Shell.run("/usr/bin/mount", ["-t", "fuse.tsr", home, mountpoint, "-o", "bogus"], timeout: 60)
        #expect(bad.status != 0 && (bad.stderr + bad.stdout).contains("unknown option 'bogus'"))
        #expect(!TestMount.isMounted(mountpoint))
    }
}

/// One line of /proc/self/mountinfo for a mount point.
struct LiveMountInfo {
    var home: String
    var options: [String]
    var superOptions: [String]

    static func find(_ mountpoint: String) -> LiveMountInfo? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count > 5, parts[4] == mountpoint, let dash = parts.firstIndex(of: "-"), dash + 3 < parts.count else { continue }
            return LiveMountInfo(home: parts[dash + 2], options: parts[5].split(separator: ",").map(String.init), superOptions: parts[dash + 3].split(separator: ",").map(String.init))
        }
        return nil
    }
}

extension DeploymentTests {
    func doctor(_ home: String) throws -> (status: Int32, checks: [[String: Any]]) {
        let out = try Shell.run(BuildProducts.tsr, ["doctor", "--json", "--home", home])
        let checks = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]], "\(out.stderr)")
        return (out.status, checks)
    }

    @Test(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
    func doctorNamesADeadMountAndAQuarantinedBlobWithTheirFixes() throws {
        defer { dir.remove() }
        let home = dir.path + "/home"
        let healthy = try doctor(home)
        #expect(healthy.status == 0)
        #expect(healthy.checks.contains { $0["check"] as? String == "fuse device" && $0["status"] as? String == "ok" })
        #expect(healthy.checks.contains { $0["check"] as? String == "registry" && $0["status"] as? String == "ok" })

        // A blob whose bytes were damaged and caught by tsr verify.
        try dir.write("models/loras/x.safetensors", SafetensorsBuilder(tensors: [("w", "U8", [64])], fill: 3).bytes())
        #expect(try Shell.run(BuildProducts.tsr, ["import", dir.path + "/models", "--copy", "--home", home]).status == 0)
        let blob = try #require(try FileManager.default.subpathsOfDirectory(atPath: home + "/blobs/sha256").first { $0.count > 64 })
        let path = home + "/blobs/sha256/" + blob
        chmod(path, 0o644)
        var bytes = try readBytes(path)
        bytes[bytes.count - 1] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        _ = try Shell.run(BuildProducts.tsr, ["verify", "--home", home])
        let damaged = try doctor(home)
        let store = try #require(damaged.checks.first { $0["check"] as? String == "store" })
        #expect(store["status"] as? String == "warn" && (store["fix"] as? String)?.contains("tsr verify") == true)

        // A mount whose daemon died.
        let mount = try TestMount(home: home, mountpoint: dir.path + "/mnt")
        defer { mount.stop() }
        mount.kill9()
        let dead = try doctor(home)
        #expect(dead.status == 1)
        let failed = try #require(dead.checks.first { $0["check"] as? String == "mounts" && $0["status"] as? String == "fail" })
        #expect((failed["fix"] as? String)?.contains("fusermount3 -u \(dir.path)/mnt") == true)
    }
}

extension DeploymentTests {
    @Test func comfyuiSetupWritesItsSectionKeepsTheRestAndUndoes() throws {
        defer { dir.remove() }
        let home = dir.path + "/home"
        let comfy = dir.path + "/ComfyUI"
        func tsr(_ arguments: [String]) throws -> Shell.Output { try Shell.run(BuildProducts.tsr, arguments + ["--home", home]) }
        try dir.write("ComfyUI/main.py", Array("# ComfyUI\n".utf8))
        let yaml = comfy + "/extra_model_paths.yaml"

        // No file yet, no mount running: a clear error, nothing written.
        let noMount = try tsr(["comfyui", "setup", comfy])
        #expect(noMount.status == 1 && noMount.stderr.contains("no tsr mount") && !FileManager.default.fileExists(atPath: yaml))
        #expect(try tsr(["comfyui", "setup", comfy, "--mountpoint", "/srv/models"]).status == 0)
        #expect(try String(contentsOfFile: yaml, encoding: .utf8).contains("tensors:\n    # managed by tensors"))
        #expect(try tsr(["comfyui", "setup", comfy, "--undo"]).stdout.contains("did not exist before"))
        #expect(!FileManager.default.fileExists(atPath: yaml))

        // The user's own file, and a workflow's view searched first.
        let original = "# mine\nnas:\n  base_path: /mnt/nas   # keep\n  loras: loras\n"
        try original.write(toFile: yaml, atomically: true, encoding: .utf8)
        try dir.write("models/loras/detail.safetensors", SafetensorsBuilder(tensors: [("w", "U8", [16])], fill: 1).bytes())
        #expect(try tsr(["import", dir.path + "/models", "--copy"]).status == 0)
        let workflow = try dir.write("portrait.json", Array(#"{"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors"}}}"#.utf8))
        #expect(try tsr(["workflow", "add", workflow]).status == 0)
        let setUp = try tsr(["comfyui", "setup", comfy, "--mountpoint", "/srv/models", "--workflow", "portrait"])
        #expect(setUp.status == 0, "\(setUp.stderr)")
        let written = try String(contentsOfFile: yaml, encoding: .utf8)
        #expect(written.hasPrefix(original))
        #expect(written.contains("tensors_portrait:") && written.contains("base_path: \"/srv/models/workflows/portrait\"")
                && written.contains("is_default: true") && written.contains("loras: \"loras/\""))
        #expect(try tsr(["comfyui", "setup", comfy, "--mountpoint", "/srv/models", "--workflow", "unknown"]).stderr.contains("no workflow unknown"))
        #expect(try tsr(["comfyui", "setup", comfy, "--undo"]).status == 0)
        #expect(try String(contentsOfFile: yaml, encoding: .utf8) == original, "restored byte for byte")
        #expect(try tsr(["comfyui", "setup", comfy, "--undo"]).stderr.contains("nothing to undo"))
        #expect(try tsr(["comfyui", "setup", dir.path + "/nowhere"]).status != 0)
    }
}

extension DeploymentTests {
    /// ComfyUI often runs as a service user of its own: `--mount` says so when the folder belongs
    /// to another user, and `--allow-other` lets that user read the mount (issue 17).
    @Test(.enabled(if: TestMount.isAvailable && getuid() == 0, "needs root and /dev/fuse"))
    func comfyuiSetupMountNamesAnotherOwnerAndAllowsOtherUsers() throws {
        defer { dir.remove() }
        let home = dir.path + "/home"
        let comfy = dir.path + "/ComfyUI"
        let models = comfy + "/models"
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
        #expect(chown(comfy, 65534, 65534) == 0)
        defer { if TestMount.isMounted(models) { _ = try? Shell.run("/bin/fusermount3", ["-uz", models], timeout: 10) } }
        func tsr(_ arguments: [String]) throws -> Shell.Output {
            var environment = ProcessInfo.processInfo.environment
            environment["TSR_HOME"] = home
            return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 60)
        }
        // The service user must be able to reach the folder at all.
        chmod(dir.path, 0o755)
        // A private model (0600): the blob stays private, yet ComfyUI's user reads it through
        // an --allow-other mount, whose daemon reads the blob.
        let model = SafetensorsBuilder(tensors: [("w", "U8", [256])], fill: 9).bytes()
        try dir.write("private/loras/mine.safetensors", model)
        chmod(dir.path + "/private/loras/mine.safetensors", 0o600)
        #expect(try tsr(["import", dir.path + "/private"]).status == 0)
        let plain = try tsr(["comfyui", "setup", comfy, "--mount"])
        #expect(plain.status == 0 && plain.stdout.contains("belongs to nobody") && plain.stdout.contains("--allow-other"), "\(plain.stdout) \(plain.stderr)")
        #expect(try tsr(["umount", models]).status == 0)
        let allowed = try tsr(["comfyui", "setup", comfy, "--mount", "--allow-other"])
        #expect(allowed.status == 0 && allowed.stdout.contains("readable by every user"), "\(allowed.stdout) \(allowed.stderr)")
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        #expect(mountinfo.split(separator: "\n").contains { $0.contains(" \(models) ") && $0.contains("allow_other") }, "the mount lets other users in")
        let listed = try Shell.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/ls", models], cwd: "/", timeout: 30)
        #expect(listed.status == 0 && listed.stdout.contains("checkpoints"), "nobody lists the mount: \(listed.stderr)")
        let read = try Shell.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/sha256sum", models + "/loras/mine.safetensors"], cwd: "/", timeout: 30)
        let digest = try SHA256Hasher.digest(model).rawValue
        #expect(read.status == 0 && read.stdout.hasPrefix(digest), "nobody reads the private model through the mount: \(read.stderr)")
        #expect(try tsr(["umount", models]).status == 0)
        #expect(try tsr(["comfyui", "setup", comfy, "--allow-other"]).stderr.contains("--allow-other goes with --mount"))
    }
}
