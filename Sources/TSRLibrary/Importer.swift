import Foundation
import TSRRegistry
import TSRStore

/// Options of `tsr import`.
public struct ImportOptions: Sendable {
    /// How files reach the store. The default, `.link`, falls back to a copy across filesystems.
    public var mode: AdoptMode = .link
    /// The mode was asked for explicitly: `--link` then fails across filesystems instead of copying.
    public var modeExplicit = false
    /// Treat the directory itself as this folder key (its files are that folder's entries).
    public var folder: String?
    /// Of a whole models tree, import only these folder keys (`--only`).
    public var only: Set<String>?
    /// Hash and report, change nothing.
    public var dryRun = false
    /// Take every file (sidecars too), not only model extensions.
    public var includeAll = false
    /// Hashing threads.
    public var workers = Machine.coreCount

    public init() {}
}

/// What `tsr import` did (JSON shape documented in docs/CLI.md).
public struct ImportSummary: Sendable, Codable, Equatable {
    /// Files taken into account (model files, or all with --all).
    public var files = 0
    /// Files hashed and committed (or, in a dry run, hashed) in this run.
    public var imported = 0
    /// Files already registered and unchanged: not hashed again.
    public var unchanged = 0
    /// Distinct contents among the files.
    public var uniqueBlobs = 0
    /// Files whose content another file (in this tree or already in the store) has.
    public var duplicates = 0
    /// Bytes that needed no new storage because the content was already stored.
    public var bytesSaved: Int64 = 0
    /// Bytes read and hashed.
    public var bytesHashed: Int64 = 0
    public var aliasesCreated = 0
    /// Aliases that named other content and now name the file's content.
    public var aliasesReplaced = 0
    /// Originals removed (`--move`).
    public var originalsRemoved = 0
    /// Files passed over: not model files (without --all), partial downloads.
    public var skipped = 0
    public var errors: [FileIssue] = []
    public var dryRun = false

    enum CodingKeys: String, CodingKey {
        case files, imported, unchanged, duplicates, skipped, errors
        case uniqueBlobs = "unique_blobs", bytesSaved = "bytes_saved", bytesHashed = "bytes_hashed"
        case aliasesCreated = "aliases_created", aliasesReplaced = "aliases_replaced"
        case originalsRemoved = "originals_removed", dryRun = "dry_run"
    }
}

/// Imports an existing models tree: every file becomes a blob (stored once) and an alias.
///
/// Order of steps per file, so a crash anywhere loses nothing: adopt (hash into the store and
/// commit) → record blob, alias and file in one registry transaction → only then, for `--move`,
/// remove the original (after checking it is still the file that was hashed).
public struct Importer: Sendable {
    public let library: Library

    public init(library: Library) { self.library = library }

    /// A file to import, with the alias it becomes.
    struct Candidate: Sendable {
        var file: FoundFile
        var folder: String
        var aliasPath: String
        var name: String { file.relative.last ?? "" }
    }

    /// The work one file needed, as done by a worker.
    enum Outcome: Sendable {
        case adopted(Candidate, Adopted, HeaderFacts?)
        /// Dry run: hashed only.
        case hashed(Candidate, Digest)
        case failed(Candidate, String)
    }

