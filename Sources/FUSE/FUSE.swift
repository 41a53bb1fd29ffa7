import CFUSE
import SystemPackage
import Glibc
import Synchronization

/// # FUSE
///
/// A thin Swift binding of libfuse 3's low-level API.
///
/// - **Inodes, not paths.** The kernel names files by inode number (`Inode`); it learns them from
///   `lookup`, `readdirplus` and `create` replies, and caches each name → inode link (an *entry*)
///   and each inode's attributes for the timeouts given in the reply. `Inode.root` (1) is the root.
/// - **Lookup counts and forget.** Every entry reply adds one to the kernel's reference on the inode;
///   `forget` gives references back (`FileSystemHandler.forget`). Tensors keeps what it served for
///   exactly the inodes the kernel still references, and drops them when forgotten.
/// - **Timeouts and invalidation.** Long entry/attr timeouts make `stat` and path walks free; when
///   the filesystem changes behind the kernel's back it calls `Session.invalidateEntry` /
///   `invalidateInode`. Negative entries (ENOENT) can be cached too, and are invalidated the same way.
/// - **Exactly one reply per request.** Every handler receives a `Request` and must answer it once,
///   now or later from any thread. A `Request` dropped without an answer answers EIO, so no path can
///   leave a process waiting forever in uninterruptible sleep.
enum FUSEModule {}

/// A FUSE inode number.
public struct Inode: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { rawValue = value }
    /// The root directory (FUSE_ROOT_ID).
    public static let root = Inode(1)
    public static func < (a: Inode, b: Inode) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "#\(rawValue)" }
}

/// An errno value as the kernel receives it: swift-system's, the one `Errno` of the project
/// (the store's system calls throw it, the mount answers with it).
public typealias Errno = SystemPackage.Errno

/// File types the filesystem reports.
public enum FileType: Sendable {
    case directory, regular
}

/// What `stat` shows for an inode.
public struct Attributes: Sendable, Equatable {
    public var inode: Inode
    public var type: FileType
    /// Permission bits (e.g. 0o644).
    public var permissions: UInt32
    public var size: Int64
    /// Modification time in nanoseconds since the epoch (also used for ctime and atime).
    public var mtimeNs: Int64
    public var linkCount: UInt32
    public var uid: UInt32
    public var gid: UInt32

    public init(inode: Inode, type: FileType, permissions: UInt32, size: Int64, mtimeNs: Int64, linkCount: UInt32 = 1, uid: UInt32 = 0, gid: UInt32 = 0) {
        self.inode = inode
        self.type = type
        self.permissions = permissions
        self.size = size
        self.mtimeNs = mtimeNs
        self.linkCount = linkCount
        self.uid = uid
        self.gid = gid
    }

    var stat: stat {
        var st = Glibc.stat()
        st.st_ino = UInt(inode.rawValue)
        st.st_mode = (type == .directory ? S_IFDIR : S_IFREG) | permissions
        st.st_nlink = UInt(linkCount)
        st.st_size = Int(size)
        st.st_uid = uid
        st.st_gid = gid
        st.st_blksize = 4096
        st.st_blocks = Int((size + 511) / 512)
        let time = timespec(tv_sec: Int(mtimeNs / 1_000_000_000), tv_nsec: Int(mtimeNs % 1_000_000_000))
        st.st_mtim = time
        st.st_ctim = time
        st.st_atim = time
        return st
    }
}

/// An entry reply: the inode a name leads to, with cache timeouts (seconds).
public struct Entry: Sendable {
    public var attributes: Attributes
    public var entryTimeout: Double
    public var attributeTimeout: Double

    public init(attributes: Attributes, entryTimeout: Double, attributeTimeout: Double) {
        self.attributes = attributes
        self.entryTimeout = entryTimeout
        self.attributeTimeout = attributeTimeout
    }

    var param: fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = attributes.inode.rawValue
        e.generation = 1
        e.attr = attributes.stat
        e.attr_timeout = attributeTimeout
        e.entry_timeout = entryTimeout
        return e
    }
}

/// One directory entry for readdir / readdirplus.
public struct DirectoryEntry: Sendable {
    public var name: String
    public var entry: Entry
    public init(name: String, entry: Entry) {
        self.name = name
        self.entry = entry
    }
}

/// The parts of `fuse_file_info` a handler sees, copied out of the callback's pointer.
public struct FileInfo: Sendable {
    /// open(2) flags.
    public var flags: Int32
    /// The handle the filesystem returned from open/create/opendir.
    public var handle: UInt64
    /// The kernel passthrough backing id the open reply carried (0: none).
    public var backingId: Int32 = 0
    /// Who is acting (the kernel's id of the calling process's file table), on `flush` and on
    /// `write` through a direct-I/O handle; 0 when the kernel does not say. A process that
    /// inherited a descriptor across fork has another owner than the one that opened it.
    public var lockOwner: UInt64 = 0

    public init(flags: Int32, handle: UInt64, backingId: Int32 = 0, lockOwner: UInt64 = 0) {
        self.flags = flags
        self.handle = handle
        self.backingId = backingId
        self.lockOwner = lockOwner
    }
}

/// How an opened file is to be cached by the kernel.
public struct OpenOptions: Sendable {
    public var handle: UInt64
    /// Keep the page cache across opens (right for content that never changes under a handle).
    public var keepCache: Bool
    /// Bypass the page cache for this handle (writes then never touch pages other readers share;
    /// shared mmap of the handle is refused by the kernel).
    public var directIO: Bool
    /// Serve the file by kernel passthrough from this backing id (`Session.backingOpen`): reads
    /// and mmap go to the backing file without reaching the daemon.
    public var backingId: Int32?
    public init(handle: UInt64, keepCache: Bool, directIO: Bool = false, backingId: Int32? = nil) {
        self.handle = handle
        self.keepCache = keepCache
        self.directIO = directIO
        self.backingId = backingId
    }
}

/// Attribute changes asked for by `setattr`.
public struct AttributeChanges: Sendable {
    public var size: Int64?
    public var mode: UInt32?
    public var mtimeNs: Int64?
    /// Any change this filesystem ignores (owner, times) was asked for too.
    public var other: Bool

    public init(size: Int64? = nil, mode: UInt32? = nil, mtimeNs: Int64? = nil, other: Bool = false) {
        self.size = size
        self.mode = mode
        self.mtimeNs = mtimeNs
        self.other = other
    }
}
