/// ComfyUI's model folders (the keys of its folder_paths.py, with their legacy aliases) and the
/// rules for alias names.
public enum ModelPath {
    /// ComfyUI's folder keys, in its own order.
    public static let folderKeys: [String] = [
        "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
        "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
        "latent_upscale_models", "hypernetworks", "photomaker", "classifiers", "model_patches",
        "audio_encoders", "background_removal", "frame_interpolation", "geometry_estimation",
        "optical_flow", "detection",
    ]

    /// Legacy folder names that are the same folder as a current key.
    public static let legacyFolders: [String: String] = ["unet": "diffusion_models", "clip": "text_encoders"]

    /// Extensions ComfyUI lists as models, lowercase with the dot.
    public static let modelExtensions: Set<String> = [".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"]

    /// Suffixes of partial downloads that ComfyUI's scanner skips; never imported.
    public static let partialSuffixes: [String] = [".part", ".partial", ".crdownload", ".download", ".tmp", ".aria2"]

    /// The longest alias path accepted, in bytes (PATH_MAX).
    public static let maxPathBytes = 4096
    /// The longest single name accepted, in bytes (NAME_MAX).
    public static let maxNameBytes = 255

    /// The canonical folder key (legacy names mapped).
    public static func canonicalFolder(_ key: String) -> String { legacyFolders[key] ?? key }

    /// True when the file name has a model extension (case-insensitive).
    public static func isModelFile(_ name: String) -> Bool {
        guard let dot = name.lastIndex(of: ".") else { return false }
        return modelExtensions.contains(name[dot...].lowercased())
    }

    /// Checks that ComfyUI would list a downloaded file under this name in `folder`: `configs`
    /// takes `.yaml`, `diffusers` holds folders of anything, every other folder model extensions.
    public static func validateListable(_ path: String, folder: String) throws(NameError) {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        switch folder {
        case "diffusers": return
        case "configs": if name.lowercased().hasSuffix(".yaml") { return }
        default: if isModelFile(name) { return }
        }
        throw .notListable(path: path, folder: folder)
    }

    /// True when the name ends like a partial download.
    public static func isPartialDownload(_ name: String) -> Bool {
        let lower = name.lowercased()
        return partialSuffixes.contains { lower.hasSuffix($0) }
    }

    /// True for `.safetensors` and `.sft`.
    public static func isSafetensors(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.hasSuffix(".safetensors") || lower.hasSuffix(".sft")
    }

    /// Checks a folder key: letters, digits, `_`, `-`, `.`; not `.` or `..`.
    public static func validateFolder(_ key: String) throws(NameError) -> String {
        guard !key.isEmpty else { throw .empty }
        guard key != ".", key != "..", key.utf8.count <= maxNameBytes,
            key.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) })
        else { throw .badFolder(key) }
        return canonicalFolder(key)
    }

    /// Checks a relative path inside a folder: non-empty components, none `.` or `..`, no NUL or
    /// control characters (newlines break listings and logs), within NAME_MAX/PATH_MAX.
    public static func validateRelativePath(_ path: String) throws(NameError) -> String {
        guard !path.isEmpty else { throw .empty }
        guard !path.hasPrefix("/") else { throw .absolute(path) }
        guard path.utf8.count <= maxPathBytes else { throw .tooLong(path.utf8.count) }
        if let bad = path.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw .controlCharacter(path: path, scalar: bad.value)
        }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        for component in components {
            if component.isEmpty { throw .emptyComponent(path) }
            if component == "." || component == ".." { throw .traversal(path) }
            if component.utf8.count > maxNameBytes { throw .tooLong(component.utf8.count) }
        }
        return path
    }

    /// Splits `folder/relative/path` and validates both parts.
    public static func parseAlias(_ text: String) throws(NameError) -> (folder: String, path: String) {
        guard let slash = text.firstIndex(of: "/") else { throw .noFolder(text) }
        let folder = try validateFolder(String(text[..<slash]))
        let path = try validateRelativePath(String(text[text.index(after: slash)...]))
        return (folder, path)
    }

    /// Decodes raw file-name bytes; nil when they are not UTF-8.
    public static func decodeName(_ bytes: [UInt8]) -> String? {
        String(validating: bytes, as: UTF8.self)
    }
}

/// Why a name cannot be an alias.
public enum NameError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case noFolder(String)
    case badFolder(String)
    case absolute(String)
    case traversal(String)
    case emptyComponent(String)
    case controlCharacter(path: String, scalar: UInt32)
    case tooLong(Int)
    case notUTF8(String)
    /// A downloaded file's name ComfyUI would not list in that folder.
    case notListable(path: String, folder: String)

    public var description: String {
        switch self {
        case .empty: return "the name is empty"
        case let .noFolder(name): return "\"\(name)\" has no folder: write it as FOLDER/NAME, e.g. loras/\(name)"
        case let .badFolder(key): return "\"\(key)\" is not a folder key (letters, digits, '_', '-', '.')"
        case let .absolute(path): return "\"\(path)\" is absolute; alias paths are relative to their folder"
        case let .traversal(path): return "\"\(path)\" contains '.' or '..' as a component"
        case let .emptyComponent(path): return "\"\(path)\" has an empty component ('//' or a trailing '/')"
        case let .controlCharacter(path, scalar):
            return "\(Self.printable(path)) contains the control character U+\(String(scalar, radix: 16, uppercase: true)) (newlines and NUL are not allowed in names)"
        case let .tooLong(bytes): return "the name is \(bytes) bytes long, more than the filesystem allows"
        case let .notUTF8(shown): return "\(shown) is not valid UTF-8; rename it to import it"
        case let .notListable(path, folder):
            let wanted = folder == "configs" ? ".yaml" : ModelPath.modelExtensions.sorted().joined(separator: " ")
            return "\(Self.printable(path)) would not be listed by ComfyUI in \(folder)/ (it lists \(wanted)); choose a name with --name"
        }
    }

    /// The path with control characters escaped, for messages.
    public static func printable(_ path: String) -> String {
        var out = "\""
        for scalar in path.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7f {
                out += "\\x" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
