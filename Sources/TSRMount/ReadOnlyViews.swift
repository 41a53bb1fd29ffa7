import Foundation
import TSRRegistry
import TSRStore

/// The read-only views, answered from the rows under the path asked about: by-base/<base>/ and
/// by-creator/<creator>/ from the names whose base (creator) shows under that directory, read by
/// folder and path range with the base filtered in SQL; workflows/<name>/ from that workflow's
/// entries; by-hash/<sha256> from one blob row. Their directories follow the folder views' rules:
/// the mtime is the newest change below (and, in by-base/ and by-creator/, the newest removal
/// anywhere, since they do not record where a name was), the link count counts subdirectories.
extension PathResolver {
    /// A file of a read-only view: where it is shown (components from the mount root) and what.
    struct ViewRow {
        var parts: [String]
        var file: FileNode
    }

    /// The rows under one directory of a view, and what touches its directories besides them.
    struct ViewScope {
        var rows: [ViewRow]
        /// A removal anywhere (by-base/, by-creator/): every directory's mtime is at least this.
        var everywhere: Int64 = 0
        /// Removals (workflows/), by the directory they were in.
        var removals: [(parts: [String], ns: Int64)] = []
    }

    func viewNode(_ parts: [String]) throws -> Node? {
        if parts.count == 1 { return try viewRoot(parts[0]) }
        if parts[0] == "by-hash" {
            guard parts.count == 2, let digest = Digest(rawValue: parts[1]), digest.rawValue == parts[1],
                let blob = try source.mountBlob(digest)
            else { return nil }
            return Self.file("by-hash/" + parts[1], parent: ViewNaming.directoryInode("by-hash"), name: parts[1], Self.hashFile(blob))
        }
        guard let scope = try viewScope(parts) else { return nil }
        return Self.node(at: parts, in: scope)
    }

    func viewListing(_ parts: [String]) throws -> [Node]? {
        if parts == ["by-hash"] {
            let parent = ViewNaming.directoryInode("by-hash")
            return try source.mountBlobs().map { Self.file("by-hash/" + $0.sha256.rawValue, parent: parent, name: $0.sha256.rawValue, Self.hashFile($0)) }
        }
        guard parts[0] != "by-hash", let scope = try viewScope(parts) else { return nil }
        if parts.count > 1 { guard Self.node(at: parts, in: scope)?.directory != nil else { return nil } }
        return Self.children(of: parts, in: scope)
    }

    /// A read-only view's top directory. by-base/ and by-creator/ come from aggregates (their
    /// directories are the distinct bases or creators, their mtime the newest change anywhere);
    /// by-hash/ from the newest blob; workflows/ from its entries (a few per workflow).
    func viewRoot(_ view: String) throws -> Node? {
        switch view {
        case "by-base", "by-creator":
            let creator = view == "by-creator"
            let facts = try source.viewFacts(creator: creator)
            let names = Set(facts.values.map { ViewNaming.group($0, creator: creator) })
            var mtime = ViewNaming.baselineNs
            if let date = facts.newestUpdate { mtime = max(mtime, ViewNaming.ns(date)) }
            if let date = try source.newestRemoval() { mtime = max(mtime, ViewNaming.ns(date)) }
            let dir = DirectoryNode(names: [], children: [:], mtimeNs: mtime, target: nil, subdirectories: names.count)
            return Node(inode: ViewNaming.directoryInode(view), parent: .root, name: view, kind: .directory(dir))
        case "by-hash":
            let newest = try source.newestBlob().map(ViewNaming.ns) ?? 0
            let dir = DirectoryNode(names: [], children: [:], mtimeNs: max(ViewNaming.baselineNs, newest), target: nil, subdirectories: 0)
            return Node(inode: ViewNaming.directoryInode(view), parent: .root, name: view, kind: .directory(dir))
        case "workflows":
            guard let scope = try viewScope([view]) else { return nil }
            return Self.node(at: [view], in: scope)
        default:
            return nil
        }
    }

