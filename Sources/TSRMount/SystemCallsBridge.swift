import SystemPackage
import TSRStore

/// Opening blob files for the mount.
enum SystemCallsBridge {
    /// Opens a blob for a handle, marked in use so the bounded cache never evicts it while open.
    static func openBlob(store: BlobStore, digest: Digest) throws -> FileDescriptor {
        let fd = try SystemCalls.openForReading(store.layout.blobPath(digest))
        SystemCalls.markInUse(fd)
        return fd
    }
}
