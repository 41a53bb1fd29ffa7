import Foundation
import Testing
import TSRStore
import TSRTesting

/// S10: after authenticated downloads through the CLI (environment and stdin), a lazy read through
/// the mount and the API (key in the request, API token through stdin), no token appears in the
/// home (registry, logs, temp files), in the daemon's command line or its environment.
@Suite(.enabled(if: TestMount.isAvailable, "needs /dev/fuse"))
struct SecretsScenario {
    @Test func s10TokensAppearNowhereAfterDownloadsThroughTheCLITheMountAndTheAPI() throws {
        let files = (1...4).map { SafetensorsBuilder(tensors: [("w\($0)", "U8", [1 << 20])], fill: UInt8($0)).bytes() }
        let hf = try HuggingFaceFixture(
            files: Dictionary(uniqueKeysWithValues: files.enumerated().map { ("org/gated/m\($0.offset).safetensors", HuggingFaceFixture.File(bytes: $0.element, gated: true)) }),
            token: "hf_scenario_secret_" + String(UInt64.random(in: 1 << 40...1 << 50)))
        let apiToken = "api_scenario_secret_" + String(UInt64.random(in: 1 << 40...1 << 50))
        let world = try ScenarioWorld("tsr-s10", environment: ["HF_ENDPOINT": hf.endpoint])
        defer { world.remove() }

        // CLI: the token from the environment, then from stdin.
        let fromEnvironment = try world.tsr(["pull", "hf://org/gated/m0.safetensors", "--folder", "loras"], environment: ["HF_TOKEN": hf.token])
        #expect(fromEnvironment.status == 0, "\(fromEnvironment.stderr)")
        let fromStdin = try world.tsr(["pull", "hf://org/gated/m1.safetensors", "--folder", "loras", "--token-stdin"], input: hf.token + "\n")
        #expect(fromStdin.status == 0, "\(fromStdin.stderr)")

        // The mount: a lazy read with the daemon's HF_TOKEN.
        #expect(try world.tsr(["add", "hf://org/gated/m2.safetensors", "--folder", "vae"], environment: ["HF_TOKEN": hf.token]).status == 0)
        try TestMount.with(home: world.home, environment: ["HF_ENDPOINT": hf.endpoint, "HF_TOKEN": hf.token]) { mount in
            let read = try readBytes(mount.mountpoint + "/vae/m2.safetensors")
            #expect(read == files[2])
            #expect(!((try? readBytes(mount.log)) ?? []).contains(hf.token), "the daemon's log does not hold the token")
            // Started with HF_TOKEN in its environment, the daemon keeps it in memory only.
            let environ = (try? readBytes("/proc/\(mount.pid)/environ")) ?? []
            #expect(!environ.isEmpty && !environ.contains(hf.token), "the daemon's /proc/PID/environ no longer holds the token")
        }

        // The API in a background daemon started without any token in its environment: the key
        // comes with the request, the API token through stdin.
        let mountpoint = world.dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        defer { if TestMount.isMounted(mountpoint) { _ = try? Shell.run("/bin/fusermount3", ["-uz", mountpoint]) } }
        let mounted = try world.tsr(["mount", mountpoint, "--api", "127.0.0.1:0", "--api-token-stdin"], input: apiToken + "\n")
        #expect(mounted.status == 0, "\(mounted.stderr)")
        let printed = try #require(mounted.stdout.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression), "\(mounted.stdout)")
        let base = String(mounted.stdout[printed])
        let body = #"{"url":"hf://org/gated/m3.safetensors","folder":"checkpoints","huggingface_token":"\#(hf.token)"}"#
        let answer = try Shell.run("/usr/bin/curl", ["-s", "-X", "POST", "-H", "Authorization: Bearer \(apiToken)", "-H", "Content-Type: application/json",
                                                     "--data-binary", "@-", base + "/models/download"], input: body)
        #expect(answer.stdout.contains("\"status\":\"completed\""), "\(answer.stdout)")
        let pids = try Shell.run("/usr/bin/pgrep", ["-f", "tsr mount \(mountpoint)"]).stdout.split(separator: "\n").compactMap { Int32($0) }
        #expect(!pids.isEmpty)
        for pid in pids {
            let environ = (try? readBytes("/proc/\(pid)/environ")) ?? []
            let cmdline = (try? readBytes("/proc/\(pid)/cmdline")) ?? []
            #expect(!environ.contains(hf.token) && !environ.contains(apiToken), "the daemon's environment holds no token")
            #expect(!cmdline.contains(hf.token) && !cmdline.contains(apiToken), "nor its command line")
        }
        #expect(try world.tsr(["umount", mountpoint]).status == 0)

        for (index, bytes) in files.enumerated() {
            let digest = try SHA256Hasher.digest(bytes)
            #expect((try? readBytes(world.blobPath(digest))) == bytes, "file \(index) downloaded")
        }
        let everything = everyByte(under: world.dir.path)
        #expect(!everything.contains(hf.token), "the Hugging Face token is nowhere in the home, its logs or the test's files")
        #expect(!everything.contains(apiToken), "nor the API token")
        #expect(hf.cdn.requests.allSatisfy { $0.header("authorization") == nil }, "the token went to its own service only")
        ScenarioRecord(id: "S10", title: "tokens after CLI, mount and API downloads", faultsInjected: 0,
                       bytesChecked: Int64(files.reduce(0) { $0 + $1.count })).record()
    }
}
