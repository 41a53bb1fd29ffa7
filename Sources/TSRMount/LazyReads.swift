import FUSE
import Foundation
import SystemPackage
import TSRRegistry
import TSRStore

/// What the mount asks for when a file's bytes are not local: make the blob present in the store
/// (download, verify, commit). The fetch engine implements it; tests use doubles.
public protocol BlobFetcher: Sendable {
    /// Blocks until the blob is committed to the store, or throws why it cannot be. Called on a
    /// thread of its own (never on Swift's cooperative pool, never on a FUSE worker).
    func fetch(_ digest: Digest, size: Int64) throws
    /// Whether `error` says the source served other bytes than the digest names (then the
    /// stored header region may be wrong too, and is dropped).
    func isWrongBytes(_ error: any Error) -> Bool
}

extension BlobFetcher {
    public func isWrongBytes(_ error: any Error) -> Bool { false }
}

/// Reads of files whose bytes are not local: they park their request (holding no FUSE worker
/// thread), one fetch runs per digest whatever the number of readers, and the fetch's completion
/// answers every parked read (§3). Reads inside the header region are answered from it without a
/// download; a download that failed is not tried again until its back-off has passed.
extension MountCore {
    struct ParkedRead: Sendable {
        let request: any Replier
        let handle: UInt64
        let offset: Int64
        let size: Int
    }

    /// A read on a `.remote` handle.
    public func readRemote(_ request: any Replier, digest: Digest, handle: UInt64, size: Int, offset: Int64) {
        // Here (downloaded by another process, or by this mount for another handle): served
        // from the blob, unless it was evicted again meanwhile.
        if library.store.contains(digest), upgradeAndServe(ParkedRead(request: request, handle: handle, offset: offset, size: size), digest: digest) {
            return
        }
        let (expected, region) = remoteFacts(digest)
        let end = offset + Int64(size)
        if expected > 0 && offset >= expected { return request.reply(bytes: []) }
        if let prefix = region {
            if expected > 0 && Int64(prefix.count) >= expected {
                // The whole file, kept unverified by an older registration: verified now, never
                // served as it is.
                if adoptWholePrefix(prefix, digest: digest, size: expected),
                    upgradeAndServe(ParkedRead(request: request, handle: handle, offset: offset, size: size), digest: digest)
                {
                    return
                }
                return request.reply(error: .ioError)
            }
            // Inside the header region (§3): answered without a download.
            if end <= Int64(prefix.count) {
                return request.reply(bytes: Array(prefix[Int(offset)..<Int(end)]))
            }
        }
        guard let fetcher else {
            return request.reply(error: .ioError)
        }
        // The last download failed: EIO at once until its back-off has passed, instead of a new
        // transfer for every read and page fault.
        let running = fetches.withLock { $0.running.contains(digest) }
        if !running, let failure = try? library.registry.fetchFailure(digest), failure.nextTryAt > Date() {
            return request.reply(error: .ioError)
        }
        let parked = ParkedRead(request: request, handle: handle, offset: offset, size: size)
        let start = fetches.withLock { table -> Bool in
            let isNew = !table.running.contains(digest)
            if isNew { table.running.insert(digest) }
            table.parked[digest, default: []].append(parked)
            return isNew
        }
        // An interrupted reader (a signal, SIGKILL) is answered EINTR now; the download goes on.
        // Registered after parking, so a reader interrupted already is answered at once.
        request.onInterrupt { [weak self, weak request] in
            guard let self, let request else { return }
            let removed = self.fetches.withLock { table -> Bool in
                guard let index = table.parked[digest]?.firstIndex(where: { $0.request === request }) else { return false }
                table.parked[digest]?.remove(at: index)
                return true
            }
            if removed { request.reply(error: .interrupted) }
        }
        guard start else { return }
        startDownload(digest, size: expected, fetcher: fetcher, attempt: 1)
    }

    /// How often a download is started again when its blob was evicted before the reads parked
    /// on it could be served (a cache too small for what is being read at once).
    static let evictedRefetches = 3

