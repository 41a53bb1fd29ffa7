import Foundation
import Testing
import TSRLibrary
import TSRStore
import TSRTesting

/// Runs the built `tsr` binary with a home of its own and checks stdout, stderr and exit codes.
@Suite struct CLITests {
    let dir: TempDirectory
    var home: String { dir.path + "/home" }

    init() throws { dir = try TempDirectory("tsr-cli") }

    func tsr(_ arguments: String...) throws -> Shell.Output {
        try tsr(arguments)
    }

    func tsr(_ arguments: [String]) throws -> Shell.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        return try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120)
    }

    func json(_ output: Shell.Output) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(output.stdout.utf8))
    }

    func importDemo(_ mode: String = "--copy") throws -> [String: Any] {
        try DemoTree.write(to: dir.path + "/models")
        let out = try tsr("import", "models", mode, "--json")
        #expect(out.status == 0, "\(out.stderr)")
        return try #require(try json(out) as? [String: Any])
    }

    @Test func importPrintsASummaryAndStatsListInfoHaveTheDocumentedShapes() throws {
        defer { dir.remove() }
        let summary = try importDemo()
        #expect(summary["files"] as? Int == 8 && summary["unique_blobs"] as? Int == 6 && summary["duplicates"] as? Int == 2, "\(summary)")
        #expect((summary["errors"] as? [Any])?.isEmpty == true)

        let stats = try #require(try json(try tsr("stats", "-j")) as? [String: Any])
        #expect(stats["blobs"] as? Int == 6 && stats["aliases"] as? Int == 8)
        let stored = try #require(stats["bytes_stored"] as? Int)
        let saved = try #require(stats["bytes_saved"] as? Int)
        #expect(stored == DemoTree.files().filter { $0.path.hasSuffix(".safetensors") }.reduce(0) { $0 + $1.bytes.count } - saved)

        let list = try #require(try json(try tsr("list", "--json", "--folder", "loras")) as? [[String: Any]])
        #expect(list.count == 4)
        for item in list {
            for key in ["folder", "name", "sha256", "size", "state"] { #expect(item[key] != nil, "list item lacks \(key)") }
            #expect(item["folder"] as? String == "loras" && item["state"] as? String == "present")
        }
        #expect(try tsr("list", "-j", "-b", "Pony").stdout.contains("demo_pony_style.safetensors"))

        let info = try #require(try json(try tsr("info", "checkpoints/demo-sdxl.safetensors", "-j")) as? [String: Any])
        for key in ["sha256", "size", "tensor_count", "header_size", "metadata", "base_model", "aliases"] {
            #expect(info[key] != nil, "info lacks \(key)")
        }
        #expect(info["base_model"] as? String == "SDXL 1.0" && info["tensor_count"] as? Int == 2)
        let text = try tsr("info", "models/checkpoints/demo-sdxl.safetensors")
        #expect(text.status == 0 && text.stdout.contains("base model:   SDXL 1.0") && text.stdout.contains("modelspec.title: Demo SDXL"))
    }

    @Test func reimportIsANoOpAndTheProgressBarStaysOffAPipe() throws {
        defer { dir.remove() }
        _ = try importDemo("--link")
        let again = try tsr("import", "models")
        #expect(again.status == 0)
        #expect(again.stdout.contains("0 hashed, 8 unchanged"))
        #expect(again.stderr.isEmpty, "no progress bar on a pipe")
    }

    @Test func hashPrintsLikeSha256sumAndReportsMissingFiles() throws {
        defer { dir.remove() }
        let a = try dir.write("a.bin", Array(repeating: 1, count: 3 << 20))
        let b = try dir.write("b b.bin", Array("abc".utf8))
        let out = try tsr("hash", a, dir.path + "/missing", b)
        #expect(out.status == 1)
        let expectedA = try SHA256Hasher.digest([UInt8](repeating: 1, count: 3 << 20)).rawValue
        #expect(out.stdout == "\(expectedA)  \(a)\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  \(b)\n")
        #expect(out.stderr.contains("missing") && out.stderr.contains("No such file"))
        if FileManager.default.fileExists(atPath: "/usr/bin/openssl") {
            let openssl = try Shell.run("/usr/bin/openssl", ["dgst", "-sha256", "-r", a])
            #expect(openssl.stdout.hasPrefix(expectedA))
        }
    }

    @Test func aliasCommandsAndTheirErrors() throws {
        defer { dir.remove() }
        _ = try importDemo()
        #expect(try tsr("alias", "add", "loras/extra/same.safetensors", "loras/demo_detail.safetensors").status == 0)
        let added = try tsr("info", "loras/extra/same.safetensors", "-j")
        #expect(added.stdout.contains("loras/style/demo_detail_v1.safetensors"))
        let conflict = try tsr("alias", "add", "loras/demo_detail.safetensors", "vae/demo-vae.safetensors")
        #expect(conflict.status == 1 && conflict.stderr.contains("already exists") && conflict.stderr.contains("--force"))
        #expect(try tsr("alias", "mv", "loras/extra/same.safetensors", "checkpoints/moved.safetensors").status == 0)
        #expect(try tsr("alias", "rm", "checkpoints/moved.safetensors").status == 0)
        let missing = try tsr("alias", "rm", "checkpoints/moved.safetensors")
        #expect(missing.status == 1 && missing.stderr.contains("no alias checkpoints/moved.safetensors"))
        for bad in ["../etc/passwd", "loras/../../x", "loras/a\nb", "noslash"] {
            let out = try tsr("alias", "add", bad, String(repeating: "a", count: 64))
            #expect(out.status == 64, "\(bad): \(out.stderr)")
            #expect(out.stderr.contains("Error:"))
        }
        let unknown = try tsr("alias", "add", "loras/x.safetensors", String(repeating: "a", count: 64))
        #expect(unknown.status == 1 && unknown.stderr.contains("no blob"))
    }

    /// tsr cache, cache limit, pin, unpin and gc --evict-to: their output, and bad input refused.
    @Test func cacheCommandsShowSetPinAndEvict() throws {
        defer { dir.remove() }
        _ = try importDemo()
        let status = try #require(try json(try tsr("cache", "-j")) as? [String: Any])
        #expect((status["blobs"] as? Int ?? 0) > 0 && status["limit"] == nil)
        #expect(status["unevictable"] as? Int == status["size"] as? Int, "imported copies have no source: they are never evicted")
        let set = try tsr("cache", "limit", "1M")
        #expect(set.status == 0 && set.stdout.contains("cache limit: 1.0 MiB"), "\(set.stdout)\(set.stderr)")
        #expect(try tsr("cache").stdout.contains("limit       1.0 MiB (home)"))
        let env = try Shell.run(
            BuildProducts.tsr, ["cache", "-j"], environment: ProcessInfo.processInfo.environment.merging(["TSR_HOME": home, "TSR_CACHE_LIMIT": "2G"]) { $1 },
            cwd: dir.path, timeout: 60)
        #expect((try json(env) as? [String: Any])?["limit_source"] as? String == "TSR_CACHE_LIMIT")
        let pinned = try tsr("pin", "loras/demo_detail.safetensors")
        #expect(pinned.status == 0 && pinned.stdout.contains("pinned 1 blob (1 newly)"), "\(pinned.stdout)\(pinned.stderr)")
        #expect(try tsr("unpin", "loras/demo_detail.safetensors").stdout.contains("unpinned 1 blob"))
        let unknown = try tsr("pin", "loras/nothing.safetensors")
        #expect(unknown.status == 1 && unknown.stderr.contains("loras/nothing.safetensors"))
        let evict = try tsr("gc", "--evict-to", "0")
        #expect(evict.status == 0 && evict.stdout.contains("evicted 0 blobs") && evict.stdout.contains("with no source to fetch them again from"), "\(evict.stdout)")
        for bad in [["cache", "limit", "lots"], ["gc", "--evict-to", "-5G"], ["pin"]] {
            let out = try tsr(bad)
            #expect(out.status == 64, "\(bad): \(out.stderr)")
        }
        #expect(try tsr("cache", "limit", "none", "--min-free", "10%").stdout.contains("cache limit: none"))
        #expect((try json(try tsr("cache", "-j")) as? [String: Any])?["min_free"] as? String == "10%")
        #expect(try tsr("cache", "limit", "none", "--min-free", "most").status == 64)
        #expect(try tsr("cache", "limit", "none", "--min-free", "none").status == 0)
        #expect((try json(try tsr("cache", "-j")) as? [String: Any])?["min_free"] == nil)
    }

    @Test func verifyExitsNonZeroOnCorruptionAndGcCollects() throws {
        defer { dir.remove() }
        _ = try importDemo()
        #expect(try tsr("verify").status == 0)
        let victim = try SHA256Hasher.digest(DemoTree.files()[2].bytes)
        let path = home + "/blobs/sha256/\(victim.prefix)/\(victim.rawValue)"
        chmod(path, 0o644)
        var bytes = try readBytes(path)
        bytes[100] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let out = try tsr("verify")
        #expect(out.status == 1 && out.stdout.contains("CORRUPT \(victim.rawValue)"))
        let json = try tsr("verify", victim.rawValue.uppercased(), "--json")
        #expect(json.status == 1 && json.stdout.contains("\"status\" : \"missing\""))

        #expect(try tsr("alias", "rm", "vae/demo-vae.safetensors").status == 0)
        let dry = try tsr("gc", "--dry-run")
        #expect(dry.stdout.contains("would remove unreferenced blob"))
        let gc = try tsr("gc", "-j")
        let vae = try SHA256Hasher.digest(DemoTree.files()[7].bytes).rawValue
        #expect(gc.status == 0 && gc.stdout.contains(vae))
    }

    @Test func errorsAreOneLineOrJSON() throws {
        defer { dir.remove() }
        let text = try tsr("info", "nothing-here")
        #expect(text.status == 1 && text.stderr == "tsr: nothing-here: no such file, alias (FOLDER/NAME) or SHA-256\n")
        let json = try tsr("info", "nothing-here", "--json")
        #expect(json.status == 1 && json.stdout.contains("\"error\""))
        let notDir = try tsr("import", "/nonexistent/models")
        #expect(notDir.status == 1 && notDir.stderr.contains("/nonexistent/models"))
        let badImport = try tsr("import", dir.path, "--folder", "a/b")
        #expect(badImport.status == 1 && badImport.stderr.contains("not a folder key"))
    }

    /// Issue 18 #8: a bad argument found while a subcommand runs shows that subcommand's usage.
    @Test func badArgumentsFoundWhileRunningShowTheSubcommandsUsage() throws {
        defer { dir.remove() }
        let cases: [([String], String)] = [
            (["add", "ftp://example.org/x.safetensors"], "Usage: tsr add <source>"),
            (["alias", "add", "no-folder-here", "0123456789abcdef"], "Usage: tsr alias add"),
            (["verify", "zz-not-hex"], "Usage: tsr verify"),
            (["db", "scan"], "Usage: tsr db scan <directory>"),
        ]
        for (arguments, usage) in cases {
            let out = try tsr(arguments)
            #expect(out.status == 64, "\(arguments): \(out.status) \(out.stderr)")
            #expect(out.stderr.hasPrefix("Error: ") && out.stderr.contains(usage) && !out.stderr.contains("<subcommand>"), "\(arguments): \(out.stderr)")
            #expect(out.stderr.contains("See 'tsr \(arguments[0])"), "\(out.stderr)")
        }
    }

    @Test func scanAndDemoRun() throws {
        defer { dir.remove() }
        try DemoTree.write(to: dir.path + "/models")
        let scan = try tsr("db", "scan", "models", "-j")
        #expect(scan.status == 0 && scan.stdout.contains("\"hashed\" : 8"))
        let demo = try tsr("demo", "--home", dir.path + "/demo-home")
        #expect(demo.status == 0, "\(demo.stderr)")
        #expect(demo.stdout.contains("bytes saved:") && demo.stdout.contains("loras/pony/demo_pony_style.safetensors"))
    }

    @Test func aKilledImportLosesNothingAndARerunFinishes() throws {
        defer { dir.remove() }
        // A 2 GiB sparse model takes about a second to hash: long enough to kill mid-way.
        let path = dir.path + "/models/checkpoints/huge.ckpt"
        try FileManager.default.createDirectory(atPath: dir.path + "/models/checkpoints", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: path, contents: Data("start".utf8)))
        #expect(truncate(path, 2 << 30) == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuildProducts.tsr)
        process.arguments = ["import", dir.path + "/models", "--move"]
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = home
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Kill once hashing is under way (a temp file exists).
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let names = try? FileManager.default.contentsOfDirectory(atPath: home + "/tmp"), names.contains(where: { $0.hasPrefix("txn-") }) { break }
            Thread.sleep(forTimeInterval: 0.005)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "import finished before it could be killed")
        #expect(FileManager.default.fileExists(atPath: path), "the original survives")
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == 2 << 30)
        let blobs = try FileManager.default.subpathsOfDirectory(atPath: home + "/blobs/sha256").filter { $0.count > 3 }
        #expect(blobs.isEmpty, "no blob is visible before its commit")
        let rerun = try tsr("import", "models", "--move", "-j")
        #expect(rerun.status == 0 && rerun.stdout.contains("\"originals_removed\" : 1"))
        #expect(!FileManager.default.fileExists(atPath: path))
        let list = try tsr("list", "-j")
        #expect(list.stdout.contains("huge.ckpt") && list.stdout.contains("\(2 << 30)"))
    }
}

