import Foundation

/// Editing one named section of ComfyUI's `extra_model_paths.yaml` as text, so that everything
/// else in the file — the user's sections, comments, blank lines, block scalars — stays byte for
/// byte as it was (a YAML library would re-serialise the file and drop the comments).
///
/// A section is a line `name:` at column 0 (a comment may follow) and the lines after it that are
/// blank or indented; it ends before the next line at column 0 (a key or a comment). Trailing
/// blank lines are not part of it, so the spacing around it is kept too.
public enum ExtraModelPaths {
    /// The line range of the section `name` (its header and indented body).
    public static func section(_ name: String, in lines: [Substring]) -> Range<Int>? {
        guard let start = lines.firstIndex(where: { isHeader($0, name) }) else { return nil }
        var end = start + 1
        var lastContent = start
        while end < lines.count {
            let line = lines[end]
            if line.trimmingCharacters(in: .whitespaces).isEmpty {
                end += 1
                continue
            }
            guard line.first == " " || line.first == "\t" else { break }
            lastContent = end
            end += 1
        }
        return start..<(lastContent + 1)
    }

    static func isHeader(_ line: Substring, _ name: String) -> Bool {
        guard line.hasPrefix(name + ":") else { return false }
        let rest = line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        return rest.isEmpty || rest.hasPrefix("#")
    }

    /// The file with section `name` replaced by `body` (added at the end when absent).
    public static func upsert(_ name: String, body: [String], in text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let block = body.map { Substring($0) }
        if let range = section(name, in: lines) {
            lines.replaceSubrange(range, with: block)
            return lines.joined(separator: "\n")
        }
        var out = text
        if !out.isEmpty && !out.hasSuffix("\n") { out += "\n" }
        if !out.isEmpty && !out.hasSuffix("\n\n") { out += "\n" }
        return out + body.joined(separator: "\n") + "\n"
    }

    /// The section's lines for a base path and folder keys (paths relative to it).
    public static func render(_ name: String, basePath: String, isDefault: Bool, folders: [(key: String, path: String)], note: String) -> [String] {
        var lines = ["\(name):", "    # \(note)", "    base_path: \(quoted(basePath))"]
        if isDefault { lines.append("    is_default: true") }
        for folder in folders { lines.append("    \(folder.key): \(quoted(folder.path))") }
        return lines
    }

    /// A YAML double-quoted scalar (any path is safe in it).
    static func quoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\x%02X", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }

    /// A workflow name as a section name: letters, digits, `_` and `-`.
    public static func sectionName(forWorkflow workflow: String) -> String {
        "tensors_" + String(workflow.unicodeScalars.map { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") ? Character($0) : "_" })
    }
}

/// Why ComfyUI's extra_model_paths.yaml was not changed.
public struct ExtraModelPathsError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// ComfyUI's `extra_model_paths.yaml`, changed with a way back: the file as it was (or a marker
/// that there was none) is kept beside it before a section is written, so `undo` restores it.
public struct ExtraModelPathsFile: Sendable {
    public let path: String
    var backup: String { path + ".tsr-backup" }
    var absent: String { path + ".tsr-backup-absent" }

    public init(comfyDirectory: String) { path = comfyDirectory + "/extra_model_paths.yaml" }

    public enum Written: Sendable { case created, updated }

    /// Writes (or replaces) section `name`, keeping the rest of the file.
    public func write(section name: String, lines: [String]) throws(ExtraModelPathsError) -> Written {
        let manager = FileManager.default
        let original = manager.contents(atPath: path)
        guard original.map({ String(data: $0, encoding: .utf8) != nil }) ?? true else {
            throw ExtraModelPathsError("\(path) is not UTF-8 text; nothing was changed")
        }
        let text = original.map { String(decoding: $0, as: UTF8.self) } ?? ""
        do {
            // The backup first: a crash between the two writes leaves the old file intact.
            if let original {
                try original.write(to: URL(fileURLWithPath: backup), options: .atomic)
                try? manager.removeItem(atPath: absent)
            } else {
                guard manager.createFile(atPath: absent, contents: Data()) else { throw ExtraModelPathsError("cannot write \(absent); nothing was changed") }
                try? manager.removeItem(atPath: backup)
            }
            try Data(ExtraModelPaths.upsert(name, body: lines, in: text).utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch let error as ExtraModelPathsError {
            throw error
        } catch {
            throw ExtraModelPathsError("\(path): \(error.localizedDescription)")
        }
        return original == nil ? .created : .updated
    }

    public enum Undone: Sendable { case removed, restored }

    /// Puts the file back as it was before the first `write` (removes it if there was none).
    public func undo() throws(ExtraModelPathsError) -> Undone {
        let manager = FileManager.default
        do {
            if manager.fileExists(atPath: absent) {
                try? manager.removeItem(atPath: path)
                try manager.removeItem(atPath: absent)
                return .removed
            }
            guard let saved = manager.contents(atPath: backup) else {
                throw ExtraModelPathsError("nothing to undo: \(backup) does not exist")
            }
            try saved.write(to: URL(fileURLWithPath: path), options: .atomic)
            try manager.removeItem(atPath: backup)
            return .restored
        } catch let error as ExtraModelPathsError {
            throw error
        } catch {
            throw ExtraModelPathsError("\(path): \(error.localizedDescription)")
        }
    }
}
