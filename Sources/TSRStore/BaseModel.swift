/// Infers, offline, which base model a file was made for, using CivitAI's names
/// ("SD 1.5", "SDXL 1.0", "Pony", "Flux.1 D", …) so the value lines up with the CivitAI cache.
public enum BaseModel {
    /// The value when nothing in the file tells.
    public static let unknown = "unknown"

    /// Metadata first (the trainer's own words), then the tensor layout of the file.
    public static func infer(_ header: SafetensorsHeader) -> String {
        if let fromMetadata = infer(metadata: header.metadata) { return fromMetadata }
        return infer(tensorNames: header.tensors.keys) ?? unknown
    }

    /// From `__metadata__`: derivative names, `modelspec.architecture`, kohya's `ss_base_model_version`.
    public static func infer(metadata: [String: String]) -> String? {
        let architecture = metadata["modelspec.architecture"]?.lowercased() ?? ""
        let kohya = metadata["ss_base_model_version"]?.lowercased() ?? ""
        let family: String?
        if let mapped = architectureFamily(architecture) {
            family = mapped
        } else if let mapped = kohyaFamily(kohya) {
            family = mapped
        } else if metadata["ss_v2"]?.lowercased() == "true" {
            family = "SD 2.1"
        } else if metadata["ss_network_module"] != nil || metadata["ss_sd_model_name"] != nil {
            // kohya before ss_base_model_version existed trained SD 1.x unless told otherwise.
            family = "SD 1.5"
        } else {
            family = nil
        }
        // Fine-tune families CivitAI lists separately are named only in free text.
        let names = ["ss_sd_model_name", "ss_base_model", "modelspec.title", "modelspec.description", "ss_output_name"]
            .compactMap { metadata[$0]?.lowercased() }.joined(separator: " ")
        if family == nil || family == "SDXL 1.0" {
            if names.contains("pony") { return "Pony" }
            if names.contains("illustrious") { return "Illustrious" }
            if names.contains("noobai") || names.contains("noob_ai") { return "NoobAI" }
        }
        return family
    }

    static func architectureFamily(_ value: String) -> String? {
        guard !value.isEmpty else { return nil }
        let table: [(String, String)] = [
            ("stable-diffusion-xl", "SDXL 1.0"), ("stable-diffusion-v1", "SD 1.5"),
            ("stable-diffusion-v2", "SD 2.1"), ("stable-diffusion-3.5-large", "SD 3.5 Large"),
            ("stable-diffusion-3.5-medium", "SD 3.5 Medium"), ("stable-diffusion-3.5", "SD 3.5"),
            ("stable-diffusion-3", "SD 3"), ("flux-1-dev", "Flux.1 D"), ("flux-1-schnell", "Flux.1 S"),
            ("flux-1", "Flux.1 D"), ("stable-cascade", "Stable Cascade"), ("pixart", "PixArt a"),
            ("hunyuan-video", "Hunyuan Video"), ("wan", "Wan Video"), ("lumina", "Lumina"), ("auraflow", "AuraFlow"),
        ]
        return table.first { value.hasPrefix($0.0) }?.1
    }

    static func kohyaFamily(_ value: String) -> String? {
        guard !value.isEmpty else { return nil }
        let table: [(String, String)] = [
            ("sdxl", "SDXL 1.0"), ("sd_v1", "SD 1.5"), ("sd_v2", "SD 2.1"), ("sd3", "SD 3"),
            ("flux1", "Flux.1 D"), ("lumina", "Lumina"),
        ]
        return table.first { value.hasPrefix($0.0) }?.1
    }

    /// From tensor names, for checkpoints saved without metadata.
    public static func infer(tensorNames: some Collection<String>) -> String? {
        var sdxl = false, sd1 = false, flux = false, sd3 = false, sd2 = false, loraUnet = false
        for name in tensorNames {
            if name.hasPrefix("conditioner.embedders.1.") || name.hasPrefix("lora_te2_") { sdxl = true }
            if name.hasPrefix("double_blocks.") || name.hasPrefix("model.diffusion_model.double_blocks.") || name.hasPrefix("lora_unet_double_blocks_") { flux = true }
            if name.hasPrefix("model.diffusion_model.joint_blocks.") || name.hasPrefix("joint_blocks.") { sd3 = true }
            if name.hasPrefix("cond_stage_model.transformer.") { sd1 = true }
            if name.hasPrefix("cond_stage_model.model.") { sd2 = true }
            if name.hasPrefix("lora_te_text_model") || name.hasPrefix("lora_unet_down_blocks") { loraUnet = true }
        }
        if flux { return "Flux.1 D" }
        if sd3 { return "SD 3" }
        if sdxl { return "SDXL 1.0" }
        if sd2 { return "SD 2.1" }
        if sd1 || loraUnet { return "SD 1.5" }
        return nil
    }
}
