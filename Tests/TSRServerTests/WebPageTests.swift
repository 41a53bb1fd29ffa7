import Foundation
import Testing
import TSRCivitAI
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRServer
import TSRStore
import TSRTesting

/// The page at `/` in headless Chromium (Tests/Web/page_test.py): load, filter, open a model,
/// drop a workflow, watch its download finish.
@Suite struct WebPageTests {
    @Test func thePageBrowsesFiltersShowsAModelAndDownloadsADroppedWorkflow() async throws {
        try await onAPIThreads {
            let vae = safetensors(payload: 2 << 20)
            let hf = try HuggingFaceFixture(files: ["org/repo/vae/tiny_vae.safetensors": .init(bytes: vae)])
            let api = try await APIHarness(settings: APIHarness.settings(hf: hf))
            defer { Task(executorPreference: ThreadExecutor.api) { await api.stop() } }

            // Two local files, and one CivitAI-linked LoRA not downloaded yet.
            let files = try TempDirectory("tsr-page")
            defer { files.remove() }
            _ = try files.write("models/checkpoints/base.safetensors", safetensors(payload: 4096))
            _ = try files.write("models/loras/ink.safetensors", safetensors(payload: 8192))
            var options = ImportOptions()
            options.mode = .copy
            _ = try Importer(library: api.library).run(root: files.path + "/models", options: options)
            let version = try JSONSerialization.jsonObject(with: Data(try CivitAIFixture.sharedFixture("version-1255556-with-creator.json").utf8)) as! [String: Any]
            try api.library.registry.cacheModel(try #require(CivitAIMapping.versionResponse(version)))
            _ = try api.library.registerRemote(
                digest: try #require(Digest(rawValue: "3202778c3ebe5cf7ebe5fc51561deae8611f4362036eb7c02efa033c705e6240")), size: 39_760_704,
                folder: "loras", path: "whimsy.safetensors", replace: false, url: "https://civitai.com/api/download/models/1255556", kind: "civitai", prefix: nil)

            let workflow: [String: Any] = [
                "nodes": [
                    ["id": 1, "type": "CheckpointLoaderSimple", "properties": ["models": [["name": "base.safetensors", "directory": "checkpoints"]]]],
                    ["id": 2, "type": "VAELoader", "properties": ["models": [
                        ["name": "tiny_vae.safetensors", "url": "https://huggingface.co/org/repo/resolve/main/vae/tiny_vae.safetensors", "directory": "vae"],
                    ]]],
                ],
            ]
            let workflowPath = try files.write("portrait.json", Array(try JSONSerialization.data(withJSONObject: workflow)))
            let expected: [String: Any] = [
                "models": 3, "present": 2, "loras": 2, "search": "whimsy", "search_hit": "whimsy.safetensors", "trigger": "in the style of ppWhimsy",
                "creator": "PixelPawsAI", "summary": "1 here, 1 missing · 2.00 MiB to download", "missing_file": "vae/tiny_vae.safetensors",
            ]
            let expectedPath = try files.write("expected.json", Array(try JSONSerialization.data(withJSONObject: expected)))
            let script = BuildProducts.packageRoot + "/Tests/Web/page_test.py"
            let base = api.base
            let output = try await onThread { try Shell.run("/usr/bin/python3", [script, base, workflowPath, expectedPath], timeout: 180) }
            #expect(output.status == 0, "\(output.stdout)\n\(output.stderr.suffix(3000))")
            #expect(output.stdout.contains("page test: ok"))
            #expect(api.library.store.contains(try SHA256Hasher.digest(vae)), "the dropped workflow's file was downloaded")
            #expect(try api.library.registry.workflows().map(\.workflow.name) == ["portrait"])
        }
    }
}

/// Runs blocking work (a child process) off Swift's small cooperative pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
