import Foundation
import TSRRegistry
import TSRStore
@testable import TSRMount

/// An immutable snapshot of the mount's paths.
final class Namespace: Sendable {
    let generation: Int64
    let nodes: [Inode: Node]

    init(generation: Int64, nodes: [Inode: Node]) {
        self.generation = generation
        self.nodes = nodes
    }

    func node(_ inode: Inode) -> Node? { nodes[inode] }

    func child(of parent: Inode, named name: String) -> Node? {
        guard let inode = nodes[parent]?.directory?.children[name] else { return nil }
        return nodes[inode]
    }

    /// The node at a path relative to the root ("" is the root).
    func node(at path: String) -> Node? {
        var current = nodes[.root]
        for component in path.split(separator: "/") {
            guard let next = current.flatMap({ child(of: $0.inode, named: String(component)) }) else { return nil }
            current = next
        }
        return current
    }

    /// The directory node of a writable folder view that stands for `key`, if shown.
    func path(of inode: Inode) -> String {
        var parts: [String] = []
        var current = nodes[inode]
        while let node = current, node.inode != .root {
            parts.append(node.name)
            current = nodes[node.parent]
        }
        return parts.reversed().joined(separator: "/")
    }
}

/// The test oracle: builds a `Namespace` of every path from registry data and the overlay, the
/// whole-snapshot way the first mount worked, with `ViewNaming`'s names and inode numbers.
/// `PathResolverTests` checks that the resolver answers every path as this does. Directories are
/// built as reference objects (O(1) per insertion) and frozen into value nodes at the end.
struct NamespaceBuilder {
    static let viewRoots = ViewNaming.viewRoots
    static let mirrors = ViewNaming.mirrors
    static let baselineNs = ViewNaming.baselineNs

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
    /// Root directory names of writable folder views → their folder key.
    private var folderRoots: [String: String] = [:]

    static func build(_ data: MountData, overlay: Overlay = Overlay()) -> Namespace {
        var builder = NamespaceBuilder()
        return builder.make(data, overlay: overlay)
    }

    /// The number of a path (`ViewNaming`), never probed for a free one: as the resolver.
    private mutating func allocate(_ path: String, kind: UInt8) -> Inode {
        Inode(ViewNaming.inode(for: path, kind: kind))
    }

    /// Ensures the directory at `components` exists. Directories under a folder view root stand
    /// for that folder (and subpath) and are writable.
    @discardableResult
    private mutating func directory(_ components: ArraySlice<String>) -> DirectoryBuilder {
        let path = components.joined(separator: "/")
        if let existing = directories[path] { return existing }
        guard let name = components.last else {
            let root = DirectoryBuilder(inode: .root, parent: .root, name: "", target: nil, up: nil)
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
        let inode = ViewNaming.fileInode(path, file)
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

    static func ns(_ date: Date) -> Int64 { ViewNaming.ns(date) }
    static func viewFolders(_ folder: String) -> [String] { ViewNaming.viewFolders(folder) }

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

    static func component(_ name: String) -> String { ViewNaming.component(name) }
}
