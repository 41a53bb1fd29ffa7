import Foundation
import TSRRegistry
import TSRStore

/// What the mount shows at one path: the one definition, answered from registry queries and the
/// overlay without a snapshot of the whole registry (docs/ARCHITECTURE.md, "Large registries").
/// Names and inode numbers come from `ViewNaming`. The tests compare every answer with a
/// snapshot builder over the same data (`PathResolverTests`, the oracle).
///
/// Folder-view paths, the ones ComfyUI looks up all the time, cost one indexed row (a file) or a
/// few aggregate range queries (a directory's mtime and subdirectories); a listing reads the
/// names under its directory. The read-only views read the rows under the path asked about
/// (`ReadOnlyViews.swift`).
struct PathResolver {
    let source: any MountQueries
    let overlay: Overlay

    /// A directory node carries its attributes; its names come from `listing(at:)`.
    func node(at path: String) throws -> Node? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if path.isEmpty { return try root() }
        if parts.contains(where: \.isEmpty) { return nil }
        if let folder = try folder(shownAt: parts[0]) {
            return try folderNode(shown: parts[0], folder: folder, sub: Array(parts.dropFirst()))
        }
        return ViewNaming.viewRoots.contains(parts[0]) ? try viewNode(parts) : nil
    }

    /// The children of a directory, sorted by name (nil when `path` is not a directory).
    func listing(at path: String) throws -> [Node]? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if path.isEmpty { return try rootChildren() }
        if parts.contains(where: \.isEmpty) { return nil }
        if let folder = try folder(shownAt: parts[0]) {
            return try folderListing(shown: parts[0], folder: folder, sub: Array(parts.dropFirst()))
        }
        return ViewNaming.viewRoots.contains(parts[0]) ? try viewListing(parts) : nil
    }

    // MARK: Folder views

    /// The folder a top-level name shows — a folder key, its legacy mirror, or a folder with
    /// names or being written — asking the registry about that folder only.
    func folder(shownAt shown: String) throws -> String? {
        if ViewNaming.viewRoots.contains(shown) { return nil }
        let canonical = ModelPath.canonicalFolder(shown)
        if ModelPath.folderKeys.contains(canonical) { return canonical }
        if overlay.pending.keys.contains(where: { $0.folder == shown }) || overlay.emptyDirectories.keys.contains(where: { $0.folder == shown }) {
            return shown
        }
        return try source.mountHasFolder(shown) ? shown : nil
    }

    /// Folder-view roots shown at the top (folder keys, folders with names, their mirrors) → folder.
    func folderRoots() throws -> [String: String] {
        var folders = Set(ModelPath.folderKeys)
        folders.formUnion(try source.mountFolders())
        folders.formUnion(overlay.pending.keys.map(\.folder))
        folders.formUnion(overlay.emptyDirectories.keys.map(\.folder))
        var roots: [String: String] = [:]
        for folder in folders {
            for shown in ViewNaming.viewFolders(folder) { roots[shown] = folder }
        }
        return roots
    }

    private func folderNode(shown: String, folder: String, sub parts: [String]) throws -> Node? {
        let path = ([shown] + parts).joined(separator: "/")
        let sub = parts.joined(separator: "/")
        let parent = parts.isEmpty ? Inode.root : Self.directoryInode(([shown] + parts.dropLast()).joined(separator: "/"))
        let name = parts.last ?? shown
        let key = AliasKey(folder: folder, path: sub)
        if !parts.isEmpty {
            // A name being written shows as written, keeping the inode of the content it
            // replaces if it had one; a committed name shows its registry entry.
            let entry = try source.mountEntry(folder: folder, path: sub)
            let committed = entry.map {
                FileNode(
                    sha256: $0.sha256, size: $0.size, state: $0.state, mtimeNs: ViewNaming.ns($0.updatedAt), alias: key,
                    writable: true, pending: false)
            }
            if let pending = overlay.pending[key] {
                let writing = FileNode(
                    sha256: nil, size: pending.size, state: .present, mtimeNs: pending.mtimeNs, alias: key, writable: true, pending: true,
                    pendingSerial: pending.serial)
                var node = Self.file(path, parent: parent, name: name, committed ?? writing)
                node.kind = .file(writing)
                return node
            }
            if let committed { return Self.file(path, parent: parent, name: name, committed) }
        }
        // A name that is neither a file nor a directory (the usual miss) costs one index probe.
        let mentioned = overlay.pending.keys.contains { $0.folder == folder && (sub.isEmpty || $0.path.hasPrefix(sub + "/")) }
            || overlay.emptyDirectories.keys.contains { $0.folder == folder && (sub.isEmpty || $0.path == sub || $0.path.hasPrefix(sub + "/")) }
        if !parts.isEmpty, !mentioned, try !source.mountHasNames(folder: folder, under: sub) { return nil }
        let facts = try source.directoryFacts(folder: folder, under: sub)
        var mtime = ViewNaming.baselineNs
        var subdirectories = Set(facts.subdirectories)
        var exists = parts.isEmpty || facts.hasNames
        if let date = facts.newestUpdate { mtime = max(mtime, ViewNaming.ns(date)) }
        if let date = facts.newestRemoval { mtime = max(mtime, ViewNaming.ns(date)) }
        // What the mount itself adds below: names being written and directories made with mkdir.
        func below(_ other: AliasKey) -> [String]? {
            guard other.folder == folder else { return nil }
            if sub.isEmpty { return other.path.split(separator: "/").map(String.init) }
            guard other.path == sub || other.path.hasPrefix(sub + "/") else { return nil }
            return other.path.dropFirst(sub.count).split(separator: "/").map(String.init)
        }
        for (other, pending) in overlay.pending {
            guard let rest = below(other), !rest.isEmpty else { continue }
            exists = true
            mtime = max(mtime, pending.mtimeNs)
            if rest.count > 1 { subdirectories.insert(rest[0]) }
        }
        for (other, created) in overlay.emptyDirectories {
            guard let rest = below(other) else { continue }
            exists = true
            mtime = max(mtime, created)
            if let first = rest.first { subdirectories.insert(first) }
        }
        guard exists else { return nil }
        let dir = DirectoryNode(names: [], children: [:], mtimeNs: mtime, target: key, subdirectories: subdirectories.count)
        return Node(inode: Self.directoryInode(path), parent: parent, name: name, kind: .directory(dir))
    }

    /// A folder-view directory's children: the names directly in it (one range query) and its
    /// subdirectories (a few aggregates each), never everything below it.
    private func folderListing(shown: String, folder: String, sub parts: [String]) throws -> [Node]? {
        guard let dir = try folderNode(shown: shown, folder: folder, sub: parts), dir.directory != nil else { return nil }
        let path = ([shown] + parts).joined(separator: "/")
        let sub = parts.joined(separator: "/")
        var files: [String: Node] = [:]
        for entry in try source.mountChildren(folder: folder, under: sub) {
            let name = String(entry.path.split(separator: "/").last ?? "")
            let node = FileNode(
                sha256: entry.sha256, size: entry.size, state: entry.state, mtimeNs: ViewNaming.ns(entry.updatedAt),
                alias: AliasKey(folder: folder, path: entry.path), writable: true, pending: false)
            files[name] = Self.file(path + "/" + name, parent: dir.inode, name: name, node)
        }
        var directories = Set<String>()
        for name in try source.directoryFacts(folder: folder, under: sub).subdirectories { directories.insert(name) }
        func rest(_ other: AliasKey) -> [String]? {
            guard other.folder == folder else { return nil }
            if sub.isEmpty { return other.path.split(separator: "/").map(String.init) }
            guard other.path.hasPrefix(sub + "/") else { return nil }
            return other.path.dropFirst(sub.count + 1).split(separator: "/").map(String.init)
        }
        for (other, pending) in overlay.pending {
            guard let rest = rest(other), let first = rest.first else { continue }
            if rest.count > 1 {
                directories.insert(first)
                continue
            }
            let writing = FileNode(
                sha256: nil, size: pending.size, state: .present, mtimeNs: pending.mtimeNs, alias: other, writable: true, pending: true,
                pendingSerial: pending.serial)
            // A name being written over an existing one keeps that one's inode.
            var node = files[first] ?? Self.file(path + "/" + first, parent: dir.inode, name: first, writing)
            node.kind = .file(writing)
            files[first] = node
        }
        for other in overlay.emptyDirectories.keys {
            if let first = rest(other)?.first { directories.insert(first) }
        }
        var children = Array(files.values)
        for name in directories where files[name] == nil {
            if let node = try folderNode(shown: shown, folder: folder, sub: parts + [name]) { children.append(node) }
        }
        return children.sorted { $0.name < $1.name }
    }

    // MARK: The root and the read-only views

    private func root() throws -> Node {
        let children = try rootChildren()
        var mtime = children.reduce(ViewNaming.baselineNs) { max($0, $1.directory?.mtimeNs ?? 0) }
        // A removal in a folder that is no longer shown touches the root itself.
        if let date = try source.newestRemoval() { mtime = max(mtime, ViewNaming.ns(date)) }
        let dir = DirectoryNode(names: [], children: [:], mtimeNs: mtime, target: nil, subdirectories: children.count)
        return Node(inode: .root, parent: .root, name: "", kind: .directory(dir))
    }

    private func rootChildren() throws -> [Node] {
        var children: [Node] = []
        for (shown, folder) in try folderRoots() {
            if let node = try folderNode(shown: shown, folder: folder, sub: []) { children.append(node) }
        }
        for view in ViewNaming.viewRoots {
            if let node = try viewRoot(view) { children.append(node) }
        }
        return children.sorted { $0.name < $1.name }
    }

    // MARK: Nodes

    static func directoryInode(_ path: String) -> Inode { ViewNaming.directoryInode(path) }

    static func file(_ path: String, parent: Inode, name: String, _ file: FileNode) -> Node {
        Node(inode: ViewNaming.fileInode(path, file), parent: parent, name: name, kind: .file(file))
    }

    /// Directory nodes are answered without their listing.
    static func withoutNames(_ node: Node) -> Node {
        guard var dir = node.directory else { return node }
        dir.names = []
        dir.children = [:]
        var copy = node
        copy.kind = .directory(dir)
        return copy
    }
}