    /// The rows a path of by-base/, by-creator/ or workflows/ needs: those of its group (the
    /// base, creator or workflow its second component shows), narrowed to its folder and path.
    func viewScope(_ parts: [String]) throws -> ViewScope? {
        switch parts[0] {
        case "by-base", "by-creator":
            let creator = parts[0] == "by-creator"
            let folder = parts.count > 2 ? parts[2] : nil
            let sub = parts.count > 3 ? parts[3...].joined(separator: "/") : ""
            var values = try source.viewFacts(creator: creator).values
            if parts.count > 1 { values = values.filter { ViewNaming.group($0, creator: creator) == parts[1] } }
            guard !values.isEmpty || parts.count == 1 else { return nil }
            let entries = values.isEmpty ? [] : try source.mountViewEntries(creator: creator, values: values, folder: folder, under: sub)
            let rows = entries.map { entry in
                let group = ViewNaming.group(creator ? entry.creator : entry.baseModel, creator: creator)
                let file = FileNode(
                    sha256: entry.sha256, size: entry.size, state: entry.state, mtimeNs: ViewNaming.ns(entry.updatedAt),
                    alias: AliasKey(folder: entry.folder, path: entry.path), writable: false, pending: false)
                return ViewRow(parts: [parts[0], group, entry.folder] + entry.path.split(separator: "/").map(String.init), file: file)
            }
            return ViewScope(rows: rows, everywhere: try source.newestRemoval().map(ViewNaming.ns) ?? 0)
        case "workflows":
            var entries: [MountWorkflowEntry]
            if parts.count > 1 {
                let names = try source.mountWorkflowNames().filter { ViewNaming.component($0) == parts[1] }
                guard !names.isEmpty else { return nil }
                entries = try source.mountWorkflowEntries(named: names)
            } else {
                entries = try source.mountWorkflowEntries()
            }
            let rows = entries.map { entry in
                let file = FileNode(
                    sha256: entry.sha256, size: entry.size, state: entry.state, mtimeNs: ViewNaming.ns(entry.updatedAt), alias: nil,
                    writable: false, pending: false)
                return ViewRow(parts: ["workflows", ViewNaming.component(entry.workflow), entry.folder] + entry.path.split(separator: "/").map(String.init), file: file)
            }
            let removals = try source.mountTombstones(folder: "workflows", under: "").map { tombstone in
                (parts: ["workflows"] + tombstone.path.split(separator: "/").map(String.init).dropLast(), ns: ViewNaming.ns(tombstone.deletedAt))
            }
            return ViewScope(rows: rows, removals: removals)
        default:
            return nil
        }
    }

    // MARK: Nodes from rows

    static func hashFile(_ blob: MountBlob) -> FileNode {
        FileNode(sha256: blob.sha256, size: blob.size, state: blob.state, mtimeNs: ViewNaming.ns(blob.createdAt), alias: nil, writable: false, pending: false)
    }

    static func isUnder(_ row: ViewRow, _ parts: [String]) -> Bool {
        row.parts.count > parts.count && row.parts.starts(with: parts)
    }

    /// The node at `parts` among a scope's rows: a file (the first row shown there), a directory
    /// (rows below it; a view's top exists even when empty), or nil.
    static func node(at parts: [String], in scope: ViewScope) -> Node? {
        let path = parts.joined(separator: "/")
        let parent = ViewNaming.directoryInode(parts.dropLast().joined(separator: "/"))
        let below = scope.rows.filter { isUnder($0, parts) }
        if below.isEmpty {
            if let row = scope.rows.first(where: { $0.parts == parts }) { return file(path, parent: parent, name: parts[parts.count - 1], row.file) }
            guard parts.count == 1 else { return nil }
        }
        return directory(parts, below: below, in: scope)
    }

    /// A directory of a view from the rows below it.
    static func directory(_ parts: [String], below: [ViewRow], in scope: ViewScope) -> Node {
        var mtime = max(ViewNaming.baselineNs, scope.everywhere)
        var subdirectories = Set<String>()
        for row in below {
            mtime = max(mtime, row.file.mtimeNs)
            if row.parts.count > parts.count + 1 { subdirectories.insert(row.parts[parts.count]) }
        }
        // A removal changes the nearest directory on its path that is still there, and so (as a
        // change below) every directory above that: here, any removal on a path through this one.
        for removal in scope.removals where removal.parts.starts(with: parts) { mtime = max(mtime, removal.ns) }
        let dir = DirectoryNode(names: [], children: [:], mtimeNs: mtime, target: nil, subdirectories: subdirectories.count)
        let path = parts.joined(separator: "/")
        return Node(inode: ViewNaming.directoryInode(path), parent: ViewNaming.directoryInode(parts.dropLast().joined(separator: "/")), name: parts[parts.count - 1], kind: .directory(dir))
    }

    /// The children of a directory of a view: its rows grouped by the next component, in name order.
    static func children(of parts: [String], in scope: ViewScope) -> [Node] {
        var groups: [String: [ViewRow]] = [:]
        for row in scope.rows where isUnder(row, parts) { groups[row.parts[parts.count], default: []].append(row) }
        return groups.keys.sorted().compactMap { name in
            let rows = groups[name] ?? []
            let child = parts + [name]
            let below = rows.filter { isUnder($0, child) }
            if below.isEmpty, let row = rows.first {
                return file(child.joined(separator: "/"), parent: ViewNaming.directoryInode(parts.joined(separator: "/")), name: name, row.file)
            }
            return directory(child, below: below, in: scope)
        }
    }
}
