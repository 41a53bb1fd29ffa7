import FUSE

/// The inodes the kernel holds, and nothing else (docs/ARCHITECTURE.md, "Large registries").
///
/// Every reply that hands the kernel an inode (lookup, create, mkdir, each entry of a
/// READDIRPLUS listing) adds one to its lookup count; `forget` gives counts back, and an inode
/// whose count reaches zero is dropped. A dentry pins its parent, so the path of every inode the
/// kernel can name is here. Each inode keeps the node it was last served as: a file inode keeps
/// its content's attributes after the name moves on to other content (readers of the old content
/// keep it), unless it `follows` its path (a renamed dentry, a writer's inode after its commit).
struct KnownInodes {
    struct Entry {
        var path: String
        var node: Node
        var lookups: UInt64
        /// Stands for whatever its path shows now, as long as that is the same content.
        var follows: Bool
        /// Read-only view directories: their child names when last served, so that names that
        /// appear since (a negative dentry the kernel may hold) can be dropped.
        var names: [String]?
    }

    private(set) var entries: [Inode: Entry] = [:]
    private var byPath: [String: [Inode]] = [:]

    init(root: Node) {
        entries[.root] = Entry(path: "", node: root, lookups: 1, follows: true)
        byPath[""] = [.root]
    }

    var count: Int { entries.count }

    subscript(inode: Inode) -> Entry? { entries[inode] }

    func inodes(at path: String) -> [Inode] { byPath[path] ?? [] }

    /// Directory inodes the kernel holds at a path (the parents a dentry there hangs from).
    func directories(at path: String) -> [Inode] {
        inodes(at: path).filter { entries[$0]?.node.directory != nil }
    }

    /// The kernel was handed `node` at `path` (`count` times).
    mutating func remember(_ node: Node, at path: String, count: UInt64 = 1) {
        if var entry = entries[node.inode] {
            entry.lookups += count
            entry.node = node
            if entry.path != path {
                unindex(node.inode, entry.path)
                entry.path = path
                entry.follows = false
                index(node.inode, path)
            }
            entries[node.inode] = entry
        } else {
            entries[node.inode] = Entry(path: path, node: node, lookups: count, follows: false)
            index(node.inode, path)
        }
    }

    /// The kernel gave back `count` references; the inode is dropped at zero (never the root).
    mutating func forget(_ inode: Inode, _ count: UInt64) {
        guard inode != .root, var entry = entries[inode] else { return }
        entry.lookups -= min(entry.lookups, count)
        if entry.lookups == 0 {
            entries[inode] = nil
            unindex(inode, entry.path)
        } else {
            entries[inode] = entry
        }
    }

    mutating func update(_ inode: Inode, node: Node, follows: Bool? = nil, names: [String]? = nil) {
        guard var entry = entries[inode] else { return }
        entry.node = node
        if let follows { entry.follows = follows }
        if let names { entry.names = names }
        entries[inode] = entry
    }

    /// `inode` now stands for whatever `path` shows.
    mutating func follow(_ inode: Inode, at path: String) {
        guard var entry = entries[inode] else { return }
        if entry.path != path {
            unindex(inode, entry.path)
            entry.path = path
            index(inode, path)
        }
        entry.follows = true
        entries[inode] = entry
    }

    /// A rename: every inode at `old` or below it now stands for the same place under `new`.
    mutating func move(from old: String, to new: String) {
        let moving = entries.filter { $0.value.path == old || $0.value.path.hasPrefix(old + "/") }
        for (inode, entry) in moving { follow(inode, at: new + entry.path.dropFirst(old.count)) }
    }

    /// Inodes whose path is `root` or below it.
    func inodes(under root: String) -> [Inode] {
        entries.compactMap { $0.value.path == root || $0.value.path.hasPrefix(root + "/") ? $0.key : nil }
    }

    private mutating func index(_ inode: Inode, _ path: String) {
        byPath[path, default: []].append(inode)
    }

    private mutating func unindex(_ inode: Inode, _ path: String) {
        byPath[path]?.removeAll { $0 == inode }
        if byPath[path]?.isEmpty == true { byPath[path] = nil }
    }
}
