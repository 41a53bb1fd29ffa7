/// Where a tensors home keeps its parts.
///
/// ```
/// <home>/models.db                      the registry (TSRRegistry)
/// <home>/blobs/sha256/<2 hex>/<64 hex>  committed blobs, read-only
/// <home>/tmp/                           write transactions in flight
/// <home>/quarantine/                    bytes that failed verification, kept for inspection
/// ```
public struct StoreLayout: Sendable, Equatable {
    /// The home directory, absolute.
    public let home: String

    public init(home: String) {
        var trimmed = home
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.home = trimmed
    }

    public var database: String { home + "/models.db" }
    public var blobsRoot: String { home + "/blobs/sha256" }
    public var tmp: String { home + "/tmp" }
    public var quarantine: String { home + "/quarantine" }
    public var logs: String { home + "/logs" }

    /// The path of a committed blob.
    public func blobPath(_ digest: Digest) -> String { "\(blobsRoot)/\(digest.prefix)/\(digest.rawValue)" }

    /// Resolves the home: `--home`, else `$TSR_HOME`, else `$XDG_DATA_HOME/tensors`, else
    /// `~/.local/share/tensors`. Relative paths are made absolute against `cwd`.
    public static func resolveHome(explicit: String?, environment: [String: String], cwd: String) -> String {
        func absolute(_ path: String) -> String { path.hasPrefix("/") ? path : cwd + "/" + path }
        if let explicit, !explicit.isEmpty { return absolute(explicit) }
        if let home = environment["TSR_HOME"], !home.isEmpty { return absolute(home) }
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty { return absolute(xdg) + "/tensors" }
        let user = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/root"
        return absolute(user) + "/.local/share/tensors"
    }
}
