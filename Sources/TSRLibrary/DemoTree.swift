import Foundation
import TSRStore

/// Writes a small ComfyUI-style models tree of valid safetensors files, with the duplicates and
/// nesting real trees have. Used by `tsr demo`, tests and benchmarks.
public enum DemoTree {
    /// A file of the demo tree: path below the root and its bytes.
    public struct File: Sendable {
        public var path: String
        public var bytes: [UInt8]
    }

    /// The demo files. The same SD 1.5 checkpoint appears under two names and a LoRA sits in a
    /// subfolder and again under a legacy-free copy, so `tsr stats` shows bytes saved.
    public static func files() -> [File] {
        let sd15 = SafetensorsBuilder(
            metadata: ["modelspec.architecture": "stable-diffusion-v1", "modelspec.title": "Demo SD 1.5"],
            tensors: [("model.diffusion_model.input_blocks.0.0.weight", "F16", [320, 4, 3, 3]), ("cond_stage_model.transformer.embeddings", "F16", [77, 768])],
            fill: 1
        ).bytes()
        let sdxl = SafetensorsBuilder(
            metadata: ["modelspec.architecture": "stable-diffusion-xl-v1-base", "modelspec.title": "Demo SDXL"],
            tensors: [("conditioner.embedders.1.model.ln_final.weight", "F16", [1280]), ("model.diffusion_model.out.2.weight", "F16", [4, 320, 3, 3])],
            fill: 2
        ).bytes()
        let detailLora = SafetensorsBuilder(
            metadata: ["ss_base_model_version": "sd_v1", "ss_output_name": "demo_detail", "ss_network_dim": "32"],
            tensors: [("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "F16", [32, 320]), ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", "F16", [320, 32])],
            fill: 3
        ).bytes()
        let ponyLora = SafetensorsBuilder(
            metadata: ["ss_base_model_version": "sdxl_base_v1-0", "ss_sd_model_name": "ponyDiffusionV6XL.safetensors"],
            tensors: [("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "F16", [16, 1280])],
            fill: 4
        ).bytes()
        let flux = SafetensorsBuilder(
            metadata: ["modelspec.architecture": "flux-1-dev/lora"],
            tensors: [("lora_unet_double_blocks_0_img_attn_proj.lora_down.weight", "BF16", [16, 3072])],
            fill: 5
        ).bytes()
        let vae = SafetensorsBuilder(tensors: [("decoder.conv_in.weight", "F32", [512, 4, 3, 3])], fill: 6).bytes()
        return [
            File(path: "checkpoints/demo-sd15.safetensors", bytes: sd15),
            File(path: "checkpoints/SD1.5/demo-sd15-copy.safetensors", bytes: sd15),
            File(path: "checkpoints/demo-sdxl.safetensors", bytes: sdxl),
            File(path: "loras/demo_detail.safetensors", bytes: detailLora),
            File(path: "loras/style/demo_detail_v1.safetensors", bytes: detailLora),
            File(path: "loras/pony/demo_pony_style.safetensors", bytes: ponyLora),
            File(path: "loras/flux/demo_flux_lora.safetensors", bytes: flux),
            File(path: "vae/demo-vae.safetensors", bytes: vae),
            File(path: "loras/demo_detail.civitai.info", bytes: Array("{\"note\":\"a sidecar; imported only with --all\"}".utf8)),
        ]
    }

    /// Writes the demo files below `root` (created if needed).
    public static func write(to root: String) throws {
        for file in files() {
            let url = URL(fileURLWithPath: root + "/" + file.path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(file.bytes).write(to: url)
        }
    }
}
