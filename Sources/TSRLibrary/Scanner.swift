import TSRRegistry
import TSRStore

/// What `tsr db scan` did.
public struct ScanSummary: Sendable, Codable, Equatable {
    public var files = 0
    public var hashed = 0
    public var unchanged = 0
    public var errors: [FileIssue] = []
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
                let status: FileStatus
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
        return summary
    }
}
