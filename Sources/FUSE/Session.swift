import CFUSE
import CPassthrough
import Glibc

/// Owns a libfuse session and routes its C callbacks to a `FileSystemHandler`.
public final class Session: KernelChannel, @unchecked Sendable {
    // @unchecked: `session` is set once in init and read-only afterwards; libfuse's notify and
    // exit functions are safe to call from any thread.
    let handler: any FileSystemHandler
    private let session: OpaquePointer
    private var userdata: Unmanaged<Box>?
    public let mountpoint: String
    private var mounted = false
    private let wantsPassthrough: Bool

    final class Box {
        let handler: any FileSystemHandler
        let passthrough: Bool
        init(_ handler: any FileSystemHandler, passthrough: Bool) {
            self.handler = handler
            self.passthrough = passthrough
        }
    }

    /// Creates a session (not yet mounted).
    public init(handler: any FileSystemHandler, mountpoint: String, options: MountOptions) throws(SessionError) {
        self.handler = handler
        self.mountpoint = mountpoint
        self.wantsPassthrough = options.passthrough
        for value in [options.fsName, options.subtype] where value.contains(",") || value.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            throw .badOption(value)
        }
        var opts = ["fsname=\(options.fsName)", "subtype=\(options.subtype)", "default_permissions"]
        if options.readOnly { opts.append("ro") }
        if options.allowOther { opts.append("allow_other") }
        let argv = ["tsr", "-o", opts.joined(separator: ",")]
        let box = Box(handler, passthrough: options.passthrough)
        let retained = Unmanaged.passRetained(box)
        var ops = Self.operations
        // SAFETY: the C strings live until fuse_session_new returns; it copies what it keeps.
        let created: OpaquePointer? = withCStrings(argv) { pointers in
            var args = fuse_args(argc: Int32(argv.count), argv: pointers, allocated: 0)
            return fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, retained.toOpaque())
        }
        guard let created else {
            retained.release()
            throw .create
        }
        session = created
        userdata = retained
    }

    deinit {
        if mounted { fuse_session_unmount(session) }
        fuse_session_destroy(session)
        // SAFETY: the session that held the pointer is destroyed; nothing can call back now.
        userdata?.release()
    }

    /// Mounts at the mount point (over a non-empty directory too).
    public func mount() throws(SessionError) {
        guard fuse_session_mount(session, mountpoint) == 0 else { throw .mount(mountpoint) }
        mounted = true
        if wantsPassthrough { installResult = tsr_passthrough_install(session) }
    }

    private var installResult: Int32 = 0

    /// Whether opens can be served by kernel passthrough (known once the kernel's INIT arrived).
    public var passthrough: PassthroughSupport {
        guard wantsPassthrough else { return .notRequested }
        guard installResult == 0 else { return .unavailable("the request hooks could not be installed (\(Errno(rawValue: -installResult)))") }
        switch tsr_passthrough_state(session) {
        case 1: return .active
        case 0: return .unavailable("the kernel does not offer FUSE passthrough (it needs Linux 6.9 or later built with CONFIG_FUSE_PASSTHROUGH)")
        default: return .unavailable("the kernel's INIT has not been seen")
        }
    }

    /// Registers an open file descriptor as a passthrough backing file; its id, or the errno.
    public func backingOpen(fd: Int32) -> Result<Int32, Errno> {
        let id = tsr_passthrough_backing_open(session, fd)
        return id > 0 ? .success(id) : .failure(Errno(rawValue: -id))
    }

    /// Forgets a backing id (files opened with it keep working).
    public func backingClose(_ id: Int32) {
        _ = tsr_passthrough_backing_close(session, id)
    }

    /// Runs the multithreaded request loop until unmount, a signal (with `handleSignals`) or `exit()`.
    @discardableResult
    public func run(maxThreads: Int, handleSignals: Bool) -> Int32 {
        if handleSignals { fuse_set_signal_handlers(session) }
        defer { if handleSignals { fuse_remove_signal_handlers(session) } }
        guard let config = fuse_loop_cfg_create() else { return -1 }
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, UInt32(max(2, maxThreads)))
        fuse_loop_cfg_set_idle_threads(config, UInt32(max(1, maxThreads / 2)))
        return fuse_session_loop_mt(session, config)
    }

    /// Asks the loop to stop; the unmount follows in `unmount()`.
    public func exit() { fuse_session_exit(session) }

    /// Unmounts (after the loop has returned).
    public func unmount() {
        if mounted {
            fuse_session_unmount(session)
            mounted = false
        }
    }

    /// Drops the kernel's cached entry `name` in `parent` (call outside request handlers).
    @discardableResult
    public func invalidateEntry(parent: Inode, name: String) -> Int32 {
        name.withCString { fuse_lowlevel_notify_inval_entry(session, parent.rawValue, $0, strlen($0)) }
    }

    /// Drops the kernel's cached attributes (and, with `data`, page cache) of an inode.
    @discardableResult
    public func invalidateInode(_ inode: Inode, data: Bool) -> Int32 {
        fuse_lowlevel_notify_inval_inode(session, inode.rawValue, data ? 0 : -1, 0)
    }

    // MARK: C callbacks

    static func handler(_ req: fuse_req_t?) -> (any FileSystemHandler, Request)? {
        guard let req, let raw = fuse_req_userdata(req) else { return nil }
        // SAFETY: userdata is the retained Box for the life of the session.
        let box = Unmanaged<Box>.fromOpaque(raw).takeUnretainedValue()
        return (box.handler, Request(req))
    }

    static func file(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> FileInfo {
        FileInfo(
            flags: tsr_fi_flags(fi), handle: tsr_passthrough_handle(tsr_fi_fh(fi)),
            backingId: tsr_passthrough_backing_id(tsr_fi_fh(fi)), lockOwner: tsr_fi_lock_owner(fi))
    }

    /// Copies a callback's name argument; nil when it is not UTF-8 (such names cannot exist here).
    static func name(_ raw: UnsafePointer<CChar>?) -> String? {
        guard let raw else { return nil }
        return String(validatingCString: raw)
    }

    static let operations: fuse_lowlevel_ops = {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            let box = Unmanaged<Box>.fromOpaque(userdata).takeUnretainedValue()
            var settings = ConnectionSettings(
                capable: conn.pointee.capable, want: conn.pointee.want, maxBackground: conn.pointee.max_background,
                congestionThreshold: conn.pointee.congestion_threshold, timeGranularity: conn.pointee.time_gran,
                maxReadahead: conn.pointee.max_readahead)
            box.handler.initialize(&settings)
            // The passthrough hooks must see every request: none may be spliced past them.
            if box.passthrough { settings.disable(ConnectionSettings.spliceRead) }
            conn.pointee.want = settings.want
            conn.pointee.max_background = settings.maxBackground
            conn.pointee.congestion_threshold = settings.congestionThreshold
            conn.pointee.time_gran = settings.timeGranularity
            conn.pointee.max_readahead = settings.maxReadahead
        }
        ops.destroy = { userdata in
            guard let userdata else { return }
            Unmanaged<Box>.fromOpaque(userdata).takeUnretainedValue().handler.destroy()
        }
        ops.lookup = { req, parent, name in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .noSuchFileOrDirectory) }
            fs.lookup(request, parent: Inode(parent), name: name)
        }
        ops.forget = { req, ino, nlookup in
            guard let (fs, request) = handler(req) else { return }
            fs.forget([(Inode(ino), UInt64(nlookup))])
            request.replyNone()
        }
        ops.forget_multi = { req, count, forgets in
            guard let (fs, request) = handler(req) else { return }
            if let forgets {
                fs.forget((0..<Int(count)).map { (Inode(forgets[$0].ino), UInt64(forgets[$0].nlookup)) })
            }
            request.replyNone()
        }
        ops.getattr = { req, ino, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.getattr(request, inode: Inode(ino), file: tsr_fi_is_null(fi) != 0 ? nil : file(fi))
        }
        ops.setattr = { req, ino, attr, toSet, fi in
            guard let (fs, request) = handler(req) else { return }
            let set = Int32(toSet)
            var changes = AttributeChanges(size: nil, mode: nil, mtimeNs: nil, other: false)
            if let attr {
                if set & FUSE_SET_ATTR_SIZE != 0 { changes.size = Int64(attr.pointee.st_size) }
                if set & FUSE_SET_ATTR_MODE != 0 { changes.mode = attr.pointee.st_mode }
                if set & FUSE_SET_ATTR_MTIME != 0 {
                    changes.mtimeNs = Int64(attr.pointee.st_mtim.tv_sec) * 1_000_000_000 + Int64(attr.pointee.st_mtim.tv_nsec)
                }
            }
            if set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_MTIME) != 0 { changes.other = true }
            fs.setattr(request, inode: Inode(ino), changes: changes, file: tsr_fi_is_null(fi) != 0 ? nil : file(fi))
        }
        ops.opendir = { req, ino, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.opendir(request, inode: Inode(ino), file: file(fi))
        }
        ops.readdir = { req, ino, size, off, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.readdir(request, inode: Inode(ino), offset: Int(off), size: size, file: file(fi), plus: false)
        }
        ops.readdirplus = { req, ino, size, off, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.readdir(request, inode: Inode(ino), offset: Int(off), size: size, file: file(fi), plus: true)
        }
        ops.releasedir = { req, ino, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.releasedir(request, inode: Inode(ino), file: file(fi))
        }
        ops.open = { req, ino, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.open(request, inode: Inode(ino), file: file(fi))
        }
        ops.read = { req, ino, size, off, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.read(request, inode: Inode(ino), size: size, offset: Int64(off), file: file(fi))
        }
        ops.write = { req, ino, buf, size, off, fi in
            guard let (fs, request) = handler(req) else { return }
            // SAFETY: buf is valid until this callback returns; the handler copies or writes it now.
            let bytes = UnsafeRawBufferPointer(start: buf, count: size)
            fs.write(request, inode: Inode(ino), bytes: bytes, offset: Int64(off), file: file(fi))
        }
        ops.flush = { req, ino, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.flush(request, inode: Inode(ino), file: file(fi))
        }
        ops.release = { req, ino, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.release(request, inode: Inode(ino), file: file(fi))
        }
        ops.fsync = { req, ino, datasync, fi in
            guard let (fs, request) = handler(req) else { return }
            fs.fsync(request, inode: Inode(ino), dataOnly: datasync != 0, file: file(fi))
        }
        ops.create = { req, parent, name, mode, fi in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .invalidArgument) }
            fs.create(request, parent: Inode(parent), name: name, mode: UInt32(mode), file: file(fi))
        }
        ops.mkdir = { req, parent, name, mode in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .invalidArgument) }
            fs.mkdir(request, parent: Inode(parent), name: name, mode: UInt32(mode))
        }
        ops.symlink = { req, _, parent, name in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .invalidArgument) }
            fs.makeSpecial(request, parent: Inode(parent), name: name, kind: .symbolicLink)
        }
        ops.link = { req, _, parent, name in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .invalidArgument) }
            fs.makeSpecial(request, parent: Inode(parent), name: name, kind: .hardLink)
        }
        ops.mknod = { req, parent, name, mode, _ in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .invalidArgument) }
            let kind: SpecialKind
            switch mode & S_IFMT {
            case S_IFIFO: kind = .fifo
            case S_IFSOCK: kind = .socket
            case S_IFREG: kind = .regularNode
            default: kind = .device
            }
            fs.makeSpecial(request, parent: Inode(parent), name: name, kind: kind)
        }
        ops.unlink = { req, parent, name in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .noSuchFileOrDirectory) }
            fs.unlink(request, parent: Inode(parent), name: name)
        }
        ops.rmdir = { req, parent, name in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .noSuchFileOrDirectory) }
            fs.rmdir(request, parent: Inode(parent), name: name)
        }
        ops.rename = { req, parent, name, newparent, newname, flags in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .noSuchFileOrDirectory) }
            guard let newName = Session.name(newname) else { return request.reply(error: .invalidArgument) }
            fs.rename(request, parent: Inode(parent), name: name, newParent: Inode(newparent), newName: newName, flags: UInt32(flags))
        }
        ops.statfs = { req, ino in
            guard let (fs, request) = handler(req) else { return }
            fs.statfs(request, inode: Inode(ino))
        }
        ops.getxattr = { req, ino, name, size in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .noData) }
            fs.getxattr(request, inode: Inode(ino), name: name, size: size)
        }
        ops.listxattr = { req, ino, size in
            guard let (fs, request) = handler(req) else { return }
            fs.listxattr(request, inode: Inode(ino), size: size)
        }
        ops.setxattr = { req, ino, name, value, size, flags in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .notSupported) }
            let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            fs.setxattr(request, inode: Inode(ino), name: name, value: bytes, flags: flags)
        }
        ops.removexattr = { req, ino, name in
            guard let (fs, request) = handler(req) else { return }
            guard let name = Session.name(name) else { return request.reply(error: .noData) }
            fs.removexattr(request, inode: Inode(ino), name: name)
        }
        return ops
    }()
}

/// Calls `body` with a NULL-terminated argv built from `strings`.
func withCStrings<T>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> T) -> T {
    let duplicated = strings.map { strdup($0) }
    defer { duplicated.forEach { free($0) } }
    var argv = duplicated + [nil]
    // SAFETY: argv always holds at least the terminating nil, so its buffer has a base address.
    return argv.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}
