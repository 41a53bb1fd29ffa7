import Foundation
import Testing
import TSRStore
import TSRWorkflow

@Suite struct WorkflowParserTests {
    func parse(_ json: String) throws -> ParsedWorkflow { try WorkflowParser.parse(Data(json.utf8)) }

    @Test func seedFormatKeepsHashesSizesURLsAndFlags() throws {
        let sha = String(repeating: "AB", count: 32)
        let parsed = try parse("""
            {"workflow": {"nodes": [], "dependencies": {
              "checkpoints": [{"filename": "sd_xl_base_1.0.safetensors", "sha256": "\(sha)", "size": 6938078334,
                               "urls": ["https://huggingface.co/s/x/resolve/main/sd_xl_base_1.0.safetensors"],
                               "display_name": "SDXL Base", "required": true, "requires_auth": false}],
              "unet": [{"filename": "flux/dev.safetensors", "required": false}]}}}
            """)
        #expect(parsed.format == .seed && parsed.problems.isEmpty)
        let checkpoint = try #require(parsed.dependencies.first { $0.folder == "checkpoints" })
        #expect(checkpoint.sha256?.rawValue == sha.lowercased() && checkpoint.size == 6938078334 && checkpoint.displayName == "SDXL Base")
        #expect(checkpoint.urls == ["https://huggingface.co/s/x/resolve/main/sd_xl_base_1.0.safetensors"])
        let unet = try #require(parsed.dependencies.first { $0.name == "flux/dev.safetensors" })
        #expect(unet.folder == "diffusion_models" && unet.required == false, "legacy unet is diffusion_models")
    }

    @Test func uiFormatReadsNodesSubgraphsAndTopLevelModelsOnce() throws {
        let parsed = try parse("""
            {"nodes": [
               {"id": 1, "type": "CheckpointLoaderSimple", "properties": {"models": [
                  {"name": "a.safetensors", "url": "https://huggingface.co/o/r/resolve/main/a.safetensors?download=true", "directory": "checkpoints"}]}},
               {"id": 2, "type": "Note", "properties": {}}],
             "definitions": {"subgraphs": [{"nodes": [{"properties": {"models": [
                  {"name": "v.safetensors", "url": "https://huggingface.co/o/r/resolve/main/v.safetensors", "directory": "vae",
                   "hash": "\(String(repeating: "0f", count: 32))", "hash_type": "SHA256"}]}}]}]},
             "models": [{"name": "a.safetensors", "url": "https://huggingface.co/o/r/resolve/main/a.safetensors", "directory": "checkpoints"},
                        {"name": "t5.safetensors", "url": "https://huggingface.co/o/r/resolve/main/t5.safetensors", "directory": "clip"}]}
            """)
        #expect(parsed.format == .ui)
        #expect(parsed.dependencies.map { "\($0.folder ?? "")/\($0.name)" } == ["checkpoints/a.safetensors", "vae/v.safetensors", "text_encoders/t5.safetensors"])
        #expect(parsed.dependencies[0].urls.count == 2, "the same model named twice is one dependency with both URLs")
        #expect(parsed.dependencies[1].sha256 != nil)
    }

    @Test func apiFormatGivesNamesWithTheLoadersFolders() throws {
        let parsed = try parse("""
            {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/base.safetensors"}},
             "5": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors", "strength_model": 1.0, "model": ["4", 0]}},
             "6": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit-h.safetensors"}},
             "7": {"class_type": "KSampler", "inputs": {"seed": 1, "sampler_name": "euler"}},
             "8": {"class_type": "SomeCustomLoader", "inputs": {"model_name": "x.pth"}}}
            """)
        #expect(parsed.format == .api)
        let byName = Dictionary(uniqueKeysWithValues: parsed.dependencies.map { ($0.name, $0.folder) })
        #expect(byName["SDXL/base.safetensors"] == "checkpoints" && byName["detail.safetensors"] == "loras")
        #expect(byName["vit-h.safetensors"] == "clip_vision" && byName["x.pth"] == .some(nil))
        #expect(byName["euler"] == nil)
    }

    @Test(arguments: [
        "../x.safetensors", "/etc/passwd", "a/../../b.safetensors", "payload.exe", "no-extension", "nul\u{0}.safetensors", "new\nline.safetensors",
        String(repeating: "n", count: 4096) + ".safetensors", "a//b.safetensors", "",
    ])
    func hostileNamesAreReportedNotUsed(_ name: String) throws {
        let escaped = String(data: try JSONSerialization.data(withJSONObject: [name], options: [.fragmentsAllowed]), encoding: .utf8)!.dropFirst().dropLast()
        let parsed = try parse(#"{"models": [{"name": \#(escaped), "url": "https://huggingface.co/o/r/resolve/main/x", "directory": "loras"}]}"#)
        #expect(parsed.dependencies.isEmpty && parsed.problems.count == 1)
    }

    @Test(arguments: ["../loras", "/abs", "lo ras", "a/b", ""])
    func hostileFoldersAreReported(_ folder: String) throws {
        let parsed = try parse(#"{"workflow": {"dependencies": {"\#(folder)": [{"filename": "x.safetensors"}]}}}"#)
        #expect(parsed.dependencies.isEmpty && parsed.problems.count == 1)
    }

    @Test func badHashesAndFilesThatAreNoWorkflowGetClearErrors() throws {
        let parsed = try parse(#"{"workflow": {"dependencies": {"vae": [{"filename": "v.safetensors", "sha256": "xyz"}]}}}"#)
        #expect(parsed.dependencies.isEmpty && parsed.problems.first?.message.contains("not a SHA-256") == true)
        #expect { try parse("[1, 2]") } throws: { "\($0)".contains("not a JSON object") }
        #expect { try parse("{\"a\": ") } throws: { "\($0)".contains("not a JSON object") }
        #expect { try parse(#"{"hello": "world"}"#) } throws: { "\($0)".contains("expected workflow.dependencies") }
    }

    @Test(arguments: ["..", ".", "a/b", "x\ny", "", String(repeating: "w", count: 300)])
    func workflowNamesMustBeOneComponent(_ name: String) {
        #expect(throws: WorkflowError.self) { try WorkflowParser.validateName(name) }
    }
}

extension WorkflowParserTests {
    /// The committed fuzz corpus (scripts/fuzz.sh workflows): whatever the parser accepts from it
    /// has a valid folder key and a name that cannot leave its folder.
    @Test func everyCorpusInputYieldsOnlySafeNames() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
            + "/fuzz/corpus/workflows"
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus)
        #expect(files.count >= 6)
        var accepted = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: corpus + "/" + file), let parsed = try? WorkflowParser.parse(data) else { continue }
            for dependency in parsed.dependencies {
                accepted += 1
                #expect((try? ModelPath.validateRelativePath(dependency.name)) != nil, "\(file): \(dependency.name)")
                if let folder = dependency.folder { #expect((try? ModelPath.validateFolder(folder)) == folder, "\(file): \(folder)") }
            }
        }
        #expect(accepted > 0, "the corpus exercises accepted entries too")
    }
}
