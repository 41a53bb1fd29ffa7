import Foundation
import TSRStore

/// # TSRWorkflow
///
/// What a workflow needs, read from the three formats it comes in (docs/LINEAGE.md): the seed
/// format (`workflow.dependencies`, with hashes, sizes and URLs), ComfyUI's UI format
/// (`properties.models` on nodes and subgraph nodes, a top-level `models` list: names, folders
/// and URLs, rarely hashes) and the API (prompt) format (names only, in loader inputs). Parsing
/// is pure: no network, no registry; names are validated here so nothing downstream sees `..`.
enum TSRWorkflowModule {}

/// Which format a workflow file is in.
public enum WorkflowFormat: String, Sendable, Codable {
    case seed, ui, api
}

/// One model a workflow needs.
public struct WorkflowDependency: Sendable, Equatable {
    /// A ComfyUI folder key (canonical: `diffusion_models`, not `unet`); nil when the format does
    /// not say (API inputs the parser cannot place): the registry decides.
    public var folder: String?
    /// The name the workflow's loader asks for, relative to the folder (`SDXL/x.safetensors`).
    public var name: String
    public var sha256: Digest?
    public var size: Int64?
    public var urls: [String]
    public var displayName: String?
    public var required: Bool
    /// The service whose key the workflow says is needed (the seed format's `requires_auth` and
    /// `auth_provider`): "huggingface" or "civitai"; nil when it says nothing.
    public var authProvider: String?

    public init(
        folder: String?, name: String, sha256: Digest? = nil, size: Int64? = nil, urls: [String] = [], displayName: String? = nil, required: Bool = true,
        authProvider: String? = nil
    ) {
        self.authProvider = authProvider
        self.folder = folder
        self.name = name
        self.sha256 = sha256
        self.size = size
        self.urls = urls
        self.displayName = displayName
        self.required = required
    }
}

/// A dependency entry that could not be used, and why.
public struct WorkflowProblem: Sendable, Equatable, Codable {
    public var entry: String
    public var message: String
    public init(entry: String, message: String) {
        self.entry = entry
        self.message = message
    }
}

/// What a workflow file says it needs.
public struct ParsedWorkflow: Sendable {
    public var format: WorkflowFormat
    public var dependencies: [WorkflowDependency]
    /// Entries skipped (bad names, traversal, a folder key that is not one, a bad hash).
    public var problems: [WorkflowProblem]
}

/// Why a workflow file cannot be read at all.
public enum WorkflowError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not JSON, or JSON that is not an object.
    case notJSON(String)
    /// JSON in none of the three formats.
    case unknownFormat
    /// A workflow name that cannot be a directory name.
    case badName(String)

    public var description: String {
        switch self {
        case let .notJSON(detail): return "not a workflow: the file is not a JSON object (\(detail))"
        case .unknownFormat:
            return "not a workflow tensors can read: expected workflow.dependencies (seed format), nodes with properties.models (ComfyUI UI format) or {id: {class_type, inputs}} (API format)"
        case let .badName(name): return "\(NameError.printable(name)) cannot be a workflow name: use one path component without control characters, not . or .."
        }
    }
}

