import ArgumentParser
import Foundation
import TSRFetch
import TSRLibrary

struct AddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Register a model by its source, before (or without) downloading it.",
        discussion: """
            SOURCE is hf://ORG/REPO/PATH[@REV], a huggingface.co resolve URL, civitai:MODEL[@VERSION], \
            a civitai.com download URL, or an https URL on the allowlist. The entry gets its exact size \
            and SHA-256 from the source (Hugging Face's HEAD, CivitAI's API, or --sha256); for \
            .safetensors files the header is fetched too, so `tsr info` and header reads through the \
            mount work without downloading. The bytes come on first read through the mount, or with \
            `tsr pull`. Tokens: HF_TOKEN, CIVITAI_API_KEY, --token-stdin, or a prompt; never stored.
            """)

    @Argument(help: "hf://…, civitai:…, or a URL.") var source: String
    @Option(help: "ComfyUI folder key (default: the CivitAI type's folder).") var folder: String?
    @Option(help: "Name inside the folder (default: the source's file name).") var name: String?
    @Option(help: "The expected SHA-256, for sources that do not tell it.") var sha256: String?
    @Flag(help: "Repoint the name if it already names other content.") var force = false
    @OptionGroup var fetchOptions: FetchOptions
    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let settings = fetchOptions.settings
        let spec: SourceSpec
        let urlKey: String?
        do { (spec, urlKey) = try SourceSpec.parse(source, settings: settings) } catch { throw ValidationError(error.description) }
        var credentials = try fetchOptions.credentials(for: [spec.kind], urlKey: urlKey)
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let file = try TokenPrompt.retrying(&credentials) { try SourceResolver(settings: settings, credentials: $0).resolve(spec) }
            let entry = try Registration.make(file: file, folder: folder, name: name, sha256: sha256)
            let result = try entry.register(in: library, force: force)
            let state = library.store.contains(entry.digest) ? "present" : "remote"
            if output.json {
                try Out.json(AddResult(
                    folder: entry.folder, name: entry.path, sha256: entry.digest.rawValue, size: file.size ?? 0, state: state,
                    source: file.canonicalURL, result: result, headerBytes: file.prefix?.count ?? 0))
            } else {
                Out.line("\(entry.folder)/\(entry.path): \(state), \(formatBytes(file.size ?? 0)), sha256 \(entry.digest.rawValue) (\(result))")
            }
        }
    }
}

struct AddResult: Encodable {
    var folder, name, sha256: String
    var size: Int64
    var state, source, result: String
    var headerBytes: Int

    enum CodingKeys: String, CodingKey {
        case folder, name, sha256, size, state, source, result
        case headerBytes = "header_bytes"
    }
}
