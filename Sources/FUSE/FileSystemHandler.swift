import CFUSE
import Glibc

/// What symlink(2), link(2) and mknod(2) ask to make.
public enum SpecialKind: String, Sendable {
    case symbolicLink = "symbolic link", hardLink = "hard link", fifo = "FIFO", device = "device node", socket, regularNode = "file made by mknod"
}

/// What a filesystem implements. Every method is called on a libfuse worker thread and must
/// answer its `Request` exactly once, now or later from another thread (never block on the network).
/// Defaults answer ENOSYS-like errors so a filesystem implements only what it supports.
public protocol FileSystemHandler: AnyObject, Sendable {
    /// Called once when the kernel connects; set capabilities on `connection`.
    func initialize(_ connection: inout ConnectionSettings)
    func lookup(_ request: any Replier, parent: Inode, name: String)
    func getattr(_ request: any Replier, inode: Inode, file: FileInfo?)
    func setattr(_ request: any Replier, inode: Inode, changes: AttributeChanges, file: FileInfo?)
    func opendir(_ request: any Replier, inode: Inode, file: FileInfo)
    func readdir(_ request: any Replier, inode: Inode, offset: Int, size: Int, file: FileInfo, plus: Bool)
    func releasedir(_ request: any Replier, inode: Inode, file: FileInfo)
    func open(_ request: any Replier, inode: Inode, file: FileInfo)
    func read(_ request: any Replier, inode: Inode, size: Int, offset: Int64, file: FileInfo)
    func write(_ request: any Replier, inode: Inode, bytes: UnsafeRawBufferPointer, offset: Int64, file: FileInfo)
    func flush(_ request: any Replier, inode: Inode, file: FileInfo)
    func release(_ request: any Replier, inode: Inode, file: FileInfo)
    func fsync(_ request: any Replier, inode: Inode, dataOnly: Bool, file: FileInfo)
    func create(_ request: any Replier, parent: Inode, name: String, mode: UInt32, file: FileInfo)
    func mkdir(_ request: any Replier, parent: Inode, name: String, mode: UInt32)
    func unlink(_ request: any Replier, parent: Inode, name: String)
    func rmdir(_ request: any Replier, parent: Inode, name: String)
    func rename(_ request: any Replier, parent: Inode, name: String, newParent: Inode, newName: String, flags: UInt32)
    /// symlink(2), link(2), mknod(2)/mkfifo(3) in `parent`: things other than files and directories.
    func makeSpecial(_ request: any Replier, parent: Inode, name: String, kind: SpecialKind)
    func statfs(_ request: any Replier, inode: Inode)
    func getxattr(_ request: any Replier, inode: Inode, name: String, size: Int)
    func listxattr(_ request: any Replier, inode: Inode, size: Int)
    func setxattr(_ request: any Replier, inode: Inode, name: String, value: [UInt8], flags: Int32)
    func removexattr(_ request: any Replier, inode: Inode, name: String)
    /// The kernel gives back lookup references (inode, count): every entry reply took one.
    /// No reply; must not block.
    func forget(_ items: [(inode: Inode, count: UInt64)])
    /// The session is ending (unmount).
    func destroy()
}

