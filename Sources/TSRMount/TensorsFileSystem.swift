import FUSE
import Foundation
import TSRStore

/// The FUSE side of the tensors filesystem: a thin adapter that hands each kernel request to
/// `MountCore` and turns its result into the one reply the request gets. Rules live in the core;
/// what is here is the mapping (errors to errno values, results to replies, when a reply waits
/// for invalidations to be sent).
public final class TensorsFileSystem: FileSystemHandler {
    public let core: MountCore

    public init(core: MountCore) {
        self.core = core
    }

    /// Answers `request` with `body`'s result, or with the errno its error maps to.
    private func answer<T>(_ request: any Replier, _ body: () throws -> T, reply: (T) -> Void) {
        let result: T
        do {
            result = try body()
        } catch {
            return request.reply(error: ErrnoMapping.errno(for: error))
        }
        reply(result)
    }

    public func initialize(_ connection: inout ConnectionSettings) {
        let settings = core.settings
        if settings.readdirPlus {
            connection.enable(ConnectionSettings.readdirPlus)
        } else {
            connection.disable(ConnectionSettings.readdirPlus)
        }
        connection.disable(ConnectionSettings.readdirPlusAuto)
        // Synchronous reads: readahead then runs in the reader's own context as requests the
        // kernel can interrupt, so a reader waiting on a download can be answered EINTR (with
        // async reads it would wait on a page lock that no interrupt reaches).
        connection.disable(ConnectionSettings.asyncRead)
        // Blobs never change under a name without the mount knowing: no automatic invalidation
        // of page cache on mtime changes, explicit invalidation instead.
        connection.disable(ConnectionSettings.autoInvalidateData)
        connection.disable(ConnectionSettings.writebackCache)
        connection.maxBackground = UInt32(settings.maxBackground)
        connection.congestionThreshold = UInt32(settings.maxBackground) * 3 / 4
        connection.timeGranularity = 1
        // Header peeks must stay inside the stored header region (HeaderRegion), which allows
        // for two readahead windows of at most this size.
        connection.maxReadahead = UInt32(HeaderRegion.readaheadLimit)
    }

    // MARK: Names and attributes

    public func lookup(_ request: any Replier, parent: Inode, name: String) {
        answer(request, { try core.lookup(parent: parent, name: name) }) { node in
            guard let node else { return request.replyNoEntry(timeout: core.settings.negativeTimeout) }
            request.reply(entry: core.entry(node))
        }
    }

    public func getattr(_ request: any Replier, inode: Inode, file: FileInfo?) {
        answer(request, { try core.getattr(inode, handle: file?.handle) }) { request.reply(attributes: $0.attributes, timeout: $0.timeout) }
    }

    public func setattr(_ request: any Replier, inode: Inode, changes: AttributeChanges, file: FileInfo?) {
        answer(request, { try core.setattr(inode, changes: changes, handle: file?.handle) }) { request.reply(attributes: $0.attributes, timeout: $0.timeout) }
    }

    public func forget(_ items: [(inode: Inode, count: UInt64)]) {
        core.forget(items)
    }

    public func statfs(_ request: any Replier, inode: Inode) {
        request.reply(statfsOf: core.library.layout.home)
    }

    // MARK: Directories

    public func opendir(_ request: any Replier, inode: Inode, file: FileInfo) {
        answer(request, { try core.opendir(inode) }) { request.reply(open: OpenOptions(handle: $0, keepCache: false)) }
    }

    public func readdir(_ request: any Replier, inode: Inode, offset: Int, size: Int, file: FileInfo, plus: Bool) {
        answer(request, { try core.listing(file.handle, offset: offset, plus: plus) }) { listing in
            request.reply(directory: listing.entries, offset: offset, size: size, plus: plus) { sent in
                if plus { core.listed(listing, sent: sent, in: inode) }
            }
        }
    }

    public func releasedir(_ request: any Replier, inode: Inode, file: FileInfo) {
        core.releasedir(file.handle)
        request.replyOK()
    }

    public func mkdir(_ request: any Replier, parent: Inode, name: String, mode: UInt32) {
        answer(request, { try core.mkdir(parent: parent, name: name) }) { request.reply(entry: $0) }
    }

    public func rmdir(_ request: any Replier, parent: Inode, name: String) {
        answer(request, { try core.rmdir(parent: parent, name: name) }) { request.replyOK() }
    }

    // MARK: Files

    public func open(_ request: any Replier, inode: Inode, file: FileInfo) {
        answer(request, { try core.open(inode, flags: file.flags) }) { request.reply(open: $0) }
    }

    public func create(_ request: any Replier, parent: Inode, name: String, mode: UInt32, file: FileInfo) {
        answer(request, { try core.create(parent: parent, name: name) }) { request.reply(create: $0.entry, open: $0.options) }
    }

    public func read(_ request: any Replier, inode: Inode, size: Int, offset: Int64, file: FileInfo) {
        core.readBuffers.with(size) { target in
            answer(request, { try core.read(file.handle, offset: offset, into: target) }) { outcome in
                switch outcome {
                case let .filled(count):
                    request.reply(bytes: UnsafeRawBufferPointer(rebasing: target[0..<count]))
                case let .remote(digest):
                    // Parked until the download completes; this worker thread returns at once.
                    core.readRemote(request, digest: digest, handle: file.handle, size: size, offset: offset)
                }
            }
        }
    }

    public func write(_ request: any Replier, inode: Inode, bytes: UnsafeRawBufferPointer, offset: Int64, file: FileInfo) {
        answer(request, { try core.write(file.handle, bytes: bytes, offset: offset, lockOwner: file.lockOwner) }) { request.reply(written: $0) }
    }

    public func flush(_ request: any Replier, inode: Inode, file: FileInfo) {
        // Answered once the kernel's entry leads to the new content (on the notifier's thread).
        answer(request, { try core.flush(file.handle, lockOwner: file.lockOwner) }) { core.sendNow($0) { request.replyOK() } }
    }

    public func fsync(_ request: any Replier, inode: Inode, dataOnly: Bool, file: FileInfo) {
        // Bytes in flight live in a temp file that is fsynced at commit; the name appears only
        // complete and verified, so an fsync before close has nothing more to promise.
        request.replyOK()
    }

    public func release(_ request: any Replier, inode: Inode, file: FileInfo) {
        let items = core.release(inode, handle: file.handle, backingId: file.backingId)
        // Nobody waits for a release: answered now, the invalidations follow on the notifier.
        request.replyOK()
        core.sendNow(items)
    }

    public func unlink(_ request: any Replier, parent: Inode, name: String) {
        answer(request, { try core.unlink(parent: parent, name: name) }) { request.replyOK() }
    }

    public func rename(_ request: any Replier, parent: Inode, name: String, newParent: Inode, newName: String, flags: UInt32) {
        answer(request, { try core.rename(parent: parent, name: name, newParent: newParent, newName: newName, flags: flags) }) { request.replyOK() }
    }

    public func makeSpecial(_ request: any Replier, parent: Inode, name: String, kind: SpecialKind) {
        answer(request, { try core.makeSpecial(parent: parent, name: name, kind: kind) }) { _ in }
    }

    // MARK: Extended attributes

    public func getxattr(_ request: any Replier, inode: Inode, name: String, size: Int) {
        answer(request, { try core.getxattr(inode, name: name) }) { request.reply(xattr: $0, size: size) }
    }

    public func listxattr(_ request: any Replier, inode: Inode, size: Int) {
        answer(request, { try core.listxattr(inode) }) { request.reply(xattr: $0.flatMap { Array($0.utf8) + [0] }, size: size) }
    }
}
