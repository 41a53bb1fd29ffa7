import Foundation
import TSRStore

/// How the mount names and numbers what it shows: the one place for view roots, folder mirrors,
/// shown names of bases, creators and workflows, mtimes and inode numbers. `PathResolver` answers
/// every path with these; the snapshot builder the tests compare it with uses the same.
enum ViewNaming {
    /// Directory names at the root besides the folder keys.
    static let viewRoots = ["by-base", "by-creator", "by-hash", "workflows"]
    /// Legacy folder names shown as mirrors of their current key.
    static let mirrors = ModelPath.legacyFolders
    /// The mtime of directories nothing has ever changed (2024-01-01T00:00:00Z): fixed, so stable.
    static let baselineNs: Int64 = 1_704_067_200 * 1_000_000_000

    /// The folder-view roots a folder key appears under (itself and its legacy mirror).
    static func viewFolders(_ folder: String) -> [String] {
        [folder] + mirrors.filter { $0.value == folder }.map(\.key).sorted()
    }

    /// Whether a path lies in a read-only view (by-base/, by-creator/, by-hash/, workflows/).
    static func isReadOnlyView(_ path: String) -> Bool {
        viewRoots.contains { path == $0 || path.hasPrefix($0 + "/") }
    }

    /// A base model, creator or workflow name as one path component ("/" and control characters
    /// replaced; names that cannot be a component are "unknown").
    static func component(_ name: String) -> String {
        let cleaned = String(name.unicodeScalars.map { $0 == "/" || $0.value < 0x20 || $0.value == 0x7f ? "_" : Character($0) })
        if cleaned.isEmpty || cleaned == "." || cleaned == ".." { return "unknown" }
        return cleaned
    }

    /// The directory a name's base model (or creator) shows it under in by-base/ (by-creator/).
    static func group(_ value: String?, creator: Bool) -> String {
        component(value ?? (creator ? "unknown" : BaseModel.unknown))
    }

    static func ns(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1e9).rounded()) }

    // MARK: Inodes

    /// FNV-1a 64 of a path, kept clear of 0 and the root id, in 62 bits.
    ///
    /// Numbers are derived, never allocated, so every path has its number without a table and
    /// keeps it across remounts. Two paths hashing to one number are not told apart: the chance
    /// is about n²/2⁶³ for n paths the kernel holds at once (one in ten million at a million);
    /// SEMANTICS §2 says so. No probing for a free number: a probe depends on what else was
    /// numbered first, which a resolver answering one path at a time cannot know.
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

    /// A directory's inode: from its path.
    static func directoryInode(_ path: String) -> Inode { path.isEmpty ? .root : Inode(inode(for: path, kind: 0x44)) }

    /// A file's inode: from its path and content. The bytes arriving for a known digest keep the
    /// inode; new content (a rewrite, an atomic replace) gets a new one, so readers of the old
    /// content keep their inode and its page cache; each write in progress has its own.
    static func fileInode(_ path: String, _ file: FileNode) -> Inode {
        Inode(inode(for: path + "\u{0}" + (file.pending ? "pending\(file.pendingSerial)" : file.sha256?.rawValue ?? ""), kind: 0x46))
    }
}
