import CFUSE
import CPassthrough
import Glibc
import Synchronization

/// One kernel request awaiting exactly one reply. May be answered from any thread, now or later.
/// Dropped unanswered, it answers EIO.
public final class Request: Replier, @unchecked Sendable {
    // @unchecked: `req` is only used by the one caller that wins the `replied` exchange; libfuse
    // allows replying to a request from any thread, after its handler has returned.
    private let req: fuse_req_t
    private let replied = Atomic<Bool>(false)
    /// The interrupt handler's box, retained while the request is alive.
    private var interruptBox: Unmanaged<InterruptBox>?

    final class InterruptBox {
        let handler: @Sendable () -> Void
        init(_ handler: @escaping @Sendable () -> Void) { self.handler = handler }
    }

    init(_ req: fuse_req_t) { self.req = req }

    deinit {
        if !replied.load(ordering: .acquiring) { fuse_reply_err(req, EIO) }
        interruptBox?.release()
    }

    /// Calls `handler` if the kernel interrupts the request (its caller got a signal) before it is
    /// answered; the handler should answer EINTR. Called at once when already interrupted. Call
    /// once, before parking the request (fuse_req_interrupt_func). The kernel sends interrupts
    /// only for requests a caller waits on itself, not for background (async readahead) ones.
    public func onInterrupt(_ handler: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(InterruptBox(handler))
        interruptBox = box
        // SAFETY: the box is retained by this Request, which lives until it is answered; libfuse
        // calls the function only for a request that has not been answered (under its lock).
        fuse_req_interrupt_func(req, { _, data in
            guard let data else { return }
            Unmanaged<InterruptBox>.fromOpaque(data).takeUnretainedValue().handler()
        }, box.toOpaque())
    }

    /// Claims the right to reply; false when someone already did.
    private func claim() -> Bool {
        !replied.exchange(true, ordering: .acquiringAndReleasing)
    }

    public func reply(error: Errno) {
        guard claim() else { return }
        fuse_reply_err(req, error.rawValue)
    }

    /// Success with no data (unlink, rmdir, rename, flush, release, fsync, setxattr…).
    public func replyOK() {
        guard claim() else { return }
        fuse_reply_err(req, 0)
    }

    /// For forget: no reply is sent, but the request is consumed.
    func replyNone() {
        guard claim() else { return }
        fuse_reply_none(req)
    }

    public func reply(entry: Entry) {
        guard claim() else { return }
        var param = entry.param
        fuse_reply_entry(req, &param)
    }

    /// A negative entry: the name does not exist, and the kernel may cache that for `timeout` s.
    public func replyNoEntry(timeout: Double) {
        guard claim() else { return }
        var param = fuse_entry_param()
        param.ino = 0
        param.entry_timeout = timeout
        fuse_reply_entry(req, &param)
    }

    public func reply(attributes: Attributes, timeout: Double) {
        guard claim() else { return }
        var st = attributes.stat
        fuse_reply_attr(req, &st, timeout)
    }

    public func reply(open options: OpenOptions) {
        guard claim() else { return }
        var fi = fuse_file_info()
        fi.fh = options.handle
        tsr_fi_set_keep_cache(&fi, options.keepCache ? 1 : 0)
        tsr_fi_set_direct_io(&fi, options.directIO ? 1 : 0)
        if let backing = options.backingId {
            // The reply hook turns this into FOPEN_PASSTHROUGH with the backing id.
            fi.fh = tsr_passthrough_fh(options.handle, backing)
            tsr_fi_set_keep_cache(&fi, 0)
            tsr_fi_set_direct_io(&fi, 0)
        }
        fuse_reply_open(req, &fi)
    }

    public func reply(create entry: Entry, open options: OpenOptions) {
        guard claim() else { return }
        var param = entry.param
        var fi = fuse_file_info()
        fi.fh = options.handle
        tsr_fi_set_keep_cache(&fi, options.keepCache ? 1 : 0)
        tsr_fi_set_direct_io(&fi, options.directIO ? 1 : 0)
        fuse_reply_create(req, &param, &fi)
    }

    public func reply(bytes: UnsafeRawBufferPointer) {
        guard claim() else { return }
        fuse_reply_buf(req, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
    }

    public func reply(written count: Int) {
        guard claim() else { return }
        fuse_reply_write(req, count)
    }

    public func reply(xattrSize: Int) {
        guard claim() else { return }
        fuse_reply_xattr(req, xattrSize)
    }

    /// statvfs(3) of a path, passed through.
    public func reply(statfsOf path: String) {
        var st = statvfs()
        if statvfs(path, &st) != 0 {
            reply(error: Errno(rawValue: errno))
            return
        }
        guard claim() else { return }
        fuse_reply_statfs(req, &st)
    }

    /// Answers readdir/readdirplus with the entries from `offset` on that fit in `size` bytes.
    /// Entry offsets are 1-based positions in `entries`, so the kernel resumes where it stopped.
    /// `sending` is called with the range of entries that fit just before the reply goes out (a
    /// READDIRPLUS entry hands the kernel a lookup reference, which a forget may give back at once).
    public func reply(directory entries: [DirectoryEntry], offset: Int, size: Int, plus: Bool, sending: (Range<Int>) -> Void) {
        guard claim() else { return }
        var buffer = [CChar](repeating: 0, count: max(size, 0))
        var used = 0
        var index = max(offset, 0)
        while index < entries.count {
            let item = entries[index]
            let remaining = buffer.count - used
            let needed: Int = item.name.withCString { name in
                buffer.withUnsafeMutableBufferPointer { raw in
                    let start = raw.baseAddress.map { $0 + used }
                    if plus {
                        var param = item.entry.param
                        return fuse_add_direntry_plus(req, start, remaining, name, &param, off_t(index + 1))
                    }
                    var st = item.entry.attributes.stat
                    return fuse_add_direntry(req, start, remaining, name, &st, off_t(index + 1))
                }
            }
            if needed > remaining { break }
            used += needed
            index += 1
        }
        sending(min(max(offset, 0), index)..<index)
        _ = buffer.withUnsafeBufferPointer { fuse_reply_buf(req, $0.baseAddress, used) }
    }
}
