import Foundation
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRWorkflow

/// One dependency of a workflow as `tsr workflow add/show/check` reports it.
public struct WorkflowEntryReport: Sendable, Codable, Equatable {
    public var folder: String
    public var filename: String
    public var sha256: String?
    public var size: Int64?
    /// present | remote | unresolved
    public var state: String
    /// For check: `use_existing` (the folder view's name holds it), `symlink` (it is here under
    /// another name only), `download`; nil for unresolved entries.
    public var action: String?
    public var url: String?
    public var displayName: String?
    public var required: Bool
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case folder, filename, sha256, size, state, action, url, required, note
        case displayName = "display_name"
    }
}

/// The seed's `check-dependencies` answer: what is missing, what is here, what it costs.
public struct WorkflowCheck: Sendable, Codable, Equatable {
    public var missing: [WorkflowEntryReport]
    public var existing: [WorkflowEntryReport]
    /// Bytes still to download (each blob once).
    public var totalDownloadSize: Int64
    /// Bytes already here that the workflow would otherwise download.
    public var totalSavedSize: Int64
    public var problems: [WorkflowProblem]

    enum CodingKeys: String, CodingKey {
        case missing, existing, problems
        case totalDownloadSize = "total_download_size", totalSavedSize = "total_saved_size"
    }
}

/// Adding, checking and pulling workflows: each dependency becomes an entry of
/// `workflows/<name>/<folder>/<name>` and, when the folder view has no different file of that
/// name, a name in the folder view too (so ComfyUI lists it). A name that stands for other
/// content is reported, never silently repointed.
public struct WorkflowService: Sendable {
    public let fetcher: Fetcher
    public var library: Library { fetcher.library }

    public init(fetcher: Fetcher) { self.fetcher = fetcher }

    /// Registers a parsed workflow under `name`: known blobs are used as they are, sources are
    /// asked for digest, size and header (entries they cannot tell stay unresolved, with the
    /// reason). Returns what `check` would say, plus the problems met.
    public func add(_ parsed: ParsedWorkflow, name: String, replace: Bool) throws(FetchError) -> WorkflowCheck {
        var problems = parsed.problems
        var records: [WorkflowEntryRecord] = []
        for dependency in parsed.dependencies {
            let label = "\(dependency.folder ?? "?")/\(dependency.name)"
            let (folder, digest, size, url, note) = resolve(dependency, problems: &problems)
            guard let folder else {
                problems.append(WorkflowProblem(entry: label, message: note ?? "no folder"))
                continue
            }
            records.append(WorkflowEntryRecord(
                folder: folder, path: dependency.name, sha256: digest, size: size, url: url, displayName: dependency.displayName,
                required: dependency.required, note: note, authProvider: dependency.authProvider))
            guard let digest else { continue }
            // The folder view: add the name unless it stands for other content.
            do {
                let change = try library.registry.addAlias(folder: folder, path: dependency.name, sha256: digest, replace: false)
                if case let .conflict(existing) = change {
                    problems.append(WorkflowProblem(
                        entry: "\(folder)/\(dependency.name)",
                        message: "the folder view's \(folder)/\(dependency.name) is other content (\(existing.short)…); this workflow's file is only in workflows/\(name)/"))
                }
            } catch {
                throw .registry(error)
            }
        }
        do {
            try library.registry.saveWorkflow(name: name, format: parsed.format.rawValue, entries: records, replace: replace)
        } catch {
            throw .registry(error)
        }
        var result = try check(name: name)
        result.problems = problems + result.problems
        return result
    }

