import Foundation
import TSRStore

/// What a user (or a workflow) names as the origin of a file.
public enum SourceSpec: Sendable, Equatable {
    /// A Hugging Face file: repo (`org/name`, or `datasets/org/name`), revision, path in the repo.
    case huggingFace(repo: String, revision: String, path: String)
    /// A CivitAI model (its newest version) or one version of it.
    case civitai(modelId: Int?, versionId: Int?)
    /// Any other http(s) URL.
    case url(String)

    /// The kind recorded in `sources.kind`.
    public var kind: String {
        switch self {
        case .huggingFace: return "huggingface"
        case .civitai: return "civitai"
        case .url: return "url"
        }
    }

    /// Parses `hf://repo/path[@rev]`, `civitai:<model>[@<version>]` (also inside an AIR URN),
    /// Hugging Face `resolve`/`blob` URLs and CivitAI download or model-page URLs (on their public
    /// hosts or the configured endpoints), and other http(s) URLs. A `token=` in a CivitAI URL
    /// is taken out and returned as the key (it must never be stored).
    public static func parse(_ input: String, settings: FetchSettings = FetchSettings()) throws(FetchError) -> (SourceSpec, key: String?) {
        let text = input.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, !text.contains("\0"), !text.contains("\n") else { throw .invalidSource("an empty or multi-line source") }
        if text.hasPrefix("hf://") { return (try huggingFace(path: String(text.dropFirst(5)), revision: nil), nil) }
        if let range = text.range(of: "civitai:"), text.hasPrefix("civitai:") || text.hasPrefix("urn:air:") {
            return (try civitai(reference: String(text[range.upperBound...])), nil)
        }
        guard let url = WebURL(text) else {
            throw .invalidSource("\(Redact.url(text)) is not a URL, hf://ORG/REPO/PATH[@REV] or civitai:MODEL[@VERSION]")
        }
        let hfHosts = ["huggingface.co", "hf.co", WebURL(settings.huggingFaceEndpoint)?.host].compactMap { $0 }
        if hfHosts.contains(url.host) || url.origin == WebURL(settings.huggingFaceEndpoint)?.origin {
            let parts = url.path.split(separator: "/").map(String.init)
            let offset = ["datasets", "spaces"].contains(parts.first ?? "") ? 1 : 0
            if parts.count >= 5 + offset, ["resolve", "blob"].contains(parts[2 + offset]) {
                let repo = parts[0..<(2 + offset)].joined(separator: "/")
                let revision = parts[3 + offset]
                let path = parts[(4 + offset)...].joined(separator: "/")
                return (try huggingFace(path: repo + "/" + path, revision: revision.removingPercentEncoding ?? revision), nil)
            }
        }
        let civitaiHosts = ["civitai.com", WebURL(settings.civitaiBase)?.host].compactMap { $0 }
        if civitaiHosts.contains(url.host) || url.origin == WebURL(settings.civitaiBase)?.origin {
            let key = url.query.first { $0.name == "token" }?.value
            let parts = url.path.split(separator: "/").map(String.init)
            if parts.count >= 4, parts[0] == "api", parts[1] == "download", parts[2] == "models", let version = Int(parts[3]) {
                return (.civitai(modelId: nil, versionId: version), key)
            }
            if parts.count >= 2, parts[0] == "models", let model = Int(parts[1]) {
                let version = url.query.first { $0.name == "modelVersionId" }?.value.flatMap { Int($0) }
                return (.civitai(modelId: model, versionId: version), key)
            }
        }
        return (.url(Redact.storable(text)), url.query.first { $0.name == "token" }?.value)
    }

