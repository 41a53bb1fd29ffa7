import FUSE

// Foundation brings its own `Inode`; inside this module the FUSE one is meant.
public typealias Inode = FUSE.Inode

/// renameat2(2) flags (linux/fs.h), not exported by Glibc's module.
enum RenameFlags {
    static let noReplace: UInt32 = 1
    static let exchange: UInt32 = 2
}
