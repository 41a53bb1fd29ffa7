import Foundation

/// How a mount behaves.
public struct MountSettings: Sendable {
    /// Everything read-only (EROFS on every change).
    public var readOnly = false
    /// Kernel cache lifetimes, in seconds. Long, because changes are pushed to the kernel by
    /// explicit invalidation (see `MountCore.refresh`).
    public var entryTimeout = 3600.0
    public var attributeTimeout = 3600.0
    public var negativeTimeout = 3600.0
    /// How often the registry is checked for changes made by other processes.
    public var pollInterval: Duration = .milliseconds(200)
    /// Serve reads of complete blobs by kernel passthrough when the kernel agrees (Linux >= 6.9
    /// and CAP_SYS_ADMIN); the plain path otherwise (`readPath` says which and why).
    public var passthrough = true
    /// Smaller files (sidecars, previews) stay on the plain path, so they can be rewritten
    /// through the mount while another process has them open.
    public var passthroughMinimumSize: Int64 = 1 << 20
    /// FUSE knobs, measured by bench/tuning.py (docs/PERFORMANCE.md): READDIRPLUS (a listing
    /// carries every entry's attributes), the kernel's background request limit, worker threads.
    public var readdirPlus = true
    public var maxBackground: UInt16 = 64
    public var threads = 16
    /// The largest file a write through the mount may make (EFBIG past it): a commit hashes
    /// every byte, holes included, so a one-byte write at 1 TiB would cost the daemon minutes of
    /// hashing and the store a 1 TiB blob. No diffusion model comes near it.
    public var maxFileSize: Int64 = 256 << 30
    /// After a failed download, reads of the file answer EIO at once for this long, doubled per
    /// failure up to `retryBackoffMax` (seconds).
    public var retryBackoff: TimeInterval = 60
    public var retryBackoffMax: TimeInterval = 3600
    /// Record opens for the bounded cache (last use, hits, misses); off only to measure what it
    /// costs (bench/mount.py).
    public var trackAccess = true
    /// Change-log rows read one by one per refresh; past this many (a large import), everything
    /// the kernel holds is refreshed instead.
    var changeLogBatch = 10_000
    /// Owner shown for every file.
    public var uid: UInt32 = getuid()
    public var gid: UInt32 = getgid()

    public init() {}

    /// Applies `TSR_MOUNT_TUNING` (`key=value,…`: entry_timeout, attr_timeout, negative_timeout in
    /// seconds, readdirplus=on|off, max_background, threads), for benchmarks; nil, or what is wrong.
    public mutating func tune(_ text: String) -> String? {
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return "'\(item)' is not key=value" }
            let (key, value) = (parts[0], parts[1])
            switch key {
            case "entry_timeout", "attr_timeout", "negative_timeout":
                guard let seconds = Double(value), seconds >= 0 else { return "\(key) needs seconds, not '\(value)'" }
                if key == "entry_timeout" { entryTimeout = seconds } else if key == "attr_timeout" { attributeTimeout = seconds } else { negativeTimeout = seconds }
            case "readdirplus":
                guard value == "on" || value == "off" else { return "readdirplus is on or off, not '\(value)'" }
                readdirPlus = value == "on"
            case "max_background":
                guard let count = UInt16(value), count > 0 else { return "max_background needs a count, not '\(value)'" }
                maxBackground = count
            case "threads":
                guard let count = Int(value), (2...256).contains(count) else { return "threads is 2 to 256, not '\(value)'" }
                threads = count
            case "max_file_size":
                guard let bytes = Int64(value), bytes > 0 else { return "max_file_size needs bytes, not '\(value)'" }
                maxFileSize = bytes
            case "access_tracking":
                guard value == "on" || value == "off" else { return "access_tracking is on or off, not '\(value)'" }
                trackAccess = value == "on"
            case "retry_backoff", "retry_backoff_max":
                guard let seconds = Double(value), seconds >= 0 else { return "\(key) needs seconds, not '\(value)'" }
                if key == "retry_backoff" { retryBackoff = seconds } else { retryBackoffMax = seconds }
            default:
                return "unknown key '\(key)' (entry_timeout, attr_timeout, negative_timeout, readdirplus, max_background, threads, max_file_size, retry_backoff, retry_backoff_max, access_tracking)"
            }
        }
        return nil
    }
}