    /// A thread per download: fetching blocks on the network, and its completion does file and
    /// registry I/O; neither may occupy FUSE workers or Swift's small cooperative pool.
    func startDownload(_ digest: Digest, size expected: Int64, fetcher: any BlobFetcher, attempt: Int) {
        let thread = Thread { [self] in
            let outcome: Result<Void, any Error>
            do {
                try fetcher.fetch(digest, size: expected)
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            self.finishDownload(digest, outcome: outcome, attempt: attempt)
        }
        thread.name = "tsr-fetch-\(digest.short)"
        thread.start()
    }

    /// The exact size and stored header region (nil: none) of a blob that is not here, read from
    /// the registry once and cached for the reads that follow one another through the file (the
    /// kernel asks 128 KiB at a time; no registry query per read).
    func remoteFacts(_ digest: Digest) -> (size: Int64, region: [UInt8]?) {
        if let cached = fetches.withLock({ $0.remotes[digest] }) { return cached }
        let facts = (size: expectedSize(digest), region: (try? library.registry.prefix(digest)) ?? nil)
        fetches.withLock { table in
            if table.remotes.count >= 16 { table.remotes.removeAll() }
            table.remotes[digest] = facts
        }
        return facts
    }

    /// Commits a whole file kept as a prefix if it hashes to `digest`; otherwise records the
    /// failure (the bytes are dropped and fetched again, checked, from the source).
    func adoptWholePrefix(_ prefix: [UInt8], digest: Digest, size: Int64) -> Bool {
        let whole = Array(prefix.prefix(Int(size)))
        do {
            let actual = try SHA256Hasher.digest(whole)
            guard actual == digest else {
                let reason = "the bytes registered for it hash to \(actual.rawValue), not \(digest.rawValue)"
                logger.error("\(digest.short): \(reason); dropped")
                forgetHeaderRegion(digest)
                _ = try? library.registry.recordFetchFailure(digest, reason: reason, base: settings.retryBackoff, cap: settings.retryBackoffMax)
                return false
            }
            _ = try library.store.put(whole, expected: digest)
            try library.markDownloaded(Committed(digest: digest, size: size, deduplicated: false))
            fetches.withLock { _ = $0.remotes.removeValue(forKey: digest) }
            try rebuild()
            return true
        } catch {
            logger.error("committing the registered bytes of \(digest.short): \(error)")
            return library.store.contains(digest)
        }
    }

    /// Drops a header region that may be wrong (its download failed verification).
    func forgetHeaderRegion(_ digest: Digest) {
        fetches.withLock { _ = $0.remotes.removeValue(forKey: digest) }
        do { try library.registry.dropPrefix(digest) } catch { logger.error("dropping the header region of \(digest.short): \(error)") }
    }

    /// The size the registry gives a blob (0 if unknown).
    func expectedSize(_ digest: Digest) -> Int64 {
        (try? library.registry.blob(digest))?.size ?? 0
    }

    /// The fetch of `digest` ended: mark it present (or record the failure and its back-off)
    /// and answer every parked read. A commit drops the kernel's cached pages of every file
    /// showing the blob, so later reads (mmap included) come from the verified blob; the header
    /// region served before is compared with it.
    func finishDownload(_ digest: Digest, outcome: Result<Void, any Error>, attempt: Int = 1) {
        var failure: String?
        let served = fetches.withLock { $0.remotes[digest]?.region }
        if case .success = outcome, !library.store.contains(digest), attempt <= Self.evictedRefetches, let fetcher {
            // Evicted again between its commit and these reads (the bounded cache made room for
            // another download): fetched once more for the reads still parked on it.
            logger.notice("\(digest.short) was evicted before the reads waiting for it were served; fetching it again")
            return startDownload(digest, size: expectedSize(digest), fetcher: fetcher, attempt: attempt + 1)
        }
        switch outcome {
        case .success where library.store.contains(digest):
            do {
                try library.registry.setState(digest, .present)
                try rebuild()
            } catch {
                logger.error("recording download of \(digest.short): \(error)")
            }
        case .success:
            failure = "the download finished but the blob was evicted again before it could be read, \(Self.evictedRefetches + 1) times: the cache limit is too small for what is being read at once"
        case let .failure(error):
            failure = "\(error)"
            if fetcher?.isWrongBytes(error) == true { forgetHeaderRegion(digest) }
        }
        if let failure {
            do {
                let recorded = try library.registry.recordFetchFailure(digest, reason: failure, base: settings.retryBackoff, cap: settings.retryBackoffMax)
                logger.error("download of \(digest.short) failed: \(failure); reads answer EIO until \(recorded.summary.split(separator: ",").last ?? "") (`tsr pull` tries now)")
            } catch {
                logger.error("download of \(digest.short) failed: \(failure) (recording it failed: \(error))")
            }
        }
        let parked = fetches.withLock { table -> [ParkedRead] in
            table.running.remove(digest)
            if failure == nil { table.remotes[digest] = nil }
            return table.parked.removeValue(forKey: digest) ?? []
        }
        var lost: [ParkedRead] = []
        for read in parked {
            if failure != nil {
                read.request.reply(error: .ioError)
            } else if !upgradeAndServe(read, digest: digest) {
                lost.append(read)
            }
        }
        if !lost.isEmpty {
            // Evicted while these were being answered: they wait for the next download.
            let restart = fetches.withLock { table -> Bool in
                table.parked[digest, default: []] += lost
                let isNew = !table.running.contains(digest)
                if isNew { table.running.insert(digest) }
                return isNew
            }
            if restart, let fetcher { startDownload(digest, size: expectedSize(digest), fetcher: fetcher, attempt: attempt + 1) }
        }
        guard failure == nil else { return }
        if let served, let note = compareServed(served, digest: digest) {
            logger.warning("\(digest.short): \(note)")
            fetches.withLock { $0.notes[digest] = note }
        }
        // After the parked reads are answered (their pages are locked until then): drop every
        // cached page of the files showing this blob, from the notifier's thread.
        let inodes = names.withLock { names in
            names.known.entries.compactMap { $0.value.node.file?.sha256 == digest ? $0.key : nil }
        }
        sendNow(inodes.map { .content($0) })
    }

    /// nil when the header region served before the download is the blob's first bytes; else
    /// what differs.
    func compareServed(_ served: [UInt8], digest: Digest) -> String? {
        guard let fd = try? SystemCallsBridge.openBlob(store: library.store, digest: digest) else { return nil }
        defer { try? fd.close() }
        var bytes = [UInt8](repeating: 0, count: served.count)
        let n = (try? bytes.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }) ?? 0
        if n == served.count && bytes == served { return nil }
        let at = (0..<min(n, served.count)).first { bytes[$0] != served[$0] } ?? min(n, served.count)
        return "the header region served before the download differs from the verified bytes at byte \(at); cached pages were dropped, reads now come from the verified blob"
    }