    /// Folder, digest, size, URL and note of one dependency.
    private func resolve(_ dependency: WorkflowDependency, problems: inout [WorkflowProblem]) -> (String?, Digest?, Int64?, String?, String?) {
        let registry = library.registry
        let url = dependency.urls.first.map(Redact.storable)
        // API format: no folder, so the registry's names decide.
        guard let folder = dependency.folder else {
            let matches = (try? registry.aliases(path: dependency.name)) ?? []
            guard let match = matches.first else {
                return (nil, nil, nil, nil, "no folder says where \(dependency.name) goes and no registered file has that name; add it with `tsr add`")
            }
            return (match.folder, match.sha256, try? registry.blob(match.sha256)?.size, nil, nil)
        }
        if let digest = dependency.sha256, let blob = try? registry.blob(digest) {
            if let url { try? registry.addSource(digest, url: url, kind: (try? SourceSpec.parse(url).0.kind) ?? "url") }
            return (folder, digest, blob.size, url, nil)
        }
        var lastError: String?
        for candidate in dependency.urls {
            do {
                let (spec, _) = try SourceSpec.parse(candidate, settings: fetcher.settings)
                let file = try fetcher.resolver.resolve(spec)
                if let expected = dependency.sha256, let told = file.digest, told != expected {
                    lastError = "\(Redact.url(candidate)) serves \(told), the workflow expects \(expected)"
                    continue
                }
                guard let digest = dependency.sha256 ?? file.digest, let size = file.size ?? dependency.size else {
                    return (folder, nil, file.size, Redact.storable(candidate), "the source does not tell its SHA-256; `tsr workflow pull` downloads it and trusts those bytes")
                }
                if let expected = dependency.size, expected != size {
                    lastError = "\(Redact.url(candidate)) has \(size) bytes, the workflow expects \(expected)"
                    continue
                }
                try library.registerRemoteBlob(digest: digest, size: size, name: dependency.name, url: file.canonicalURL, kind: spec.kind, prefix: file.prefix)
                return (folder, digest, size, file.canonicalURL, nil)
            } catch {
                lastError = "\(error)"
            }
        }
        // Offline, or the sources failed: a digest and size from the workflow are enough to
        // register the file (its header comes with the download).
        if let digest = dependency.sha256, let size = dependency.size, let url {
            do {
                try library.registerRemoteBlob(digest: digest, size: size, name: dependency.name, url: url, kind: (try? SourceSpec.parse(url).0.kind) ?? "url", prefix: nil)
                return (folder, digest, size, url, lastError.map { "registered from the workflow's hash and size; the source said: \($0)" })
            } catch {
                lastError = "\(error)"
            }
        }
        // A name the folder view already has: the workflow means that file.
        if dependency.sha256 == nil, dependency.urls.isEmpty, let alias = try? registry.alias(folder: folder, path: dependency.name) {
            return (folder, alias.sha256, try? registry.blob(alias.sha256)?.size, nil, nil)
        }
        return (folder, nil, dependency.size, url, lastError ?? (dependency.urls.isEmpty ? "not in the registry and the workflow gives no URL" : nil))
    }

    /// Missing and existing entries of a stored workflow, with sizes.
    public func check(name: String) throws(FetchError) -> WorkflowCheck {
        let entries: [WorkflowEntryStatus]
        do { (_, entries) = try library.registry.workflow(named: name) } catch { throw .registry(error) }
        return Self.summarise(entries.map { status in
            report(folder: status.entry.folder, name: status.entry.path, digest: status.entry.sha256, size: status.blobSize ?? status.entry.size,
                   state: status.state, folderAlias: status.folderAlias, url: status.entry.url, displayName: status.entry.displayName,
                   required: status.entry.required, note: status.state == .present ? nil : status.entry.note)
        }, problems: [])
    }

    /// What a workflow file needs, checked against the registry only (no network, nothing stored).
    public func check(_ parsed: ParsedWorkflow) -> WorkflowCheck {
        let registry = library.registry
        var reports: [WorkflowEntryReport] = []
        var problems = parsed.problems
        for dependency in parsed.dependencies {
            var folder = dependency.folder
            var digest = dependency.sha256
            if folder == nil {
                guard let match = (try? registry.aliases(path: dependency.name))?.first else {
                    problems.append(WorkflowProblem(entry: "?/\(dependency.name)", message: "no folder says where it goes and no registered file has that name"))
                    continue
                }
                folder = match.folder
                digest = match.sha256
            }
            guard let folder else { continue }
            let alias = try? registry.alias(folder: folder, path: dependency.name)
            // No hash: a URL recorded as a blob's source names exactly that file; a bare name
            // means whatever the folder view holds under it.
            if digest == nil {
                let canonical = dependency.urls.compactMap { try? SourceSpec.parse($0, settings: fetcher.settings).0.canonicalURL }
                digest = canonical.lazy.compactMap { try? registry.blob(sourceURL: $0) }.first ?? (dependency.urls.isEmpty ? alias?.sha256 : nil)
            }
            let blob = digest.flatMap { try? registry.blob($0) }
            reports.append(report(
                folder: folder, name: dependency.name, digest: digest, size: blob?.size ?? dependency.size, state: blob?.state,
                folderAlias: alias?.sha256, url: dependency.urls.first.map(Redact.storable), displayName: dependency.displayName,
                required: dependency.required, note: digest == nil && alias != nil ? "the folder view has a file of this name; without a hash tensors cannot tell whether it is the same" : nil))
        }
        return Self.summarise(reports, problems: problems)
    }

    /// The same check after asking the sources of entries without a hash for their digest and
    /// size (HEAD or a small range read each); nothing is stored. Entries whose sources do not
    /// answer stay as the registry alone sees them.
    public func check(_ parsed: ParsedWorkflow, resolvingSources: Bool) -> WorkflowCheck {
        guard resolvingSources else { return check(parsed) }
        var resolved = parsed
        for index in resolved.dependencies.indices where resolved.dependencies[index].sha256 == nil {
            for url in resolved.dependencies[index].urls {
                guard let (spec, _) = try? SourceSpec.parse(url, settings: fetcher.settings),
                    let file = try? fetcher.resolver.resolve(spec, readPrefix: false)
                else { continue }
                resolved.dependencies[index].sha256 = file.digest
                resolved.dependencies[index].size = resolved.dependencies[index].size ?? file.size
                break
            }
        }
        return check(resolved)
    }

