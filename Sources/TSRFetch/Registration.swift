import TSRLibrary
import TSRRegistry
import TSRStore

/// Why a source could not be named or registered. `description` words it for the command line
/// (naming its flags), `apiMessage` for the HTTP API (naming request fields).
public enum RegistrationError: Error, Sendable, CustomStringConvertible {
    /// A folder or name that cannot be used (the message says why).
    case badName(String)
    case badDigest
    case noFolder
    /// The source tells a different SHA-256 than the one given.
    case digestDisagrees(url: String, told: Digest, given: Digest)
    /// The source tells no SHA-256 and none was given: it cannot be registered before downloading.
    case noDigest(url: String)
    case noSize(url: String)
    /// The name already stands for other content.
    case nameTaken(name: String, existing: Digest)

    /// True when the request itself was wrong (exit 64 / HTTP 400), not a conflict.
    public var isUsage: Bool {
        switch self {
        case .badName, .badDigest, .noFolder: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case let .badName(message): return message
        case .badDigest: return "--sha256 must be 64 hex digits"
        case .noFolder: return "which folder should it go in? pass --folder (checkpoints, loras, vae, text_encoders, diffusion_models …)"
        case let .digestDisagrees(url, told, given): return "\(url) says its SHA-256 is \(told), --sha256 says \(given); check which file you meant"
        case let .noDigest(url):
            return "\(url) does not tell its SHA-256, so it cannot be registered before downloading; give --sha256 HEX, or run `tsr pull` to download it now and trust those bytes"
        case let .noSize(url):
            return "\(url) did not tell its size (no Content-Length or Content-Range), so it cannot be listed before downloading; use `tsr pull`"
        case let .nameTaken(name, existing):
            return "\(name) already names other content (\(existing.short)…); pass --force to repoint it or --name to choose another name"
        }
    }

    public var apiMessage: String {
        switch self {
        case let .badName(message): return message
        case .badDigest: return "sha256 must be 64 hex digits"
        case .noFolder: return "which folder should it go in? send \"folder\" (checkpoints, loras, vae, text_encoders, diffusion_models …)"
        case let .digestDisagrees(url, told, given): return "\(url) says its SHA-256 is \(told), the request says \(given); check which file you meant"
        case let .noDigest(url): return "\(url) does not tell its SHA-256; send \"sha256\""
        case let .noSize(url): return "\(url) did not tell its size (no Content-Length or Content-Range)"
        case let .nameTaken(name, existing): return "\(name) already names other content (\(existing.short)…); send another \"filename\""
        }
    }
}

/// Where a resolved source goes (folder, name) and which content it is: `tsr add`, `tsr pull
/// SOURCE` and the API's downloads share it.
public struct Registration: Sendable {
    public var folder: String
    public var path: String
    public var file: RemoteFile
    public var digest: Digest

    /// Checks the name and the digest (`sha256` overrides a source that tells none, and must
    /// agree with one that does).
    public static func make(file: RemoteFile, folder: String?, name: String?, sha256: String?) throws(RegistrationError) -> Registration {
        var digest = file.digest
        if let sha256 {
            guard let given = Digest(rawValue: sha256.lowercased()) else { throw .badDigest }
            if let digest, digest != given { throw .digestDisagrees(url: file.canonicalURL, told: digest, given: given) }
            digest = given
        }
        let (validFolder, validPath) = try Registration.name(for: file, folder: folder, name: name)
        guard let digest else { throw .noDigest(url: file.canonicalURL) }
        guard file.size != nil else { throw .noSize(url: file.canonicalURL) }
        return Registration(folder: validFolder, path: validPath, file: file, digest: digest)
    }

