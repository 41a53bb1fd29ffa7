import Foundation
import TSRRegistry
import TSRStore

/// One blob's verification result.
public struct VerifyReport: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable { case ok, corrupt, missing, unknown }
    public var sha256: String
    public var status: Status
    /// True when the blob is intact.
    public var isOK: Bool {
        switch status {
        case .ok: return true
        case .corrupt, .missing, .unknown: return false
        }
    }
    /// For corrupt blobs: what the bytes hash to.
    public var actual: String?
    /// For corrupt blobs: where the bytes were moved.
    public var quarantinedAt: String?

    enum CodingKeys: String, CodingKey {
        case sha256, status, actual
        case quarantinedAt = "quarantined_at"
    }
}

/// What `tsr gc` removed (or would remove, in a dry run).
public struct GCReport: Sendable, Codable, Equatable {
    /// Blobs no alias names: file and registry row removed.
    public var blobs: [String] = []
    public var bytesFreed: Int64 = 0
    /// Blob files on disk the registry does not know (left by a crash before registration).
    public var orphanFiles: [String] = []
    /// Temp files of writers that are gone.
    public var tempFiles: [String] = []
    /// Stopped downloads of files no registered entry waits for.
    public var partialDownloads: [String] = []
    /// Bytes that failed verification, kept in quarantine/ past their age (or all of them).
    public var quarantinedFiles: [String] = []
    public var dryRun = false

    enum CodingKeys: String, CodingKey {
        case blobs
        case bytesFreed = "bytes_freed", orphanFiles = "orphan_files", tempFiles = "temp_files", dryRun = "dry_run"
        case partialDownloads = "partial_downloads", quarantinedFiles = "quarantined_files"
    }
}

/// Verification and garbage collection.
public struct Maintenance: Sendable {
    public let library: Library

    public init(library: Library) { self.library = library }

    /// Records a blob verified, under its shared lock and only while its file is still linked: an
    /// eviction between the hashing and now must not be undone (a name called present without
    /// its bytes).
    func markVerifiedIfStored(_ digest: Digest) throws {
        let path = library.layout.blobPath(digest)
        guard let fd = try? SystemCalls.openForReading(path) else { return }
        defer { try? fd.close() }
        SystemCalls.shareLockWaiting(fd)
        guard let status = try? SystemCalls.status(of: fd, path: path), status.linkCount > 0 else { return }
        try library.registry.markVerified(digest)
    }

    /// Re-hashes blobs (all present ones when `digests` is empty). A mismatch is quarantined in
    /// the store and marked in the registry, so no reader is served the bad bytes.
    public func verify(_ digests: [Digest], workers: Int = Machine.coreCount, progress: ProgressCounter? = nil) throws(LibraryError) -> [VerifyReport] {
        let targets: [Digest]
        do {
            if digests.isEmpty {
                targets = try library.registry.blobs(state: .present).map(\.sha256)
            } else {
                targets = digests
            }
        } catch {
            throw .registry(error)
        }
        progress?.addTotal(bytes: targets.reduce(0) { $0 + (library.store.size(of: $1) ?? 0) }, files: targets.count)
        let advance = progress.byteSink
        let store = library.store
        let outcomes = Parallel.map(targets, workers: workers) { digest -> Result<VerifyOutcome, StoreError> in
            defer { progress?.fileDone() }
            return Result { () throws(StoreError) in try store.verify(digest, progress: advance) }
        }
        var reports: [VerifyReport] = []
        for (digest, outcome) in zip(targets, outcomes) {
            try wrappingErrors {
                let known = try library.registry.blob(digest) != nil
                switch outcome {
                case .success(.intact):
                    // Verifying is read-only work: a full disk only keeps its time from being
                    // recorded.
                    do {
                        if known { try markVerifiedIfStored(digest) }
                    } catch RegistryError.full {
                    }
                    reports.append(VerifyReport(sha256: digest.rawValue, status: known ? .ok : .unknown))
                case let .success(.corrupt(actual, aside)):
                    if known { try library.registry.setState(digest, .quarantined) }
                    reports.append(VerifyReport(sha256: digest.rawValue, status: .corrupt, actual: actual.rawValue, quarantinedAt: aside))
                case .success(.missing):
                    // The bytes are gone: the entry stays, as one whose bytes are not local.
                    if known { try library.registry.setState(digest, .remote) }
                    reports.append(VerifyReport(sha256: digest.rawValue, status: known ? .missing : .unknown))
                case let .failure(error):
                    throw LibraryError.store(error)
                }
            }
        }
        return reports
    }

    /// Removes blobs no alias names, blob files the registry does not know (older than an hour,
    /// so an import that has committed but not yet registered is left alone), stale temp files
    /// and stopped downloads no remote entry waits for.
    /// How long quarantined bytes are kept for inspection before `tsr gc` removes them.
    public static let quarantineAge: Int64 = 7 * 24 * 3600

    /// `quarantineAge` (seconds): quarantined files older than this go; 0 removes them all.
    public func collectGarbage(dryRun: Bool, quarantineAge: Int64 = Maintenance.quarantineAge) throws(LibraryError) -> GCReport {
        var report = GCReport()
        report.dryRun = dryRun
        try wrappingErrors {
            for blob in try library.registry.unreferencedBlobs() {
                let size = library.store.size(of: blob.sha256) ?? 0
                if !dryRun {
                    // Row first: a crash after it leaves an orphan file that the next gc removes.
                    guard try library.registry.deleteBlobIfUnreferenced(blob.sha256) else { continue }
                    if library.store.contains(blob.sha256) { try library.store.remove(blob.sha256) }
                }
                report.blobs.append(blob.sha256.rawValue)
                report.bytesFreed += size
            }
            let registered = Set(try library.registry.blobs().map(\.sha256))
            let cutoff = Clock.nowNs() - 3600 * 1_000_000_000
            for (digest, status) in try library.store.blobsOnDisk() where !registered.contains(digest) && status.ctimeNs < cutoff {
                if !dryRun { try library.store.remove(digest) }
                report.orphanFiles.append(digest.rawValue)
                report.bytesFreed += status.size
            }
            // Change-log rows older than an hour: no live mount needs them.
            if !dryRun { try library.registry.pruneMountChanges() }
            let stale = try library.store.staleTempFiles()
            if !dryRun { for path in stale { try? SystemCalls.remove(path) } }
            report.tempFiles = stale
            // A stopped download is kept while a remote entry waits for its bytes (it resumes);
            // anything else (the name was removed, a trusted download by URL) goes.
            let waiting = Set(try library.registry.blobs(state: .remote).map(\.sha256.rawValue))
            for partial in try library.store.idlePartials() where !waiting.contains(partial.key) {
                if !dryRun {
                    library.store.discardPartial(partial.key)
                    try library.registry.removePartialDownload(partial.key)
                }
                report.partialDownloads.append(partial.path)
                report.bytesFreed += partial.size
            }
            let quarantineCutoff = quarantineAge == 0 ? Int64.max : Clock.nowNs() - quarantineAge * 1_000_000_000
            for file in try library.store.quarantinedFiles() where file.mtimeNs < quarantineCutoff {
                if !dryRun { try SystemCalls.remove(file.path) }
                report.quarantinedFiles.append(file.path)
                report.bytesFreed += file.size
            }
        }
        return report
    }
}