    private static func huggingFace(path: String, revision: String?) throws(FetchError) -> SourceSpec {
        var path = path
        var revision = revision ?? "main"
        if let at = path.lastIndex(of: "@"), !path[at...].contains("/") {
            revision = String(path[path.index(after: at)...])
            path = String(path[..<at])
        }
        var parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let repoLength = ["datasets", "spaces"].contains(parts.first ?? "") ? 3 : 2
        guard parts.count > repoLength, !revision.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw .invalidSource("hf://\(Self.shown(path)): expected hf://ORG/REPO/PATH/IN/REPO[@REVISION]")
        }
        let repo = parts[0..<repoLength].joined(separator: "/")
        parts.removeFirst(repoLength)
        return .huggingFace(repo: repo, revision: revision, path: parts.joined(separator: "/"))
    }

    private static func civitai(reference: String) throws(FetchError) -> SourceSpec {
        let pieces = reference.split(separator: "@", omittingEmptySubsequences: false)
        guard let model = Int(pieces[0]), model > 0, pieces.count <= 2 else {
            throw .invalidSource("civitai:\(Self.shown(reference)): expected civitai:MODEL_ID or civitai:MODEL_ID@VERSION_ID")
        }
        var version: Int?
        if pieces.count == 2 {
            guard let v = Int(pieces[1]), v > 0 else { throw .invalidSource("civitai:\(Self.shown(reference)): the version must be a number") }
            version = v
        }
        return .civitai(modelId: model, versionId: version)
    }

    /// A reference as error messages show it: nothing from a `?` or `#` on (a query may carry a
    /// key, `civitai:123?token=…`), control characters escaped.
    static func shown(_ reference: String) -> String {
        LogText.escaped(reference.firstIndex(where: { $0 == "?" || $0 == "#" }).map { String(reference[..<$0]) + "?…" } ?? reference)
    }

    /// The URL stored as a source: public hosts (so a source keeps working when the endpoint
    /// setting changes), no secrets.
    public var canonicalURL: String {
        switch self {
        case let .huggingFace(repo, revision, path): return "https://huggingface.co/\(repo)/resolve/\(Self.escape(revision))/\(Self.escape(path))"
        case let .civitai(_, version?): return "https://civitai.com/api/download/models/\(version)"
        case let .civitai(model, nil): return "civitai:\(model ?? 0)"
        case let .url(url): return Redact.storable(url)
        }
    }

    /// The first URL to download from, on the configured endpoints.
    public func downloadURL(settings: FetchSettings) -> String? {
        switch self {
        case let .huggingFace(repo, revision, path):
            return "\(settings.huggingFaceEndpoint)/\(repo)/resolve/\(Self.escape(revision))/\(Self.escape(path))"
        case let .civitai(_, version?): return "\(settings.civitaiBase)/api/download/models/\(version)"
        case .civitai(_, nil): return nil
        case let .url(url): return url
        }
    }

    static func escape(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map {
            $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "?#"))) ?? String($0)
        }.joined(separator: "/")
    }
}

/// A file at its source, resolved: everything needed to register it before downloading.
public struct RemoteFile: Sendable {
    public var source: SourceSpec
    /// Stored in `sources.url` (no secrets).
    public var canonicalURL: String
    /// Requested first when downloading.
    public var downloadURL: String
    public var digest: Digest?
    public var size: Int64?
    /// The name the source gives the file (sanitised: one path component, printable).
    public var fileName: String
    /// The ComfyUI folder the source's model type maps to (CivitAI), if any.
    public var folderHint: String?
    /// The first bytes: the safetensors header, rounded up to 128 KiB.
    public var prefix: [UInt8]?
}

/// CivitAI model types → ComfyUI folder keys. Types without a natural folder (Poses, Wildcards,
/// Workflows, Other…) have none: `tsr add` then asks for `--folder`.
public enum CivitAITypes {
    public static let folders: [String: String] = [
        "checkpoint": "checkpoints", "lora": "loras", "locon": "loras", "dora": "loras", "lycoris": "loras",
        "textualinversion": "embeddings", "vae": "vae", "controlnet": "controlnet", "upscaler": "upscale_models",
        "hypernetwork": "hypernetworks", "motionmodule": "animatediff_models",
    ]

    public static func folder(forType type: String?) -> String? {
        type.flatMap { folders[$0.lowercased()] }
    }
}