    /// The folder (given, else the source's type) and name (given, else the source's file name)
    /// a downloaded file gets, checked: a folder key, a safe relative path, a name ComfyUI lists
    /// in that folder.
    public static func name(for file: RemoteFile, folder: String?, name: String?) throws(RegistrationError) -> (folder: String, path: String) {
        guard let chosen = folder ?? file.folderHint else { throw .noFolder }
        do {
            let validFolder = try ModelPath.validateFolder(chosen)
            let validPath = try ModelPath.validateRelativePath(name ?? file.fileName)
            try ModelPath.validateListable(validPath, folder: validFolder)
            return (validFolder, validPath)
        } catch {
            throw .badName(error.description)
        }
    }

    /// Records the entry; a name that stands for other content needs `force`. Returns
    /// created | unchanged | replaced.
    public func register(in library: Library, force: Bool) throws -> String {
        let change = try library.registerRemote(
            digest: digest, size: file.size ?? 0, folder: folder, path: path, replace: force, url: file.canonicalURL,
            kind: file.source.kind, prefix: file.prefix)
        switch change {
        case .created: return "created"
        case .unchanged: return "unchanged"
        case .replaced: return "replaced"
        case let .conflict(existing):
            throw RegistrationError.nameTaken(name: "\(folder)/\(path)", existing: existing)
        }
    }
}

/// What one source's pull asks for: where it goes and how sure we must be of its bytes.
public struct PullRequest: Sendable {
    public var spec: SourceSpec
    public var folder: String?
    public var name: String?
    public var sha256: String?
    public var force: Bool

    public init(spec: SourceSpec, folder: String? = nil, name: String? = nil, sha256: String? = nil, force: Bool = false) {
        self.spec = spec
        self.folder = folder
        self.name = name
        self.sha256 = sha256
        self.force = force
    }
}

/// A pulled file: its content and the name it got.
public struct PullResult: Sendable {
    public var committed: Committed
    public var folder: String
    public var path: String
    public var fileName: String
}

extension Fetcher {
    /// Resolves, names, registers and downloads one source. A source that tells its SHA-256 (or
    /// is given one) is registered first and downloaded through the one flight of its blob; one
    /// that does not is downloaded, trusted, and named after its bytes are committed.
    public func pull(
        _ request: PullRequest, progress: DownloadProgress? = nil, cancel: Cancellation? = nil, resolved: (@Sendable (RemoteFile) -> Void)? = nil
    ) throws -> PullResult {
        let file = try resolver.resolve(request.spec, readPrefix: false)
        resolved?(file)
        if file.digest != nil || request.sha256 != nil {
            let entry = try Registration.make(file: file, folder: request.folder, name: request.name, sha256: request.sha256)
            let before = try library.registry.alias(folder: entry.folder, path: entry.path)
            _ = try entry.register(in: library, force: request.force)
            do {
                let committed = try fetch(entry.digest, progress: progress, cancel: cancel)
                return PullResult(committed: committed, folder: entry.folder, path: entry.path, fileName: file.fileName)
            } catch {
                // A pull that fails leaves the name as it was: gone if the pull made it, else
                // pointing where it pointed before.
                if let before {
                    if before.sha256 != entry.digest {
                        _ = try? library.registry.addAlias(folder: entry.folder, path: entry.path, sha256: before.sha256, replace: true)
                    }
                } else {
                    _ = try? library.registry.removeAlias(folder: entry.folder, path: entry.path)
                }
                throw error
            }
        }
        // Trust on first download: the bytes name themselves.
        let (folder, path) = try Registration.name(for: file, folder: request.folder, name: request.name)
        if !request.force, let existing = try library.registry.alias(folder: folder, path: path) {
            throw RegistrationError.nameTaken(name: "\(folder)/\(path)", existing: existing.sha256)
        }
        let committed = try download(file, progress: progress, cancel: cancel)
        _ = try library.record(committed, folder: folder, path: path)
        try library.registry.addSource(committed.digest, url: file.canonicalURL, kind: file.source.kind)
        return PullResult(committed: committed, folder: folder, path: path, fileName: file.fileName)
    }
}
