import FUSE
import Foundation
import TSRRegistry
import TSRStore

/// # TSRMount
///
/// What the mount shows, and the thin FUSE adapter that shows it.
///
/// - `PathResolver` answers what one path shows from indexed registry queries and the mount's
///   overlay (files being written, directories made with mkdir); `KnownInodes` keeps what the
///   kernel holds; nothing is kept per alias (docs/ARCHITECTURE.md, "The mount").
/// - A `Namespace` is an immutable tree of every path built by `NamespaceBuilder` from registry
///   data (`MountData`) and the overlay: the definition of what the mount shows. The resolver
///   builds the parts of the read-only views it needs with it, and tests compare the resolver
///   with it on every path.
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

/// An immutable snapshot of the mount's paths.
public final class Namespace: Sendable {
    public let generation: Int64
    public let nodes: [Inode: Node]

    init(generation: Int64, nodes: [Inode: Node]) {
        self.generation = generation
        self.nodes = nodes
    }

    public func node(_ inode: Inode) -> Node? { nodes[inode] }

    public func child(of parent: Inode, named name: String) -> Node? {
        guard let inode = nodes[parent]?.directory?.children[name] else { return nil }
        return nodes[inode]
    }

    /// The node at a path relative to the root ("" is the root).
    public func node(at path: String) -> Node? {
        var current = nodes[.root]
        for component in path.split(separator: "/") {
            guard let next = current.flatMap({ child(of: $0.inode, named: String(component)) }) else { return nil }
            current = next
        }
        return current
    }

    /// The directory node of a writable folder view that stands for `key`, if shown.
    public func path(of inode: Inode) -> String {
        var parts: [String] = []
        var current = nodes[inode]
        while let node = current, node.inode != .root {
            parts.append(node.name)
            current = nodes[node.parent]
        }
        return parts.reversed().joined(separator: "/")
    }
}

/// Builds a `Namespace` from registry data and the overlay. Directories are built as reference
/// objects (O(1) per insertion) and frozen into value nodes at the end.
public struct NamespaceBuilder {
    /// Directory names at the root besides the folder keys.
    public static let viewRoots = ["by-base", "by-creator", "by-hash", "workflows"]
    /// Legacy folder names shown as mirrors of their current key.
    public static let mirrors = ModelPath.legacyFolders
    /// The mtime of directories nothing has ever changed (2024-01-01T00:00:00Z): fixed, so stable.
    public static let baselineNs: Int64 = 1_704_067_200 * 1_000_000_000

    final class DirectoryBuilder {
        let inode: Inode
        let parent: Inode
        let name: String
        let target: AliasKey?
        /// The parent's builder (nil for the root): mtimes propagate up without path lookups.
        let up: DirectoryBuilder?
        var names: [String] = []
        var children: [String: Inode] = [:]
        var mtimeNs = NamespaceBuilder.baselineNs

        init(inode: Inode, parent: Inode, name: String, target: AliasKey?, up: DirectoryBuilder?) {
            self.up = up
            self.inode = inode
            self.parent = parent
            self.name = name
            self.target = target
        }
    }

    private var directories: [String: DirectoryBuilder] = [:]
    private var directoriesByInode: [Inode: DirectoryBuilder] = [:]
    private var files: [Inode: Node] = [:]
    private var filePaths: [String: Inode] = [:]
    private var used: Set<UInt64> = []
    /// Root directory names of writable folder views → their folder key.
    private var folderRoots: [String: String] = [:]

    public static func build(_ data: MountData, overlay: Overlay = Overlay()) -> Namespace {
        var builder = NamespaceBuilder()
        return builder.make(data, overlay: overlay)
    }

