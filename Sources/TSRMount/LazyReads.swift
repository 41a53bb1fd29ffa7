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
}

/// Reads of files whose bytes are not local: they park their request (holding no FUSE worker
/// thread), one fetch runs per digest whatever the number of readers, and the fetch's completion
/// answers every parked read (§3).
extension TensorsFileSystem {
    struct ParkedRead: @unchecked Sendable {
        // @unchecked: Request is Sendable; the rest are values.
        let request: Request
        let handle: UInt64
        let offset: Int64
        let size: Int
    }

    /// A read on a `.remote` handle.
    func readRemote(_ request: Request, digest: Digest, handle: UInt64, size: Int, offset: Int64) {
        if library.store.contains(digest) {
            return upgradeAndServe(ParkedRead(request: request, handle: handle, offset: offset, size: size), digest: digest)
        }
        // Inside the stored prefix (the safetensors header): answered without a download (§3).
        let end = offset + Int64(size)
        if let prefix = try? library.registry.prefix(digest), end <= Int64(prefix.count) || Int64(prefix.count) == expectedSize(digest) {
            let from = Int(min(offset, Int64(prefix.count)))
            let to = Int(min(end, Int64(prefix.count)))
            return request.reply(bytes: Array(prefix[from..<to]))
        }
        guard let fetcher else {
            return request.reply(error: .io)
        }
        let parked = ParkedRead(request: request, handle: handle, offset: offset, size: size)
        let start = state.withLock { state -> Bool in
            let isNew = !state.fetching.contains(digest)
            if isNew { state.fetching.insert(digest) }
            state.downloads[digest, default: []].append(parked)
            state.failures[digest] = nil
            return isNew
        }
        // An interrupted reader (a signal, SIGKILL) is answered EINTR now; the download goes on.
        // Registered after parking, so a reader interrupted already is answered at once.
        request.onInterrupt { [weak self, weak request] in
            guard let self, let request else { return }
            let removed = self.state.withLock { state -> Bool in
                guard let index = state.downloads[digest]?.firstIndex(where: { $0.request === request }) else { return false }
                state.downloads[digest]?.remove(at: index)
                return true
            }
            if removed { request.reply(error: .interrupted) }
        }
        guard start else { return }
        let expected = expectedSize(digest)
        // A thread per download: fetching blocks on the network, and its completion does file and
        // registry I/O; neither may occupy FUSE workers or Swift's small cooperative pool.
        let thread = Thread { [self] in
            let outcome: Result<Void, any Error>
            do {
                try fetcher.fetch(digest, size: expected)
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            self.finishDownload(digest, outcome: outcome)
        }
        thread.name = "tsr-fetch-\(digest.short)"
        thread.start()
    }

    /// The size the registry gives a blob (0 if unknown).
    func expectedSize(_ digest: Digest) -> Int64 {
        (try? library.registry.blob(digest))?.size ?? 0
    }

    /// The fetch of `digest` ended: mark it present (or failed) and answer every parked read.
    func finishDownload(_ digest: Digest, outcome: Result<Void, any Error>) {
        var failure: String?
        switch outcome {
        case .success where library.store.contains(digest):
            do {
                try library.registry.setState(digest, .present)
                try rebuild()
            } catch {
                logger.error("recording download of \(digest.short): \(error)")
            }
        case .success:
            failure = "the download finished but the blob is not in the store"
        case let .failure(error):
            failure = "\(error)"
        }
        let parked = state.withLock { state -> [ParkedRead] in
            if let failure { state.failures[digest] = failure }
            state.fetching.remove(digest)
            return state.downloads.removeValue(forKey: digest) ?? []
        }
        for read in parked {
            if failure != nil {
                read.request.reply(error: .io)
            } else {
                upgradeAndServe(read, digest: digest)
            }
        }
        if let failure { logger.error("download of \(digest.short) failed: \(failure)") }
    }

    /// Turns a `.remote` handle into a `.blob` one now that the bytes are here, and answers the read.
    func upgradeAndServe(_ read: ParkedRead, digest: Digest) {
        do {
            let fd = try SystemCallsBridge.openBlob(store: library.store, digest: digest)
            let kept = state.withLock { state -> FileDescriptor in
                if case let .blob(existing, _)? = state.handles[read.handle] { return existing }
                state.handles[read.handle] = .blob(fd, digest)
                return fd
            }
            if kept != fd { try? fd.close() }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(read.size, 1), alignment: 4096)
            defer { buffer.deallocate() }
            var filled = 0
            while filled < read.size {
                let n = try kept.read(fromAbsoluteOffset: read.offset + Int64(filled), into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<read.size]))
                if n == 0 { break }
                filled += n
            }
            read.request.reply(bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<filled]))
        } catch {
            read.request.reply(error: ErrnoMapping.errno(for: error))
        }
    }

    /// `user.tsr.state` of a file: writing, fetching, failed, or the registry's state —
    /// `quarantined` only once no cached page of the damaged bytes is left (§3).
    func stateName(_ file: FileNode, inode: Inode) -> String {
        if file.pending { return "writing" }
        if file.state == .quarantined, state.withLock({ $0.quarantineUnflushed.contains(inode) }) {
            return BlobState.present.rawValue
        }
        guard let digest = file.sha256, file.state == .remote else { return file.state.rawValue }
        return state.withLock { state in
            if state.fetching.contains(digest) { return "fetching" }
            if state.failures[digest] != nil { return "failed" }
            return "remote"
        }
    }

    /// `user.tsr.error` of a file whose last download failed.
    func errorText(_ file: FileNode) -> String? {
        guard let digest = file.sha256 else { return nil }
        return state.withLock { $0.failures[digest] }
    }
}