    public func run(root: String, options: ImportOptions, progress: ProgressCounter? = nil) throws(LibraryError) -> ImportSummary {
        let rootPath = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        var summary = ImportSummary()
        summary.dryRun = options.dryRun
        let fixedFolder: String?
        do {
            fixedFolder = try options.folder.map { (key) throws(NameError) in try ModelPath.validateFolder(key) }
        } catch {
            throw .name(error)
        }
        // The home's own files must never be imported (with --move that would delete blobs).
        let realRoot = (try? SystemCalls.realPath(rootPath)) ?? rootPath
        let realHome = (try? SystemCalls.realPath(library.layout.home)) ?? library.layout.home
        if realRoot == realHome || realRoot.hasPrefix(realHome + "/") {
            throw .invalidArgument("\(rootPath) is inside the tensors home \(library.layout.home); import a models folder from elsewhere")
        }
        var onlyFolders: Set<String>?
        if let only = options.only {
            var valid = Set<String>()
            for key in only {
                do throws(NameError) { valid.insert(try ModelPath.validateFolder(key)) } catch { throw .name(error) }
            }
            onlyFolders = valid
        }
        if fixedFolder != nil, onlyFolders != nil {
            throw .invalidArgument("--folder treats the directory as one folder, --only picks folders of a whole models tree: use one of them")
        }
        // --folder on a whole models tree would import checkpoints/ as checkpoints/checkpoints/…
        if let fixedFolder {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: rootPath)) ?? []
            let keys = entries.filter { entry in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: rootPath + "/" + entry, isDirectory: &isDirectory) && isDirectory.boolValue
                    && (ModelPath.folderKeys.contains(entry) || ["unet", "clip"].contains(entry)) && entry != fixedFolder
            }.sorted()
            if keys.count >= 2 {
                throw .invalidArgument(
                    "\(rootPath) looks like a whole models tree (it has \(keys.prefix(4).map { $0 + "/" }.joined(separator: ", "))\(keys.count > 4 ? " …" : "")): --folder \(fixedFolder) would import them as \(fixedFolder)/\(keys[0])/…; import the tree as it is, or only some of its folders with --only \(fixedFolder)")
            }
        }
        let walk = try TreeWalker.walk(root: rootPath, excluding: [library.layout.home])
        summary.errors += walk.issues

        var candidates: [Candidate] = []
        for file in walk.files {
            let name = file.relative.last ?? ""
            if ModelPath.isPartialDownload(name) || (!options.includeAll && !ModelPath.isModelFile(name)) {
                summary.skipped += 1
                continue
            }
            do throws(NameError) {
                let folder: String
                let parts: [String]
                if let fixedFolder {
                    folder = fixedFolder
                    parts = file.relative
                } else {
                    guard file.relative.count > 1 else {
                        throw NameError.noFolder(name)
                    }
                    folder = try ModelPath.validateFolder(file.relative[0])
                    parts = Array(file.relative.dropFirst())
                    // Folders not asked for are left alone, not counted.
                    if let onlyFolders, !onlyFolders.contains(folder) { continue }
                }
                let aliasPath = try ModelPath.validateRelativePath(parts.joined(separator: "/"))
                candidates.append(Candidate(file: file, folder: folder, aliasPath: aliasPath))
            } catch {
                let message: String
                if case .noFolder = error {
                    message = "not inside a folder: the first directory level is the folder key (checkpoints/, loras/ …); use --folder KEY to import a single folder"
                } else {
                    message = error.description
                }
                summary.errors.append(FileIssue(path: NameError.printable(file.path), message: message))
            }
        }
        summary.files = candidates.count

        let known: [String: LocalFileRecord]
        let aliases: [String: Digest]
        let present: Set<Digest>
        do {
            known = try library.registry.localFilesByPath()
            aliases = try library.registry.aliasDigests()
            present = try library.registry.digests(state: .present)
        } catch {
            throw .registry(error)
        }

        // Split: unchanged (nothing to do), known content (register without hashing), to hash.
        var seen = Set<Digest>()
        var toHash: [Candidate] = []
        var registrations: [(Candidate, FileRegistration, Adopted?)] = []
        for candidate in candidates {
            guard let record = known[candidate.file.path], record.matches(candidate.file.status),
                present.contains(record.sha256), library.store.contains(record.sha256)
            else {
                toHash.append(candidate)
                continue
            }
            let digest = record.sha256
            if !seen.insert(digest).inserted { summary.duplicates += 1 }
            if aliases[candidate.folder + "/" + candidate.aliasPath] == digest {
                summary.unchanged += 1
                if options.mode == .move && !options.dryRun {
                    // A previous --move stopped after registering: finish it.
                    registrations.append((candidate, FileRegistration(blob: nil), nil))
                }
                continue
            }
            summary.unchanged += 1
            let blob = BlobRecord(sha256: digest, size: record.size, state: .present)
            registrations.append((candidate, FileRegistration(blob: blob, alias: (candidate.folder, candidate.aliasPath)), nil))
        }
        if !options.dryRun { try commitBatch(registrations, options: options, summary: &summary) }

        progress?.addTotal(bytes: toHash.reduce(0) { $0 + $1.file.status.size }, files: toHash.count)
        // A duplicate is content seen earlier in this run or stored before it. (Not "deduplicated
        // at commit": with parallel workers the later file in walk order may commit first.)
        func countHashed(_ digest: Digest, size: Int64) {
            summary.imported += 1
            summary.bytesHashed += size
            if !seen.insert(digest).inserted || present.contains(digest) {
                summary.duplicates += 1
                summary.bytesSaved += size
            }
        }
        for batch in Self.batches(toHash) {
            let outcomes = Parallel.map(batch, workers: options.workers) { candidate in
                let outcome = Self.process(candidate, library: library, options: options, progress: progress)
                progress?.fileDone()
                return outcome
            }
            var pending: [(Candidate, FileRegistration, Adopted?)] = []
            for outcome in outcomes {
                switch outcome {
                case let .failed(candidate, message):
                    summary.errors.append(FileIssue(path: NameError.printable(candidate.file.path), message: message))
                case let .hashed(candidate, digest):
                    countHashed(digest, size: candidate.file.status.size)
                case let .adopted(candidate, adopted, facts):
                    let digest = adopted.committed.digest
                    countHashed(digest, size: adopted.committed.size)
                    let blob = BlobRecord(committed: digest, size: adopted.committed.size, facts: facts)
                    let local = LocalFileRecord(
                        path: candidate.file.path, sha256: digest, status: candidate.file.status,
                        headerSize: facts?.headerSize, tensorCount: facts?.tensorCount)
                    pending.append((candidate, FileRegistration(blob: blob, alias: (candidate.folder, candidate.aliasPath), localFile: local), adopted))
                }
            }
            if !options.dryRun { try commitBatch(pending, options: options, summary: &summary) }
        }
        summary.uniqueBlobs = seen.count
        return summary
    }

    /// Groups work so each group is registered (and, with --move, originals removed) before the
    /// next is hashed: an interrupted import keeps what it finished.
    static func batches(_ items: [Candidate]) -> [[Candidate]] {
        var out: [[Candidate]] = []
        var current: [Candidate] = []
        var bytes: Int64 = 0
        for item in items {
            current.append(item)
            bytes += item.file.status.size
            if current.count >= 256 || bytes >= 4 << 30 {
                out.append(current)
                current = []
                bytes = 0
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// One file's work on a worker thread: header check, then adopt (or only hash, dry run).
    static func process(_ candidate: Candidate, library: Library, options: ImportOptions, progress: ProgressCounter?) -> Outcome {
        let advance = progress.byteSink
        do throws(LibraryError) {
            // A file named .safetensors must be one: a broken one is reported, not imported.
            let facts = try HeaderFacts.read(path: candidate.file.path, name: candidate.name)
            if options.dryRun {
                do {
                    let (digest, _) = try FileHasher.hash(path: candidate.file.path, progress: advance)
                    return .hashed(candidate, digest)
                } catch {
                    throw .store(error)
                }
            }
            // A symlinked file is adopted without touching its target: link or copy, never move.
            let mode: AdoptMode = candidate.file.isSymlink && options.mode == .move ? .link : options.mode
            let allowFallback = !(options.modeExplicit && options.mode == .link)
            let adopted: Adopted
            do {
                adopted = try library.store.adopt(path: candidate.file.path, mode: mode, allowCopyFallback: allowFallback, progress: advance)
            } catch {
                throw .store(error)
            }
            if !adopted.source.sameFile(as: candidate.file.status), facts != nil {
                // Replaced between the header check and the hash: read the header of what was stored.
                let stored = try HeaderFacts.read(path: library.layout.blobPath(adopted.committed.digest), name: candidate.name)
                return .adopted(candidate, adopted, stored)
            }
            return .adopted(candidate, adopted, facts)
        } catch {
            return .failed(candidate, error.description)
        }
    }

    /// Records a batch, then (for --move) removes the originals that are now safe to remove.
    func commitBatch(_ items: [(Candidate, FileRegistration, Adopted?)], options: ImportOptions, summary: inout ImportSummary) throws(LibraryError) {
        guard !items.isEmpty else { return }
        let changes: [AliasChange?]
        do {
            changes = try library.registry.register(items.map(\.1))
        } catch {
            throw .registry(error)
        }
        for change in changes {
            switch change {
            case .created?: summary.aliasesCreated += 1
            case .replaced?: summary.aliasesReplaced += 1
            default: break
            }
        }
        guard options.mode == .move else { return }
        var removed: [String] = []
        for (candidate, _, adopted) in items {
            let path = candidate.file.path
            do throws(StoreError) {
                if let adopted {
                    try library.store.removeOriginal(path: path, adopted: adopted)
                } else {
                    // Registered by an earlier run and unchanged since (checked against the hash cache).
                    let now = try SystemCalls.linkStatus(path)
                    guard now.isSymlink || now.sameFile(as: candidate.file.status) else { throw StoreError.changedDuringRead(path: path) }
                    try SystemCalls.remove(path)
                }
                removed.append(path)
                summary.originalsRemoved += 1
            } catch {
                summary.errors.append(FileIssue(path: NameError.printable(path), message: "kept the original: \(error)"))
            }
        }
        do {
            try library.registry.deleteLocalFiles(paths: removed)
        } catch {
            throw .registry(error)
        }
    }
}