    /// FNV-1a 64 of a path, kept clear of 0 and the root id.
    static func inode(for path: String, kind: UInt8) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        hash ^= UInt64(kind)
        hash = hash &* 0x0000_0100_0000_01b3
        for byte in path.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        hash &= 0x3fff_ffff_ffff_ffff
        return hash < 2 ? hash + 2 : hash
    }

    private mutating func allocate(_ path: String, kind: UInt8) -> Inode {
        var value = Self.inode(for: path, kind: kind)
        // A collision (never seen in practice) is resolved by probing, in a deterministic order.
        while used.contains(value) || value < 2 { value = value &+ 1 }
        used.insert(value)
        return Inode(value)
    }

    /// Ensures the directory at `components` exists. Directories under a folder view root stand
    /// for that folder (and subpath) and are writable.
    @discardableResult
    private mutating func directory(_ components: ArraySlice<String>) -> DirectoryBuilder {
        let path = components.joined(separator: "/")
        if let existing = directories[path] { return existing }
        guard let name = components.last else {
            let root = DirectoryBuilder(inode: .root, parent: .root, name: "", target: nil, up: nil)
            used.insert(Inode.root.rawValue)
            directories[""] = root
            directoriesByInode[.root] = root
            return root
        }
        let parent = directory(components.dropLast())
        let target = components.first.flatMap { folderRoots[$0] }.map {
            AliasKey(folder: $0, path: components.dropFirst().joined(separator: "/"))
        }
        let made = DirectoryBuilder(inode: allocate(path, kind: 0x44), parent: parent.inode, name: name, target: target, up: parent)
        directories[path] = made
        directoriesByInode[made.inode] = made
        parent.names.append(name)
        parent.children[name] = made.inode
        return made
    }

    /// Adds a file and raises the mtimes of its directory and their ancestors to the file's.
    private mutating func file(_ components: [String], _ file: FileNode) {
        let path = components.joined(separator: "/")
        if let existing = filePaths[path] {
            // A pending write over an existing name: the newest content wins.
            guard file.pending else { return }
            files[existing]?.kind = .file(file)
            if let parent = files[existing].flatMap({ directoriesByInode[$0.parent] }) { touch(parent, file.mtimeNs) }
            return
        }
        guard let name = components.last, directories[path] == nil else { return }
        let parent = directory(components.dropLast()[...])
        // Path and content: the bytes arriving for a known digest keep the inode, new content
        // (a rewrite, an atomic replace) gets a new one, so readers of the old content keep
        // their inode and its page cache.
        let inode = allocate(path + "\u{0}" + (file.pending ? "pending\(file.pendingSerial)" : file.sha256?.rawValue ?? ""), kind: 0x46)
        files[inode] = Node(inode: inode, parent: parent.inode, name: name, kind: .file(file))
        filePaths[path] = inode
        parent.names.append(name)
        parent.children[name] = inode
        touch(parent, file.mtimeNs)
    }

    /// Raises a directory's mtime and its ancestors' to at least `ns`. An ancestor's mtime is never
    /// below a descendant's, so the walk stops at the first that is already new enough.
    private func touch(_ directory: DirectoryBuilder, _ ns: Int64) {
        var current: DirectoryBuilder? = directory
        while let dir = current, dir.mtimeNs < ns {
            dir.mtimeNs = ns
            current = dir.up
        }
    }

    private func touch(_ components: ArraySlice<String>, _ ns: Int64) {
        if let dir = directories[components.joined(separator: "/")] { touch(dir, ns) }
    }

    static func ns(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1e9).rounded()) }

    /// The folder-view roots a folder key appears under (itself and its legacy mirror).
    static func viewFolders(_ folder: String) -> [String] {
        [folder] + mirrors.filter { $0.value == folder }.map(\.key).sorted()
    }

    private mutating func make(_ data: MountData, overlay: Overlay) -> Namespace {
        directory([][...])
        var folders = Set(ModelPath.folderKeys)
        folders.formUnion(data.entries.map(\.folder))
        folders.formUnion(overlay.pending.keys.map(\.folder))
        folders.formUnion(overlay.emptyDirectories.keys.map(\.folder))
        for folder in folders.sorted() {
            for shown in Self.viewFolders(folder) {
                folderRoots[shown] = folder
                directory([shown][...])
            }
        }
        for root in Self.viewRoots { directory([root][...]) }

        for entry in data.entries {
            let parts = entry.path.split(separator: "/").map(String.init)
            let mtime = Self.ns(entry.updatedAt)
            let key = AliasKey(folder: entry.folder, path: entry.path)
            for shown in Self.viewFolders(entry.folder) {
                file([shown] + parts, FileNode(sha256: entry.sha256, size: entry.size, state: entry.state, mtimeNs: mtime, alias: key, writable: true, pending: false))
            }
            let readOnly = FileNode(sha256: entry.sha256, size: entry.size, state: entry.state, mtimeNs: mtime, alias: key, writable: false, pending: false)
            let base = Self.component(entry.baseModel ?? BaseModel.unknown)
            let creator = Self.component(entry.creator ?? "unknown")
            file(["by-base", base, entry.folder] + parts, readOnly)
            file(["by-creator", creator, entry.folder] + parts, readOnly)
        }
        for entry in data.workflowEntries {
            let parts = entry.path.split(separator: "/").map(String.init)
            let node = FileNode(
                sha256: entry.sha256, size: entry.size, state: entry.state, mtimeNs: Self.ns(entry.updatedAt), alias: nil, writable: false, pending: false)
            file(["workflows", Self.component(entry.workflow), entry.folder] + parts, node)
        }
        for blob in data.blobs {
            let mtime = Self.ns(blob.createdAt)
            file(["by-hash", blob.sha256.rawValue], FileNode(sha256: blob.sha256, size: blob.size, state: blob.state, mtimeNs: mtime, alias: nil, writable: false, pending: false))
        }
        for (key, created) in overlay.emptyDirectories {
            let parts = key.path.split(separator: "/").map(String.init)
            for shown in Self.viewFolders(key.folder) {
                var prefix: [String] = [shown]
                for part in parts {
                    prefix.append(part)
                    directory(prefix[...])
                }
                touch(([shown] + parts)[...], created)
            }
        }
        for (key, pending) in overlay.pending {
            let parts = key.path.split(separator: "/").map(String.init)
            for shown in Self.viewFolders(key.folder) {
                file([shown] + parts, FileNode(sha256: nil, size: pending.size, state: .present, mtimeNs: pending.mtimeNs, alias: key, writable: true, pending: true, pendingSerial: pending.serial))
            }
        }
        // Removals: the folder-view directories that held the name, and (conservatively) every
        // directory of the by-base and by-creator views, which do not record where a name was.
        var newestRemoval: Int64 = 0
        for tombstone in data.tombstones {
            let mtime = Self.ns(tombstone.deletedAt)
            newestRemoval = max(newestRemoval, mtime)
            let parts = tombstone.path.split(separator: "/").map(String.init).dropLast()
            for shown in Self.viewFolders(tombstone.folder) {
                // The nearest directory that still exists gets the change.
                var prefix = ([shown] + parts)[...]
                while !prefix.isEmpty, directories[prefix.joined(separator: "/")] == nil { prefix.removeLast() }
                touch(prefix, mtime)
            }
        }
        if newestRemoval > 0 {
            for (path, dir) in directories where path.hasPrefix("by-base") || path.hasPrefix("by-creator") {
                touch(dir, newestRemoval)
            }
        }
        // Freeze: sorted listings give stable output for ls and for readdir offsets.
        var nodes = files
        nodes.reserveCapacity(files.count + directories.count)
        for dir in directories.values {
            nodes[dir.inode] = Node(
                inode: dir.inode, parent: dir.parent, name: dir.name,
                kind: .directory(DirectoryNode(
                    names: dir.names.sorted(), children: dir.children, mtimeNs: dir.mtimeNs, target: dir.target,
                    subdirectories: dir.children.values.reduce(0) { $0 + (directoriesByInode[$1] == nil ? 0 : 1) })))
        }
        return Namespace(generation: data.generation, nodes: nodes)
    }

    /// A base model or creator name as one path component ("/" and control characters replaced).
    static func component(_ name: String) -> String {
        let cleaned = String(name.unicodeScalars.map { $0 == "/" || $0.value < 0x20 || $0.value == 0x7f ? "_" : Character($0) })
        if cleaned.isEmpty || cleaned == "." || cleaned == ".." { return "unknown" }
        return cleaned
    }
}