public enum WorkflowParser {
    /// Parses a workflow file in any of the three formats.
    public static func parse(_ data: Data) throws(WorkflowError) -> ParsedWorkflow {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) as? [String: Any] else {
                throw WorkflowError.notJSON("the top level is not an object")
            }
            object = parsed
        } catch let error as WorkflowError {
            throw error
        } catch {
            throw .notJSON("\(error.localizedDescription)")
        }
        var problems: [WorkflowProblem] = []
        // The seed format nests its list under `workflow` or keeps it at the top level.
        if let dependencies = (object["workflow"] as? [String: Any])?["dependencies"] as? [String: Any] ?? object["dependencies"] as? [String: Any] {
            return ParsedWorkflow(format: .seed, dependencies: seed(dependencies, problems: &problems), problems: problems)
        }
        if object["nodes"] is [Any] || object["models"] is [Any] || object["definitions"] is [String: Any] {
            return ParsedWorkflow(format: .ui, dependencies: ui(object, problems: &problems), problems: problems)
        }
        let nodes = object.values.compactMap { $0 as? [String: Any] }
        if !nodes.isEmpty, nodes.count == object.count, nodes.allSatisfy({ $0["class_type"] is String }) {
            return ParsedWorkflow(format: .api, dependencies: api(object, problems: &problems), problems: problems)
        }
        throw .unknownFormat
    }

    /// Checks a workflow's own name (a directory of `workflows/`).
    public static func validateName(_ name: String) throws(WorkflowError) -> String {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), name.utf8.count <= ModelPath.maxNameBytes,
            !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f })
        else { throw .badName(name) }
        return name
    }

    // MARK: Formats

    private static func seed(_ dependencies: [String: Any], problems: inout [WorkflowProblem]) -> [WorkflowDependency] {
        var out: [WorkflowDependency] = []
        for folder in dependencies.keys.sorted() {
            for item in dependencies[folder] as? [Any] ?? [] {
                guard let entry = item as? [String: Any] else { continue }
                let name = entry["filename"] as? String ?? ""
                let urls = (entry["urls"] as? [Any] ?? []).compactMap { $0 as? String } + [entry["url"] as? String].compactMap { $0 }
                var provider: String?
                if entry["requires_auth"] as? Bool == true {
                    switch (entry["auth_provider"] as? String)?.lowercased() {
                    case "huggingface", "hf", "hugging_face": provider = "huggingface"
                    case "civitai": provider = "civitai"
                    default:
                        // No provider named: the URLs tell which service.
                        provider = urls.lazy.compactMap(Self.service(of:)).first
                    }
                }
                add(folder: folder, name: name, hash: entry["sha256"] as? String, size: integer(entry["size"]), urls: urls,
                    displayName: entry["display_name"] as? String, required: entry["required"] as? Bool ?? true, authProvider: provider,
                    into: &out, problems: &problems)
            }
        }
        return out
    }

    private static func ui(_ object: [String: Any], problems: inout [WorkflowProblem]) -> [WorkflowDependency] {
        var entries: [[String: Any]] = []
        func collect(nodes: Any?) {
            for node in nodes as? [Any] ?? [] {
                let properties = (node as? [String: Any])?["properties"] as? [String: Any]
                entries += (properties?["models"] as? [Any] ?? []).compactMap { $0 as? [String: Any] }
            }
        }
        collect(nodes: object["nodes"])
        for subgraph in (object["definitions"] as? [String: Any])?["subgraphs"] as? [Any] ?? [] {
            collect(nodes: (subgraph as? [String: Any])?["nodes"])
        }
        entries += (object["models"] as? [Any] ?? []).compactMap { $0 as? [String: Any] }
        var out: [WorkflowDependency] = []
        for entry in entries {
            let hashType = (entry["hash_type"] as? String)?.uppercased()
            let hash = hashType == nil || hashType == "SHA256" ? entry["hash"] as? String : nil
            add(folder: entry["directory"] as? String ?? "", name: entry["name"] as? String ?? "", hash: hash, size: nil,
                urls: [entry["url"] as? String].compactMap { $0 }, displayName: nil, required: true, into: &out, problems: &problems)
        }
        return out
    }

    /// Loader inputs and the folder each names a file of.
    public static let apiInputs: [String: String] = [
        "ckpt_name": "checkpoints", "lora_name": "loras", "vae_name": "vae", "unet_name": "diffusion_models",
        "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders", "clip_name3": "text_encoders",
        "control_net_name": "controlnet", "upscale_model_name": "upscale_models", "style_model_name": "style_models",
        "gligen_name": "gligen", "hypernetwork_name": "hypernetworks", "model_name": "upscale_models",
    ]

    private static func api(_ object: [String: Any], problems: inout [WorkflowProblem]) -> [WorkflowDependency] {
        var out: [WorkflowDependency] = []
        for id in object.keys.sorted() {
            guard let node = object[id] as? [String: Any], let inputs = node["inputs"] as? [String: Any] else { continue }
            let classType = node["class_type"] as? String ?? ""
            for key in inputs.keys.sorted() {
                guard let value = inputs[key] as? String, ModelPath.isModelFile(value) else { continue }
                var folder = apiInputs[key]
                // Loaders whose input names say less than their class does.
                if classType.hasPrefix("CLIPVision") { folder = "clip_vision" }
                if key == "model_name" && !classType.lowercased().contains("upscale") { folder = nil }
                add(folder: folder, name: value, hash: nil, size: nil, urls: [], displayName: nil, required: true, into: &out, problems: &problems)
            }
        }
        return out
    }

    // MARK: Entries

    /// "huggingface" or "civitai" for a URL on one of those services (or their hf:// civitai:
    /// forms), else nil.
    static func service(of url: String) -> String? {
        let lowered = url.lowercased()
        if lowered.hasPrefix("hf://") { return "huggingface" }
        if lowered.hasPrefix("civitai:") { return "civitai" }
        guard let host = URLComponents(string: url)?.host?.lowercased() else { return nil }
        if host == "huggingface.co" || host.hasSuffix(".huggingface.co") || host == "hf.co" { return "huggingface" }
        if host == "civitai.com" || host.hasSuffix(".civitai.com") { return "civitai" }
        return nil
    }

    private static func add(
        folder: String?, name: String, hash: String?, size: Int64?, urls: [String], displayName: String?, required: Bool, authProvider: String? = nil,
        into out: inout [WorkflowDependency], problems: inout [WorkflowProblem]
    ) {
        let label = NameError.printable((folder.map { $0 + "/" } ?? "") + name)
        var validFolder: String?
        if let folder {
            do { validFolder = try ModelPath.validateFolder(folder) } catch {
                problems.append(WorkflowProblem(entry: label, message: error.description))
                return
            }
        }
        // Windows-style separators are how some workflows spell subfolders.
        let path = name.replacingOccurrences(of: "\\", with: "/")
        do {
            _ = try ModelPath.validateRelativePath(path)
            if let validFolder { try ModelPath.validateListable(path, folder: validFolder) }
        } catch {
            problems.append(WorkflowProblem(entry: label, message: error.description))
            return
        }
        var digest: Digest?
        if let hash, !hash.isEmpty {
            guard let parsed = Digest(rawValue: hash.lowercased()) else {
                problems.append(WorkflowProblem(entry: label, message: "\(NameError.printable(hash)) is not a SHA-256 (64 hex digits)"))
                return
            }
            digest = parsed
        }
        let dependency = WorkflowDependency(
            folder: validFolder, name: path, sha256: digest, size: size.flatMap { $0 >= 0 ? $0 : nil }, urls: urls, displayName: displayName,
            required: required, authProvider: authProvider)
        // The same model named by several nodes is one dependency.
        if let index = out.firstIndex(where: { $0.folder == dependency.folder && $0.name == dependency.name }) {
            if out[index].sha256 == nil { out[index].sha256 = dependency.sha256 }
            if out[index].size == nil { out[index].size = dependency.size }
            out[index].urls += dependency.urls.filter { !out[index].urls.contains($0) }
            if out[index].authProvider == nil { out[index].authProvider = dependency.authProvider }
            if dependency.sha256 != nil && out[index].sha256 != dependency.sha256 {
                problems.append(WorkflowProblem(entry: label, message: "named twice with different SHA-256s; the first is used"))
            }
            return
        }
        out.append(dependency)
    }

    static func integer(_ value: Any?) -> Int64? {
        switch value {
        case let n as Int: return Int64(n)
        case let n as Int64: return n
        case let n as Double: return Int64(exactly: n)
        case let s as String: return Int64(s)
        default: return nil
        }
    }
}
