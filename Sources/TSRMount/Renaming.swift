import FUSE
import Foundation
import TSRLibrary
import TSRRegistry
import TSRStore

/// Directories and names in folder views: mkdir/rmdir manage directories that hold nothing yet;
/// unlink and rename change aliases (and the names of writes in progress).
extension MountCore {
    /// Makes a directory (at the root: a new folder key, as custom nodes add their own); its entry.
    public func mkdir(parent: Inode, name: String) throws -> Entry {
        let key: AliasKey
        if parent == .root {
            guard !settings.readOnly else { throw Errno.readOnlyFileSystem }
            key = AliasKey(folder: try ModelPath.validateFolder(name), path: "")
        } else {
            key = try childKey(try writableDirectory(parent).get().1, name)
        }
        if child(of: parent, named: name) != nil { throw Errno.fileExists }
        let now = Self.nowNs
        try rebuild { overlay in overlay.emptyDirectories[key] = now }
        guard let base = path(of: parent), let node = try resolveForKernel(Self.join(base, name)) else { throw Errno.ioError }
        return entry(node)
    }

    /// Removes an empty directory made through the mount (a folder key or one holding names: EBUSY).
    public func rmdir(parent: Inode, name: String) throws {
        guard !settings.readOnly else { throw Errno.readOnlyFileSystem }
        guard let node = child(of: parent, named: name) else { throw Errno.noSuchFileOrDirectory }
        guard let dir = node.directory else { throw Errno.notDirectory }
        guard let target = dir.target else { throw Errno.readOnlyFileSystem }
        guard isEmptyDirectory(parent: parent, name: name) else { throw Errno.directoryNotEmpty }
        let isMadeHere = names.withLock { $0.overlay.emptyDirectories[target] != nil }
        if !isMadeHere || (target.path.isEmpty && ModelPath.folderKeys.contains(target.folder)) { throw Errno.resourceBusy }
        try rebuild { overlay in overlay.emptyDirectories[target] = nil }
    }

    /// Removes a name (the blob stays in the store; open handles of a write keep writing into a
    /// transaction no name will receive).
    public func unlink(parent: Inode, name: String) throws {
        guard !settings.readOnly else { throw Errno.readOnlyFileSystem }
        guard let node = child(of: parent, named: name) else { throw Errno.noSuchFileOrDirectory }
        guard let file = node.file else { throw Errno.isDirectory }
        guard file.writable, let key = file.alias else { throw Errno.readOnlyFileSystem }
        try rebuild { overlay in
            // The registry first: if it fails, nothing else has changed.
            if try library.registry.alias(folder: key.folder, path: key.path) != nil {
                try library.registry.removeAlias(folder: key.folder, path: key.path)
            }
            writes.withLock { $0.removeValue(forKey: key) }?.rename(to: nil)
            overlay.pending[key] = nil
        }
    }

    /// rename(2) and renameat2(2) with RENAME_NOREPLACE, of files and directories in folder views.
    public func rename(parent: Inode, name: String, newParent: Inode, newName: String, flags: UInt32) throws {
        let noReplace = flags & RenameFlags.noReplace != 0
        guard flags & ~RenameFlags.noReplace == 0 else { throw Errno.invalidArgument }
        guard !settings.readOnly else { throw Errno.readOnlyFileSystem }
        guard let source = child(of: parent, named: name), let sourceBase = path(of: parent) else { throw Errno.noSuchFileOrDirectory }
        guard case let .success((_, targetDir)) = writableDirectory(newParent), let targetBase = path(of: newParent) else {
            throw Errno.readOnlyFileSystem
        }
        // The kernel moves its dentries with their old inodes: those follow to the new place.
        let moving = (from: Self.join(sourceBase, name), to: Self.join(targetBase, newName))
        let destination = try childKey(targetDir, newName)
        let existing = child(of: newParent, named: newName)
        if existing != nil && noReplace { throw Errno.fileExists }
        if let file = source.file {
            guard file.writable, let from = file.alias else { throw Errno.readOnlyFileSystem }
            if existing?.directory != nil { throw Errno.isDirectory }
            if from == destination { return }
            try renameFile(from: from, to: destination, dentries: moving)
        } else if let dir = source.directory {
            guard let from = dir.target, !from.path.isEmpty else { throw Errno.resourceBusy }
            if let existing {
                guard existing.directory != nil else { throw Errno.notDirectory }
                guard isEmptyDirectory(parent: newParent, name: newName) else { throw Errno.directoryNotEmpty }
            }
            if destination.folder == from.folder && (destination.path + "/").hasPrefix(from.path + "/") { throw Errno.invalidArgument }
            try renameDirectory(from: from, to: destination, dentries: moving)
        }
    }