    /// Turns a `.remote` handle into a `.blob` one now that the bytes are here, and answers the
    /// read. False, without an answer, when the blob is gone again (evicted meanwhile).
    @discardableResult
    func upgradeAndServe(_ read: ParkedRead, digest: Digest) -> Bool {
        do {
            let fd: FileDescriptor
            do {
                fd = try SystemCallsBridge.openBlob(store: library.store, digest: digest)
            } catch let error as StoreError {
                if case let .io(_, _, code) = error, code == .noSuchFileOrDirectory { return false }
                throw error
            }
            let kept = handles.withLock { table -> FileDescriptor in
                if case let .blob(existing, _)? = table.handles[read.handle] { return existing }
                table.handles[read.handle] = .blob(fd, digest)
                return fd
            }
            if kept != fd { try? fd.close() }
            try readBuffers.with(read.size) { buffer in
                var filled = 0
                while filled < read.size {
                    let n = try kept.read(fromAbsoluteOffset: read.offset + Int64(filled), into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
                    if n == 0 { break }
                    filled += n
                }
                read.request.reply(bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<filled]))
            }
        } catch {
            read.request.reply(error: ErrnoMapping.errno(for: error))
        }
        return true
    }

    /// `user.tsr.state` of a file: writing, fetching, failed, or the registry's state —
    /// `quarantined` only once no cached page of the damaged bytes is left (§3).
    func stateName(_ file: FileNode, inode: Inode) -> String {
        if file.pending { return "writing" }
        if file.state == .quarantined, names.withLock({ $0.quarantineUnflushed.contains(inode) }) {
            return BlobState.present.rawValue
        }
        guard let digest = file.sha256, file.state == .remote else { return file.state.rawValue }
        if library.store.contains(digest) { return BlobState.present.rawValue }
        if fetches.withLock({ $0.running.contains(digest) }) { return "fetching" }
        if (try? library.registry.fetchFailure(digest)) != nil { return "failed" }
        return "remote"
    }

    /// `user.tsr.error` of a file: why its last download failed and when it is tried again, or
    /// what its verified bytes showed about the header region served before.
    func errorText(_ file: FileNode) -> String? {
        guard let digest = file.sha256 else { return nil }
        // Only a file whose bytes are not here can have a failed download (listxattr asks this of
        // every file: present ones cost no query).
        if file.state == .remote, !library.store.contains(digest), let failure = try? library.registry.fetchFailure(digest) {
            return failure.summary
        }
        return fetches.withLock { $0.notes[digest] }
    }
}
