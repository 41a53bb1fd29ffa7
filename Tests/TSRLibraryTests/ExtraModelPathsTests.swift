import Foundation
import Testing
import TSRLibrary
import TSRTesting

/// Editing one section of extra_model_paths.yaml leaves every other byte of the file alone.
@Suite struct ExtraModelPathsTests {
    /// Shaped like the files people keep beside ComfyUI: a header comment, an A1111 section with
    /// block scalars, a commented-out example section, and a section of their own.
    static let userFile = """
        # Where my other UIs keep their models. Loaded by ComfyUI at start.


        #config for a1111 ui
        #change base_path to where it is installed
        a111:
            base_path: /opt/stable-diffusion-webui/

            checkpoints: models/Stable-diffusion
            configs: models/Stable-diffusion
            vae: models/VAE
            loras: |
                 models/Lora
                 models/LyCORIS
            upscale_models: |
                          models/ESRGAN
                          models/SwinIR
            embeddings: embeddings   # textual inversions

        #comfyui:
        #     base_path: path/to/comfyui/
        #     #is_default: true
        #     checkpoints: models/checkpoints/

        nas:
          base_path: /mnt/nas/models
          loras: loras

        """

    let body = ExtraModelPaths.render("tensors", basePath: "/srv/tsr mount", isDefault: false,
                                      folders: [("checkpoints", "checkpoints/"), ("loras", "loras/")], note: "managed by tensors")

    @Test func addingUpdatingAndRemovingKeepsEveryOtherByte() throws {
        let added = ExtraModelPaths.upsert("tensors", body: body, in: Self.userFile)
        #expect(added.hasPrefix(Self.userFile), "the user's file is untouched; the section comes after it")
        let changed = ExtraModelPaths.render("tensors", basePath: "/elsewhere", isDefault: true, folders: [("vae", "vae/")], note: "managed by tensors")
        let updated = ExtraModelPaths.upsert("tensors", body: changed, in: added)
        #expect(updated.hasPrefix(Self.userFile) && updated.components(separatedBy: "\ntensors:").count == 2, "replaced, not added twice")
        #expect(!updated.contains("/srv/tsr mount") && updated.contains("\"/elsewhere\""))
        // The user moves the section between theirs: an update keeps what follows it, comments included.
        let moved = Self.userFile.replacingOccurrences(of: "#comfyui:", with: body.joined(separator: "\n") + "\n\n#comfyui:")
        let again = ExtraModelPaths.upsert("tensors", body: changed, in: moved)
        #expect(again == Self.userFile.replacingOccurrences(of: "#comfyui:", with: changed.joined(separator: "\n") + "\n\n#comfyui:"))
    }

    @Test func noFileAndAFileWithoutTrailingNewlineBothWork() {
        #expect(ExtraModelPaths.upsert("tensors", body: body, in: "") == body.joined(separator: "\n") + "\n")
        let unterminated = "nas:\n  base_path: /x"
        #expect(ExtraModelPaths.upsert("tensors", body: body, in: unterminated) == unterminated + "\n\n" + body.joined(separator: "\n") + "\n")
        // A key that merely starts with the name is another section.
        let lookalike = "tensors_old:\n  base_path: /y\n"
        #expect(ExtraModelPaths.upsert("tensors", body: body, in: lookalike).hasPrefix(lookalike))
    }

    @Test(.enabled(if: (try? Shell.run("/usr/bin/python3", ["-c", "import yaml"]).status) == 0, "needs python3-yaml"))
    func comfyUIsYAMLLoaderReadsTheResult() throws {
        let text = ExtraModelPaths.upsert(
            "tensors_my: wf", body: ExtraModelPaths.render(ExtraModelPaths.sectionName(forWorkflow: "my: wf"), basePath: "/m/workflows/my: \"wf\" #1",
                                                          isDefault: true, folders: [("loras", "loras/")], note: "managed by tensors"), in: Self.userFile)
        let dir = try TempDirectory("tsr-yaml")
        defer { dir.remove() }
        let path = try dir.write("extra_model_paths.yaml", Array(text.utf8))
        // ComfyUI loads the file with yaml.safe_load.
        let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
        let out = try Shell.run("/usr/bin/python3", ["-c", script, path])
        #expect(out.status == 0, "\(out.stderr)")
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        #expect(Set(parsed.keys) == ["a111", "nas", "tensors_my__wf"])
        let section = try #require(parsed["tensors_my__wf"] as? [String: Any])
        #expect(section["base_path"] as? String == "/m/workflows/my: \"wf\" #1" && section["is_default"] as? Bool == true && section["loras"] as? String == "loras/")
        #expect((parsed["a111"] as? [String: Any])?["loras"] as? String == "models/Lora\nmodels/LyCORIS\n", "the user's block scalars are intact")
    }
}