    /// Whether a directory has nothing in it (a registry error counts as not empty).
    func isEmptyDirectory(parent: Inode, name: String) -> Bool {
        guard let base = path(of: parent) else { return false }
        do {
            return try resolver().listing(at: Self.join(base, name))?.isEmpty ?? false
        } catch {
            logger.error("listing '\(Self.join(base, name))': \(error)")
            return false
        }
    }

    private func renameFile(from: AliasKey, to: AliasKey, dentries: (from: String, to: String)) throws {
        // Under the rebuild lock, like a commit's recording (see `commit`).
        try rebuild { overlay in
            // The registry first: if it fails, nothing else has changed.
            // A written file is in the registry once flushed; a pending-only one is not yet.
            if try library.registry.alias(folder: from.folder, path: from.path) != nil {
                try library.registry.moveAlias(from: (from.folder, from.path), to: (to.folder, to.path), replace: true)
            }
            let (moving, replaced) = writes.withLock { table -> (PendingWrite?, PendingWrite?) in
                guard let write = table.removeValue(forKey: from) else {
                    return (nil, table.removeValue(forKey: to))
                }
                table[to] = write
                return (write, nil)
            }
            replaced?.rename(to: nil)
            moving?.rename(to: to)
            if let entry = overlay.pending.removeValue(forKey: from) { overlay.pending[to] = entry }
            if replaced != nil { overlay.pending[to] = nil }
            names.withLock { $0.known.move(from: dentries.from, to: dentries.to) }
        }
    }

    private func renameDirectory(from: AliasKey, to: AliasKey, dentries: (from: String, to: String)) throws {
        func moved(_ key: AliasKey) -> AliasKey? {
            guard key.folder == from.folder, key.path == from.path || key.path.hasPrefix(from.path + "/") else { return nil }
            return AliasKey(folder: to.folder, path: to.path + key.path.dropFirst(from.path.count))
        }
        try rebuild { overlay in
            // The registry first (a name already at the target refuses the move): if it fails,
            // nothing else has changed. The rest under the rebuild lock, like a commit's recording.
            _ = try library.registry.moveAliases(fromFolder: from.folder, prefix: from.path, toFolder: to.folder, toPrefix: to.path, replace: false)
            let relocated = writes.withLock { table -> [(PendingWrite, AliasKey)] in
                var out: [(PendingWrite, AliasKey)] = []
                for (key, write) in table {
                    guard let target = moved(key) else { continue }
                    table[key] = nil
                    table[target] = write
                    out.append((write, target))
                }
                return out
            }
            // Outside the writes table's lock: a write's lock may be held across its file I/O.
            for (write, target) in relocated { write.rename(to: target) }
            for (key, value) in overlay.pending { if let target = moved(key) { overlay.pending[key] = nil; overlay.pending[target] = value } }
            for (key, value) in overlay.emptyDirectories { if let target = moved(key) { overlay.emptyDirectories[key] = nil; overlay.emptyDirectories[target] = value } }
            overlay.emptyDirectories[to] = overlay.emptyDirectories[to] ?? Self.nowNs
            names.withLock { $0.known.move(from: dentries.from, to: dentries.to) }
        }
    }
}
