import SystemPackage
import TSRStore

/// Opening blob files for the mount.
enum SystemCallsBridge {
    static func openBlob(store: BlobStore, digest: Digest) throws -> FileDescriptor {
        try SystemCalls.openForReading(store.layout.blobPath(digest))
    }
}