@Suite struct TerminalTests {
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/script"), "needs script(1) for a pseudo-terminal"))
    func aTerminalGetsAProgressBar() throws {
        let dir = try TempDirectory("tsr-tty")
        defer { dir.remove() }
        try DemoTree.write(to: dir.path + "/models")
        var environment = ProcessInfo.processInfo.environment
        environment["TSR_HOME"] = dir.path + "/home"
        // script(1) runs the command on a pseudo-terminal, so stderr is a TTY.
        let command = "'\(BuildProducts.tsr)' import '\(dir.path)/models'"
        let out = try Shell.run("/usr/bin/script", ["-qec", command, "/dev/null"], environment: environment, timeout: 60)
        #expect(out.status == 0)
        #expect(out.stdout.contains("hashing ["), "progress bar drawn on the terminal")
        #expect(out.stdout.contains("Imported 8 files"))
    }
}

extension CLITests {
    /// Issue 25: a full disk at the registry step answered "database or disk is full" as a
    /// generic failure (EIO through the mount), and `tsr verify` failed outright.
    @Test(.enabled(if: Tmpfs.isAvailable, "needs root to mount a tmpfs"))
    func aFullDiskSaysSoAndVerifyStillVerifies() throws {
        defer { dir.remove() }
        try Tmpfs.with(sizeBytes: 16 << 20) { root in
            var environment = ProcessInfo.processInfo.environment
            environment["TSR_HOME"] = root + "/home"
            func run(_ arguments: [String]) throws -> Shell.Output {
                try Shell.run(BuildProducts.tsr, arguments, environment: environment, cwd: dir.path, timeout: 120)
            }
            try dir.write("models/loras/a.safetensors", SafetensorsBuilder(tensors: [("w", "U8", [4096])], fill: 1).bytes())
            #expect(try run(["import", dir.path + "/models", "--copy"]).status == 0)
            // Fill the filesystem.
            _ = try Shell.run("/bin/dd", ["if=/dev/zero", "of=\(root)/fill", "bs=64k"], timeout: 60)
            var full: Shell.Output?
            for n in 0..<400 {
                let added = try run(["alias", "add", "loras/copy-\(n)-\(String(repeating: "x", count: 200)).safetensors", "loras/a.safetensors"])
                if added.status != 0 {
                    full = added
                    break
                }
            }
            let refused = try #require(full, "a registry write failed once the disk was full")
            #expect(refused.stderr.contains("no space left on the disk") && refused.stderr.contains("nothing was changed"), "\(refused.stderr)")
            // A normal open needs room for SQLite's shared-memory file; where there is none, the
            // registry opens read-only and read-only work goes on.
            let verified = try run(["verify"])
            #expect(verified.status == 0 && verified.stdout.contains("1 ok"), "\(verified.stdout) \(verified.stderr)")
            #expect(try run(["list"]).stdout.contains("loras/a.safetensors"))
            try FileManager.default.removeItem(atPath: root + "/fill")
            #expect(try run(["verify"]).status == 0)
        }
    }
}

