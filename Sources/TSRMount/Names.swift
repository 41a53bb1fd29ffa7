import FUSE

// SystemPackage and Foundation bring their own `Errno`/`Inode`; inside this module the FUSE ones are meant.
public typealias Inode = FUSE.Inode
public typealias Errno = FUSE.Errno

/// renameat2(2) flags (linux/fs.h), not exported by Glibc's module.
enum RenameFlags {
    static let noReplace: UInt32 = 1
    static let exchange: UInt32 = 2
}
