import SystemPackage
import TSRRegistry
import TSRStore

/// What `tsr db scan` did.
public struct ScanSummary: Sendable, Codable, Equatable {
    public var files = 0
    public var hashed = 0
    public var unchanged = 0
    /// Files an earlier scan of this directory registered that are no longer there: forgotten.
    public var gone = 0
    /// Files of this scan whose content an earlier file of the scan, a file scanned elsewhere or
    /// the store already has (counted as `tsr import` counts them).
    public var duplicates = 0
    public var duplicateGroups: [DuplicateGroup] = []
    public var errors: [FileIssue] = []

    enum CodingKeys: String, CodingKey {
        case files, hashed, unchanged, gone, duplicates, errors
        case duplicateGroups = "duplicate_groups"
    }
}

/// One content held by more than one file: every scanned path with it and its names in the store.
public struct DuplicateGroup: Sendable, Codable, Equatable {
    public var sha256: String
    public var size: Int64
    public var paths: [String]
    public var names: [String]
}

/// Registers model files where they are (the seed's `local_files`): hashed, headers read, nothing
/// moved or stored. Unchanged files (device, inode, size, mtime) are not hashed again.
public struct Scanner: Sendable {
    public let library: Library

    public init(library: Library) { self.library = library }

    public func run(root: String, workers: Int = Machine.coreCount, progress: ProgressCounter? = nil) throws(LibraryError) -> ScanSummary {
        let walk = try TreeWalker.walk(root: root, excluding: [library.layout.home])
        var summary = ScanSummary()
        summary.errors = walk.issues
        let files = walk.files.filter { ModelPath.isModelFile($0.relative.last ?? "") && !ModelPath.isPartialDownload($0.relative.last ?? "") }
        summary.files = files.count
        let known: [String: LocalFileRecord]
        do { known = try library.registry.localFilesByPath() } catch { throw .registry(error) }
        let toHash = files.filter { file in
            guard let record = known[file.path], record.matches(file.status) else { return true }
            summary.unchanged += 1
            return false
        }
        progress?.addTotal(bytes: toHash.reduce(0) { $0 + $1.status.size }, files: toHash.count)
        let advance = progress.byteSink
        let results = Parallel.map(toHash, workers: workers) { file -> Result<FileRegistration, FileIssue> in
            defer { progress?.fileDone() }
            do throws(LibraryError) {
                let facts = try HeaderFacts.read(path: file.path, name: file.relative.last ?? "")
                let digest: Digest
                let status: Stat
                do throws(StoreError) { (digest, status) = try FileHasher.hash(path: file.path, progress: advance) } catch { throw .store(error) }
                let local = LocalFileRecord(path: file.path, sha256: digest, status: status, headerSize: facts?.headerSize, tensorCount: facts?.tensorCount)
                return .success(FileRegistration(blob: nil, localFile: local, localMetadata: facts?.metadata ?? [:]))
            } catch {
                return .failure(FileIssue(path: NameError.printable(file.path), message: error.description))
            }
        }
        var registrations: [FileRegistration] = []
        for result in results {
            switch result {
            case let .success(item): registrations.append(item)
            case let .failure(issue): summary.errors.append(issue)
            }
        }
        do { _ = try library.registry.register(registrations) } catch { throw .registry(error) }
        summary.hashed = registrations.count

        // Files an earlier scan of this directory found that are gone now (not merely unreadable).
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        let walked = Set(files.map(\.path))
        let gone = known.keys.filter { path in
            path.hasPrefix(base + "/") && !walked.contains(path) && SystemCalls.isGone(path)
        }
        do {
            try library.registry.deleteLocalFiles(paths: gone)
            try library.registry.linkLocalFiles()
        } catch { throw .registry(error) }
        summary.gone = gone.count
        do { try countDuplicates(of: files.map(\.path).sorted(), under: base, into: &summary) } catch { throw .registry(error) }
        return summary
    }

    /// Duplicates among this scan's files, the files scanned elsewhere and the store.
    private func countDuplicates(of paths: [String], under base: String, into summary: inout ScanSummary) throws(RegistryError) {
        let local = try library.registry.localFilesByPath()
        var byDigest: [Digest: [LocalFileRecord]] = [:]
        for record in local.values { byDigest[record.sha256, default: []].append(record) }
        var seen = try library.registry.digests(state: .present)
        for record in local.values where !record.filePath.hasPrefix(base + "/") { seen.insert(record.sha256) }
        var groups: Set<Digest> = []
        for path in paths {
            guard let record = local[path] else { continue }   // not hashed (an error above)
            if !seen.insert(record.sha256).inserted {
                summary.duplicates += 1
                groups.insert(record.sha256)
            }
        }
        summary.duplicateGroups = try groups.sorted { $0.rawValue < $1.rawValue }.map { digest throws(RegistryError) in
            let records = byDigest[digest] ?? []
            let names = try library.store.contains(digest) ? library.registry.aliases(of: digest).map { "\($0.folder)/\($0.path)" }.sorted() : []
            return DuplicateGroup(sha256: digest.rawValue, size: records.first?.size ?? 0, paths: records.map(\.filePath).sorted(), names: names)
        }
    }
}