extension CLITests {
    /// Issue 25: import made a private 0600 file world-readable, at its original path too (the
    /// same inode under --link). Permissions stay no wider than the source's; a new home is 0700.
    @Test func importKeepsPermissionsNoWiderThanTheSourcesAndANewHomeIsPrivate() throws {
        defer { dir.remove() }
        let secret = dir.path + "/models/loras/private.safetensors"
        let shared = dir.path + "/models/loras/shared.safetensors"
        let copied = dir.path + "/copy/loras/private-copy.safetensors"
        try dir.write("models/loras/private.safetensors", SafetensorsBuilder(tensors: [("w", "U8", [64])], fill: 1).bytes())
        try dir.write("models/loras/shared.safetensors", SafetensorsBuilder(tensors: [("w", "U8", [64])], fill: 2).bytes())
        try dir.write("copy/loras/private-copy.safetensors", SafetensorsBuilder(tensors: [("w", "U8", [64])], fill: 3).bytes())
        chmod(secret, 0o600)
        chmod(shared, 0o644)
        chmod(copied, 0o600)
        #expect(try tsr("import", dir.path + "/models").status == 0)
        #expect(try tsr("import", dir.path + "/copy", "--copy").status == 0)
        func mode(_ path: String) -> mode_t {
            var status = stat()
            return stat(path, &status) == 0 ? status.st_mode & 0o777 : 0o7777
        }
        func blob(_ path: String) throws -> String {
            let digest = try SHA256Hasher.digest(readBytes(path))
            return home + "/blobs/sha256/\(digest.prefix)/\(digest.rawValue)"
        }
        #expect(mode(home) == 0o700, "a new home is private")
        #expect(mode(secret) == 0o400, "the original of a 0600 file is read-only, still private: \(String(mode(secret), radix: 8))")
        #expect(mode(try blob(secret)) == 0o400)
        #expect(mode(try blob(shared)) == 0o444, "a shared file stays readable")
        #expect(mode(try blob(copied)) == 0o400, "a copy is no wider than its original")
    }
}

