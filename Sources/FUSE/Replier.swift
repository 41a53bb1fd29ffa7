/// What answers one kernel request: `Request` for a real mount, a recording double in tests. A
/// filesystem written against it can be driven without /dev/fuse. Exactly one reply counts; later
/// ones are ignored.
public protocol Replier: AnyObject, Sendable {
    func reply(error: Errno)
    /// Success with no data (unlink, rmdir, rename, flush, release, fsync, setxattr…).
    func replyOK()
    func reply(entry: Entry)
    /// A negative entry: the name does not exist, and the kernel may cache that for `timeout` s.
    func replyNoEntry(timeout: Double)
    func reply(attributes: Attributes, timeout: Double)
    func reply(open options: OpenOptions)
    func reply(create entry: Entry, open options: OpenOptions)
    func reply(bytes: UnsafeRawBufferPointer)
    func reply(written count: Int)
    func reply(xattrSize: Int)
    /// statvfs(3) of a path, passed through.
    func reply(statfsOf path: String)
    /// Answers readdir/readdirplus with the entries from `offset` that fit in `size` bytes;
    /// `sending` gets the range of entries that fit, just before the reply goes out.
    func reply(directory entries: [DirectoryEntry], offset: Int, size: Int, plus: Bool, sending: (Range<Int>) -> Void)
    /// Calls `handler` if the request is interrupted before it is answered (at once when it
    /// already was). Call once, before parking the request.
    func onInterrupt(_ handler: @escaping @Sendable () -> Void)
}

extension Replier {
    public func reply(bytes: [UInt8]) {
        bytes.withUnsafeBytes { reply(bytes: $0) }
    }

    /// Answers getxattr/listxattr with `bytes`: their size when asked with size 0, ERANGE when
    /// `size` is too small for them.
    public func reply(xattr bytes: [UInt8], size: Int) {
        if size == 0 { return reply(xattrSize: bytes.count) }
        if size < bytes.count { return reply(error: .outOfRange) }
        reply(bytes: bytes)
    }
}

/// What a filesystem asks of the kernel outside replies: passthrough backing files and cache
/// invalidations. `Session` for a real mount; a double in tests.
public protocol KernelChannel: AnyObject, Sendable {
    /// Whether opens can be served by kernel passthrough.
    var passthrough: PassthroughSupport { get }
    /// Registers an open file descriptor as a passthrough backing file; its id, or the errno.
    func backingOpen(fd: Int32) -> Result<Int32, Errno>
    /// Forgets a backing id (files opened with it keep working).
    func backingClose(_ id: Int32)
    /// Drops the kernel's cached entry `name` in `parent` (never from a request handler).
    @discardableResult func invalidateEntry(parent: Inode, name: String) -> Int32
    /// Drops the kernel's cached attributes (and, with `data`, page cache) of an inode.
    @discardableResult func invalidateInode(_ inode: Inode, data: Bool) -> Int32
}
