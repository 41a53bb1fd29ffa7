import SystemPackage
import Foundation
import TSRRegistry
import TSRStore

/// What `tsr info` shows about a file, alias or blob (JSON shape documented in docs/CLI.md).
public struct InfoReport: Sendable, Codable, Equatable {
    public var sha256: String
    public var size: Int64
    public var state: String?
    public var tensorCount: Int?
    public var headerSize: Int?
    public var metadata: [String: String]
    public var baseModel: String
    public var aliases: [String]
    /// The file on disk the report was made from, when the argument was a path.
    public var path: String?
    /// Never evicted (tsr pin); nil for a file the library does not know.
    public var pinned: Bool?

    enum CodingKeys: String, CodingKey {
        case sha256, size, state, metadata, aliases, path, pinned
        case tensorCount = "tensor_count", headerSize = "header_size", baseModel = "base_model"
    }
}

/// Answers `tsr info FILE|ALIAS|HASH`.
public struct Inspector: Sendable {
    public let library: Library

    public init(library: Library) { self.library = library }

    public func info(_ argument: String, cwd: String) throws(LibraryError) -> InfoReport {
        try wrappingErrors {
            if let digest = Digest(rawValue: argument) {
                guard let blob = try library.registry.blob(digest) else { throw LibraryError.notFound(argument) }
                return try report(blob: blob, path: nil)
            }
            let path = argument.hasPrefix("/") ? argument : cwd + "/" + argument
            // A short hash (a unique prefix of 8+ hex digits), unless a file has that name.
            if (try? SystemCalls.status(path)) == nil, let digest = try library.digest(named: argument),
                let blob = try library.registry.blob(digest)
            {
                return try report(blob: blob, path: nil)
            }
            if let status = try? SystemCalls.status(path), status.isRegularFile {
                return try report(file: path, status: status)
            }
            if let (folder, aliasPath) = try? ModelPath.parseAlias(argument),
                let alias = try library.registry.alias(folder: folder, path: aliasPath),
                let blob = try library.registry.blob(alias.sha256)
            {
                return try report(blob: blob, path: nil)
            }
            throw LibraryError.notFound(argument)
        }
    }

    private func report(blob: BlobRecord, path: String?) throws -> InfoReport {
        var metadata = blob.metadata
        var tensorCount = blob.tensorCount
        var headerSize = blob.headerSize
        var baseModel = blob.baseModel
        // Blobs registered before their header was read: read it from the bytes if they are here.
        if tensorCount == nil, blob.state == .present,
            let header = try? Safetensors.read(path: library.layout.blobPath(blob.sha256)).get()
        {
            metadata = header.metadata
            tensorCount = header.tensorCount
            headerSize = header.headerSize
            baseModel = BaseModel.infer(header)
        }
        return InfoReport(
            sha256: blob.sha256.rawValue, size: blob.size, state: blob.state.rawValue, tensorCount: tensorCount,
            headerSize: headerSize, metadata: metadata, baseModel: baseModel ?? BaseModel.unknown,
            aliases: try library.registry.aliases(of: blob.sha256).map(\.name), path: path, pinned: try library.registry.isPinned(blob.sha256))
    }

    private func report(file path: String, status: Stat) throws -> InfoReport {
        let known = try library.registry.localFilesByPath()[path]
        let digest: Digest
        if let known, known.matches(status) {
            digest = known.sha256
        } else {
            digest = try FileHasher.hash(path: path).0
        }
        if let blob = try library.registry.blob(digest) {
            var out = try report(blob: blob, path: path)
            out.path = path
            return out
        }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let facts = try HeaderFacts.read(path: path, name: name)
        return InfoReport(
            sha256: digest.rawValue, size: status.size, state: nil, tensorCount: facts?.tensorCount,
            headerSize: facts?.headerSize, metadata: facts?.metadata ?? [:], baseModel: facts?.baseModel ?? BaseModel.unknown,
            aliases: [], path: path)
    }
}