extension CLITests {
    /// Issue 18: `tsr alias add NAME 6213aae99021` (the 12 hex digits `tsr list` prints) failed
    /// with "has no folder". Any unique prefix of 8+ hex digits names a blob, as git takes commits.
    @Test func shortHashesNameBlobsWhenUniqueAndSaySoWhenNot() throws {
        defer { dir.remove() }
        _ = try importDemo()
        let listed = try tsr("list", "--json")
        let items = try #require(try json(listed) as? [[String: Any]])
        let digests = Set(items.compactMap { $0["sha256"] as? String })
        let target = try #require(digests.sorted().first)
        let short = String(target.prefix(12))
        let added = try tsr("alias", "add", "loras/short.safetensors", short)
        #expect(added.status == 0, "\(added.stderr)")
        let info = try #require(try json(try tsr("info", "loras/short.safetensors", "--json")) as? [String: Any])
        #expect(info["sha256"] as? String == target)
        let byPrefix = try #require(try json(try tsr("info", String(target.prefix(8)), "--json")) as? [String: Any])
        #expect(byPrefix["sha256"] as? String == target)
        #expect(try tsr("verify", short).status == 0)
        // Too short, unknown, ambiguous: each says why.
        let tooShort = try tsr("alias", "add", "loras/x.safetensors", String(target.prefix(6)))
        #expect(tooShort.status != 0 && tooShort.stderr.contains("no folder") == false, "\(tooShort.stderr)")
        let unknown = try tsr("alias", "add", "loras/x.safetensors", "00000000ffff")
        #expect(unknown.status != 0 && unknown.stderr.contains("00000000ffff"), "\(unknown.stderr)")
        // Two blobs sharing a first digit: one digit is never enough (8 at least), so make the
        // ambiguity with the registry's own answer for a common prefix when there is one.
        let sorted = digests.sorted()
        if let pair = zip(sorted, sorted.dropFirst()).first(where: { $0.prefix(8) == $1.prefix(8) }) {
            let ambiguous = try tsr("alias", "add", "loras/y.safetensors", String(pair.0.prefix(8)))
            #expect(ambiguous.status != 0 && ambiguous.stderr.contains("ambiguous"))
        }
    }
}

