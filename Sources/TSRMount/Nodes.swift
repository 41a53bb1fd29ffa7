import FUSE
import Foundation
import TSRRegistry
import TSRStore

/// # TSRMount
///
/// What the mount shows, the rules of the filesystem, and the thin FUSE adapter over them.
///
/// - `PathResolver` answers what one path shows from indexed registry queries and the mount's
///   overlay (files being written, directories made with mkdir); `KnownInodes` keeps what the
///   kernel holds; nothing is kept per alias (docs/ARCHITECTURE.md, "The mount").
/// - `MountCore` holds the filesystem's rules (plain values in, results out) and
///   `TensorsFileSystem` is the thin FUSE adapter over it.
/// - `ViewNaming` is the one place for shown names, mtimes and inode numbers; the tests compare
///   the resolver on every path with a snapshot builder over the same data (the oracle).
/// - **Views.** `<folder>/…` (one per ComfyUI folder key; `unet/` and `clip/` mirror
///   `diffusion_models/` and `text_encoders/`) are writable; `by-base/<base>/<folder>/…`,
///   `by-creator/<creator>/<folder>/…`, `by-hash/<sha256>` and `workflows/<name>/…` are read-only.
/// - **Inodes** are derived from the path, and for files from the content's digest (FNV-1a), so
///   they are the same after a remount and do not change when a file's bytes arrive; new content
///   under a name is a new inode, as an atomic replace would make. **mtimes** come from the registry: a file's is its alias's
///   `updated_at`; a directory's is the newest change below it, including removals (tombstones), so
///   it moves exactly when an entry appears, changes or leaves (ComfyUI caches listings on it).
enum TSRMountModule {}

/// Where a path of a writable folder view lands in the registry.
public struct AliasKey: Hashable, Sendable, CustomStringConvertible {
    public var folder: String
    /// Path inside the folder ("" for the folder's root directory).
    public var path: String
    public init(folder: String, path: String) {
        self.folder = folder
        self.path = path
    }
    public var description: String { path.isEmpty ? folder : folder + "/" + path }
    /// The key of a child name.
    public func child(_ name: String) -> AliasKey { AliasKey(folder: folder, path: path.isEmpty ? name : path + "/" + name) }
}

/// A file in the namespace.
public struct FileNode: Sendable, Equatable {
    public var sha256: Digest?
    public var size: Int64
    public var state: BlobState
    public var mtimeNs: Int64
    /// The alias behind a folder-view file (nil for by-hash entries).
    public var alias: AliasKey?
    /// Part of a writable folder view.
    public var writable: Bool
    /// Being written through the mount (not yet committed).
    public var pending: Bool
    /// Which write it is (a name is written many times): each write's node has an inode of its
    /// own, so an inode never stands both for content readers hold by passthrough and for the
    /// next write of the same name.
    public var pendingSerial: UInt64 = 0
}

/// A directory in the namespace.
public struct DirectoryNode: Sendable, Equatable {
    /// Child names in listing order, with their inodes.
    public var names: [String]
    public var children: [String: Inode]
    public var mtimeNs: Int64
    /// For directories of writable folder views: the folder (and subpath) they stand for.
    public var target: AliasKey?
    /// How many children are directories: st_nlink is 2 plus this, as on ext4. Tree walkers
    /// built on fts (coreutils, Foundation) skip descending into a directory whose link count
    /// says it has no subdirectories.
    public var subdirectories: Int = 0
}

/// One node of the namespace.
public struct Node: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case directory(DirectoryNode)
        case file(FileNode)
    }
    public var inode: Inode
    public var parent: Inode
    public var name: String
    public var kind: Kind

    public var directory: DirectoryNode? {
        if case let .directory(d) = kind { return d }
        return nil
    }
    public var file: FileNode? {
        if case let .file(f) = kind { return f }
        return nil
    }
}

/// What the mount itself adds on top of the registry.
public struct Overlay: Sendable {
    /// Files being written: alias key → (size, mtime, which write it is: `FileNode.pendingSerial`).
    public var pending: [AliasKey: (size: Int64, mtimeNs: Int64, serial: UInt64)] = [:]
    /// Directories made with mkdir that hold nothing yet, with their creation time.
    public var emptyDirectories: [AliasKey: Int64] = [:]
    public init() {}
}
