import SystemPackage

/// Everything that can go wrong in the store, each with a message a user can act on.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed on a path.
    case io(operation: String, path: String, errno: Errno)
    /// The bytes hashed to something other than what was expected; the bytes were moved aside.
    case digestMismatch(expected: Digest, actual: Digest, quarantined: String?)
    /// The byte count differs from the expected size.
    case sizeMismatch(path: String, expected: Int64, actual: Int64)
    /// The source file changed (size, mtime or identity) while it was being read.
    case changedDuringRead(path: String)
    /// The path is not a regular file (a directory, device, socket…).
    case notRegularFile(path: String)
    /// `--link` was asked for but the home and the file are on different filesystems.
    case crossDevice(path: String, home: String)
    /// No blob with this digest is in the store.
    case blobMissing(Digest)
    /// OpenSSL could not allocate a digest context.
    case cryptoUnavailable
    /// A write transaction was used after commit or abort.
    case transactionClosed
    /// Another writer holds this resumable transaction (another download of the same file).
    case busy(path: String)

    public var description: String {
        switch self {
        case let .io(operation, path, errno):
            if errno == .noSpace { return "\(operation) \(path): no space left on device (free some space and run the command again; nothing was lost)" }
            return "\(operation) \(path): \(errno.description)"
        case let .digestMismatch(expected, actual, quarantined):
            let aside = quarantined.map { "; the bytes were moved to \($0)" } ?? ""
            return "SHA-256 mismatch: expected \(expected), got \(actual)\(aside)"
        case let .sizeMismatch(path, expected, actual):
            return "\(path): expected \(expected) bytes, got \(actual)"
        case let .changedDuringRead(path):
            return "\(path) changed while it was being read; run the command again once nothing is writing to it"
        case let .notRegularFile(path):
            return "\(path) is not a regular file"
        case let .crossDevice(path, home):
            return "\(path) is on another filesystem than the home \(home), so it cannot be hard-linked; use --copy or --move"
        case let .blobMissing(digest):
            return "no blob \(digest) in the store"
        case .cryptoUnavailable:
            return "OpenSSL could not create a SHA-256 context (out of memory?)"
        case .transactionClosed:
            return "write transaction used after it was committed or aborted"
        case let .busy(path):
            return "\(path) is being written by another download"
        }
    }

    /// The errno behind an I/O error, if any.
    public var errno: Errno? {
        if case let .io(_, _, errno) = self { return errno }
        return nil
    }
}