extension CLITests {
    /// Issue 18: `tsr import DIR --folder KEY` on a whole models tree imported it as
    /// checkpoints/checkpoints/… without a word. It is refused; `--only KEY[,KEY]` imports some
    /// folders of a tree (the seed's `migrate --folder`).
    @Test func folderOnAWholeTreeIsRefusedAndOnlyPicksFolders() throws {
        defer { dir.remove() }
        try DemoTree.write(to: dir.path + "/models")
        let refused = try tsr("import", "models", "--folder", "checkpoints")
        #expect(refused.status != 0 && refused.stderr.contains("looks like a whole models tree") && refused.stderr.contains("--only"), "\(refused.stderr)")
        #expect((try json(try tsr("list", "--json")) as? [Any])?.isEmpty == true, "nothing was imported")
        let loras = DemoTree.files().filter { $0.path.hasPrefix("loras/") && ModelPath.isModelFile(($0.path as NSString).lastPathComponent) }
        #expect(!loras.isEmpty)
        let dry = try #require(try json(try tsr("import", "models", "--only", "loras", "--dry-run", "--json")) as? [String: Any])
        #expect(dry["files"] as? Int == loras.count, "\(dry)")
        #expect(try tsr("import", "models", "--only", "loras").status == 0)
        let items = try #require(try json(try tsr("list", "--json")) as? [[String: Any]])
        #expect(!items.isEmpty && items.allSatisfy { $0["folder"] as? String == "loras" })
        #expect(try tsr("import", "models", "--only", "nope/x").status != 0)
        #expect(try tsr("import", "models/loras", "--folder", "loras").status == 0, "one folder with --folder still works")
    }
}
