import SystemPackage
import TSRStore

/// A file found while walking a tree.
struct FoundFile: Sendable {
    /// Absolute path as walked (may pass through symlinks).
    var path: String
    /// Path components below the root.
    var relative: [String]
    var status: Stat
    /// The path itself is a symlink (to a file).
    var isSymlink: Bool
}

/// Walks a directory tree the way ComfyUI does (following symlinks), but never loops: a directory
/// already on the current path (by device and inode) is reported and skipped. Names that are not
/// UTF-8 or hold control characters are reported, not followed.
struct TreeWalker {
    var files: [FoundFile] = []
    var issues: [FileIssue] = []
    private var excluded: Set<String> = []

    /// Walks `root`, passing over the directories in `excluding` (the home, when it lies inside).
    static func walk(root: String, excluding: [String] = []) throws(LibraryError) -> TreeWalker {
        var walker = TreeWalker()
        let status: Stat
        do {
            status = try SystemCalls.status(root)
        } catch {
            throw .store(error)
        }
        guard status.isDirectory else { throw .invalidArgument("\(root) is not a directory") }
        walker.excluded = Set(excluding.compactMap { try? SystemCalls.status($0) }.map(Self.key))
        walker.visit(directory: root, relative: [], ancestors: [Self.key(status)])
        return walker
    }

    private static func key(_ status: Stat) -> String { "\(status.device):\(status.inodeNumber)" }

    private mutating func visit(directory: String, relative: [String], ancestors: Set<String>) {
        let names: [[UInt8]]
        do {
            names = try SystemCalls.listDirectory(directory)
        } catch {
            issues.append(FileIssue(path: directory, message: error.description))
            return
        }
        // Sorted for a stable order of work and output.
        for raw in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let name = ModelPath.decodeName(raw) else {
                let shown = directory + "/" + Self.escape(raw)
                issues.append(FileIssue(path: shown, message: NameError.notUTF8(shown).description))
                continue
            }
            let path = directory + "/" + name
            let lstatus: Stat
            do {
                lstatus = try SystemCalls.linkStatus(path)
            } catch {
                issues.append(FileIssue(path: NameError.printable(path), message: error.description))
                continue
            }
            var status = lstatus
            if lstatus.isSymlink {
                guard let target = try? SystemCalls.status(path) else {
                    issues.append(FileIssue(path: NameError.printable(path), message: "broken symlink (its target does not exist)"))
                    continue
                }
                status = target
            }
            if status.isDirectory {
                let key = Self.key(status)
                if excluded.contains(key) { continue }
                if ancestors.contains(key) {
                    issues.append(FileIssue(path: NameError.printable(path), message: "symlink loop: it leads back to a directory above it; skipped"))
                    continue
                }
                visit(directory: path, relative: relative + [name], ancestors: ancestors.union([key]))
            } else if status.isRegularFile {
                files.append(FoundFile(path: path, relative: relative + [name], status: status, isSymlink: lstatus.isSymlink))
            }
            // Sockets, FIFOs and devices are not models: passed over silently.
        }
    }

    /// Shows raw name bytes with non-UTF-8 bytes as \xNN.
    static func escape(_ raw: [UInt8]) -> String {
        var out = ""
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            if byte >= 0x20 && byte < 0x7f {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
            }
            index += 1
        }
        return out
    }
}