    private func report(
        folder: String, name: String, digest: Digest?, size: Int64?, state: BlobState?, folderAlias: Digest?, url: String?,
        displayName: String?, required: Bool, note: String?
    ) -> WorkflowEntryReport {
        let present = state == .present
        var action: String?
        if digest != nil {
            action = present ? (folderAlias == digest ? "use_existing" : "symlink") : "download"
        }
        return WorkflowEntryReport(
            folder: folder, filename: name, sha256: digest?.rawValue, size: size, state: digest == nil ? "unresolved" : (present ? "present" : "remote"),
            action: action, url: url, displayName: displayName, required: required, note: note)
    }

    static func summarise(_ reports: [WorkflowEntryReport], problems: [WorkflowProblem]) -> WorkflowCheck {
        let missing = reports.filter { $0.state != "present" }
        let existing = reports.filter { $0.state == "present" }
        var seen = Set<String>()
        var download: Int64 = 0
        for entry in missing {
            guard let size = entry.size else { continue }
            if let sha = entry.sha256 { guard seen.insert(sha).inserted else { continue } }
            download += size
        }
        let saved = existing.reduce(Int64(0)) { $0 + ($1.size ?? 0) }
        return WorkflowCheck(missing: missing, existing: existing, totalDownloadSize: download, totalSavedSize: saved, problems: problems)
    }

    /// One thing `pull` has to do for a workflow.
    public enum PullItem: Sendable {
        /// A resolved entry whose bytes are not here.
        case blob(Digest, label: String)
        /// An entry whose source does not tell its digest: downloaded and trusted.
        case trusted(entryId: Int64, url: String, folder: String, path: String, label: String)
    }

    /// The services whose keys the workflow says its missing files need (the seed format's
    /// `requires_auth` / `auth_provider`), so a key can be asked for before anything starts.
    public func keysNeeded(name: String) throws(FetchError) -> Set<String> {
        let entries: [WorkflowEntryStatus]
        do { (_, entries) = try library.registry.workflow(named: name) } catch { throw .registry(error) }
        return Set(entries.filter { $0.state != .present }.compactMap(\.entry.authProvider))
    }

    /// What `pull` has to download for a stored workflow (each blob once).
    public func pullPlan(name: String) throws(FetchError) -> (items: [PullItem], unresolved: [String]) {
        let entries: [WorkflowEntryStatus]
        do { (_, entries) = try library.registry.workflow(named: name) } catch { throw .registry(error) }
        var items: [PullItem] = []
        var unresolved: [String] = []
        var seen = Set<Digest>()
        for status in entries {
            let label = "\(status.entry.folder)/\(status.entry.path)"
            if let digest = status.entry.sha256 {
                if status.state != .present, seen.insert(digest).inserted { items.append(.blob(digest, label: label)) }
            } else if let url = status.entry.url, let id = status.entry.id {
                items.append(.trusted(entryId: id, url: url, folder: status.entry.folder, path: status.entry.path, label: label))
            } else {
                unresolved.append("\(label): \(status.entry.note ?? "unresolved")")
            }
        }
        return (items, unresolved)
    }

    /// Downloads one item of a plan; returns the committed blob.
    public func pull(_ item: PullItem, progress: DownloadProgress?, cancel: Cancellation? = nil) throws(FetchError) -> Committed {
        switch item {
        case let .blob(digest, _):
            let committed = try fetcher.fetch(digest, progress: progress, cancel: cancel)
            do { try library.registry.clearWorkflowNotes(sha256: digest) } catch { throw .registry(error) }
            return committed
        case let .trusted(id, url, folder, path, _):
            let (spec, _) = try SourceSpec.parse(url, settings: fetcher.settings)
            let file = try fetcher.resolver.resolve(spec, readPrefix: false)
            let committed = try fetcher.download(file, progress: progress, cancel: cancel)
            do {
                try library.registry.addSource(committed.digest, url: file.canonicalURL, kind: spec.kind)
                try library.registry.resolveWorkflowEntry(id: id, sha256: committed.digest, size: committed.size)
                _ = try library.registry.addAlias(folder: folder, path: path, sha256: committed.digest, replace: false)
            } catch {
                throw .registry(error)
            }
            return committed
        }
    }
}

extension WorkflowService.PullItem {
    public var label: String {
        switch self {
        case let .blob(_, label), let .trusted(_, _, _, _, label): return label
        }
    }
}