extension FileSystemHandler {
    public func initialize(_ connection: inout ConnectionSettings) {}
    public func setattr(_ request: any Replier, inode: Inode, changes: AttributeChanges, file: FileInfo?) { request.reply(error: .readOnlyFileSystem) }
    public func opendir(_ request: any Replier, inode: Inode, file: FileInfo) { request.reply(open: OpenOptions(handle: 0, keepCache: false)) }
    public func releasedir(_ request: any Replier, inode: Inode, file: FileInfo) { request.replyOK() }
    public func write(_ request: any Replier, inode: Inode, bytes: UnsafeRawBufferPointer, offset: Int64, file: FileInfo) { request.reply(error: .readOnlyFileSystem) }
    public func flush(_ request: any Replier, inode: Inode, file: FileInfo) { request.replyOK() }
    public func release(_ request: any Replier, inode: Inode, file: FileInfo) { request.replyOK() }
    public func fsync(_ request: any Replier, inode: Inode, dataOnly: Bool, file: FileInfo) { request.replyOK() }
    public func create(_ request: any Replier, parent: Inode, name: String, mode: UInt32, file: FileInfo) { request.reply(error: .readOnlyFileSystem) }
    public func mkdir(_ request: any Replier, parent: Inode, name: String, mode: UInt32) { request.reply(error: .readOnlyFileSystem) }
    public func unlink(_ request: any Replier, parent: Inode, name: String) { request.reply(error: .readOnlyFileSystem) }
    public func rmdir(_ request: any Replier, parent: Inode, name: String) { request.reply(error: .readOnlyFileSystem) }
    public func rename(_ request: any Replier, parent: Inode, name: String, newParent: Inode, newName: String, flags: UInt32) { request.reply(error: .readOnlyFileSystem) }
    public func makeSpecial(_ request: any Replier, parent: Inode, name: String, kind: SpecialKind) { request.reply(error: .notPermitted) }
    public func getxattr(_ request: any Replier, inode: Inode, name: String, size: Int) { request.reply(error: .noData) }
    public func listxattr(_ request: any Replier, inode: Inode, size: Int) { request.reply(xattrSize: 0) }
    public func setxattr(_ request: any Replier, inode: Inode, name: String, value: [UInt8], flags: Int32) { request.reply(error: .notSupported) }
    public func removexattr(_ request: any Replier, inode: Inode, name: String) { request.reply(error: .notSupported) }
    public func forget(_ items: [(inode: Inode, count: UInt64)]) {}
    public func destroy() {}
}

/// Capabilities negotiated at INIT.
public struct ConnectionSettings: Sendable {
    /// What the kernel offers (FUSE_CAP_* bits).
    public var capable: UInt32
    /// What the filesystem wants (FUSE_CAP_* bits); preset by libfuse.
    public var want: UInt32
    public var maxBackground: UInt32
    public var congestionThreshold: UInt32
    public var timeGranularity: UInt32
    /// The most the kernel reads ahead of a reader, in bytes (the kernel keeps the smaller of
    /// this and its own per-device setting, 128 KiB by default).
    public var maxReadahead: UInt32

    /// Asks for a capability when the kernel offers it.
    public mutating func enable(_ capability: Int32) {
        let bit = UInt32(bitPattern: capability)
        if capable & bit != 0 { want |= bit }
    }

    public mutating func disable(_ capability: Int32) {
        want &= ~UInt32(bitPattern: capability)
    }

    public static let readdirPlus = FUSE_CAP_READDIRPLUS
    public static let readdirPlusAuto = FUSE_CAP_READDIRPLUS_AUTO
    public static let cacheSymlinks = FUSE_CAP_CACHE_SYMLINKS
    public static let asyncRead = FUSE_CAP_ASYNC_READ
    public static let autoInvalidateData = FUSE_CAP_AUTO_INVAL_DATA
    public static let exportSupport = FUSE_CAP_EXPORT_SUPPORT
    public static let writebackCache = FUSE_CAP_WRITEBACK_CACHE
    public static let spliceRead = FUSE_CAP_SPLICE_READ
}

/// Mount options for a session.
public struct MountOptions: Sendable {
    /// Shown as the mount's source in /proc/mounts.
    public var fsName: String
    /// The type is shown as `fuse.<subtype>`.
    public var subtype: String
    public var readOnly = false
    /// Let other users (ComfyUI running as another user) see the mount; needs
    /// `user_allow_other` in /etc/fuse.conf when not root.
    public var allowOther = false
    /// Ask the kernel for FUSE passthrough (Linux >= 6.9); `Session.passthrough` says whether it
    /// agreed. Requests are then read with read(2), never spliced (the hooks see each one).
    public var passthrough = false

    public init(fsName: String, subtype: String) {
        self.fsName = fsName
        self.subtype = subtype
    }
}

/// Why a session could not start.
public enum SessionError: Error, CustomStringConvertible, Sendable {
    case create
    case mount(String)
    case badOption(String)

    public var description: String {
        switch self {
        case .create: return "libfuse could not create a session (is /dev/fuse there?)"
        case let .mount(point): return "could not mount on \(point): is it an existing directory you may use, and is fusermount3 installed?"
        case let .badOption(value): return "mount option value \"\(value)\" contains a comma or a control character"
        }
    }
}

/// What a session's kernel said about FUSE passthrough.
public enum PassthroughSupport: Sendable, Equatable {
    /// The mount did not ask for it.
    case notRequested
    /// The kernel agreed at INIT: `Session.backingOpen` may be used (it still needs CAP_SYS_ADMIN).
    case active
    /// Asked for, not available; why.
    case unavailable(String)
}
