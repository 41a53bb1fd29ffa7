import FUSE
import Foundation
import Logging
import Synchronization
import TSRLibrary
import TSRStore
import TSRTesting
@testable import TSRMount

/// A request answered in memory: what it was answered with, once (later replies are ignored,
/// as `Request` ignores them).
final class RecordingReplier: Replier, @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    enum Reply: Equatable {
        case error(Int32)
        case ok
        case entry(Inode, entryTimeout: Double)
        case noEntry(timeout: Double)
        case attributes(Attributes, timeout: Double)
        case open(handle: UInt64, keepCache: Bool, directIO: Bool, backingId: Int32?)
        case create(Inode, handle: UInt64)
        case bytes([UInt8])
        case written(Int)
        case xattrSize(Int)
        case statfs(String)
        case directory([String])
    }

    private let lock = NSCondition()
    private var reply: Reply?
    private var replies = 0
    private var interruptHandler: (@Sendable () -> Void)?
    /// How many directory entries fit in one reply (the kernel's buffer size, in entries).
    var directoryRoom = Int.max

    private func record(_ value: Reply) {
        lock.withLock {
            replies += 1
            if reply == nil { reply = value }
            lock.broadcast()
        }
    }

    /// The reply, waiting for it up to `seconds` (a parked read is answered from another thread).
    func wait(_ seconds: Double = 10) -> Reply? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        return lock.withLock {
            while reply == nil, lock.wait(until: deadline) {}
            return reply
        }
    }

    /// The reply so far (nil: not answered yet).
    var answer: Reply? { lock.withLock { reply } }
    var replyCount: Int { lock.withLock { replies } }

    /// Interrupts the request, as the kernel does when its caller gets a signal.
    func interrupt() {
        let handler = lock.withLock { interruptHandler }
        handler?()
    }

    func reply(error: Errno) { record(.error(error.rawValue)) }
    func replyOK() { record(.ok) }
    func reply(entry: Entry) { record(.entry(entry.attributes.inode, entryTimeout: entry.entryTimeout)) }
    func replyNoEntry(timeout: Double) { record(.noEntry(timeout: timeout)) }
    func reply(attributes: Attributes, timeout: Double) { record(.attributes(attributes, timeout: timeout)) }
    func reply(open options: OpenOptions) {
        record(.open(handle: options.handle, keepCache: options.keepCache, directIO: options.directIO, backingId: options.backingId))
    }
    func reply(create entry: Entry, open options: OpenOptions) { record(.create(entry.attributes.inode, handle: options.handle)) }
    func reply(bytes: UnsafeRawBufferPointer) { record(.bytes(Array(bytes))) }
    func reply(written count: Int) { record(.written(count)) }
    func reply(xattrSize: Int) { record(.xattrSize(xattrSize)) }
    func reply(statfsOf path: String) { record(.statfs(path)) }
    func reply(directory entries: [DirectoryEntry], offset: Int, size: Int, plus: Bool, sending: (Range<Int>) -> Void) {
        let start = min(max(offset, 0), entries.count)
        let end = start + min(directoryRoom, entries.count - start)
        sending(start..<end)
        record(.directory(entries[start..<end].map(\.name)))
    }
    func onInterrupt(_ handler: @escaping @Sendable () -> Void) {
        lock.withLock { interruptHandler = handler }
    }
}

/// The kernel side of a mount, in memory: passthrough backing ids handed out and given back,
/// and every invalidation sent.
final class FakeKernel: KernelChannel, @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    enum Sent: Equatable {
        case entry(Inode, String)
        case inode(Inode, data: Bool)
    }

    private let lock = NSLock()
    private var nextId: Int32 = 1
    private(set) var openBackings: Set<Int32> = []
    private var sentItems: [Sent] = []
    let passthrough: PassthroughSupport

    init(passthrough: PassthroughSupport = .active) { self.passthrough = passthrough }

    var backings: Set<Int32> { lock.withLock { openBackings } }
    var sent: [Sent] { lock.withLock { sentItems } }

    func backingOpen(fd: Int32) -> Result<Int32, Errno> {
        lock.withLock {
            defer { nextId += 1 }
            openBackings.insert(nextId)
            return .success(nextId)
        }
    }

    func backingClose(_ id: Int32) { _ = lock.withLock { openBackings.remove(id) } }

    func invalidateEntry(parent: Inode, name: String) -> Int32 {
        lock.withLock { sentItems.append(.entry(parent, name)) }
        return 0
    }

    func invalidateInode(_ inode: Inode, data: Bool) -> Int32 {
        lock.withLock { sentItems.append(.inode(inode, data: data)) }
        return 0
    }
}

/// A source that hands out `bytes` once `release()` is called (or fails with `failure`), counting
/// how often it was asked.
final class GatedFetcher: BlobFetcher, @unchecked Sendable {
    // @unchecked: the fields are set before use or guarded by their own locks.
    struct Refused: Error {}
    let store: BlobStore
    let bytes: [UInt8]
    let fails: Bool
    private let gate = DispatchSemaphore(value: 0)
    private let count = Atomic<Int>(0)

    init(store: BlobStore, bytes: [UInt8], fails: Bool = false) {
        self.store = store
        self.bytes = bytes
        self.fails = fails
    }

    var fetches: Int { count.load(ordering: .relaxed) }

    func release() { gate.signal() }

    func fetch(_ digest: Digest, size: Int64) throws {
        count.add(1, ordering: .relaxed)
        guard gate.wait(timeout: .now() + 30) == .success else { throw Refused() }
        if fails { throw Refused() }
        _ = try store.put(bytes, expected: digest)
    }
}

/// A mount core over a fresh home, with its adapter and a fake kernel; no /dev/fuse.
struct CoreHarness {
    let library: Library
    let core: MountCore
    let adapter: TensorsFileSystem
    let kernel: FakeKernel

    init(home: String, settings: MountSettings = MountSettings(), fetcher: (any BlobFetcher)? = nil, kernel: FakeKernel = FakeKernel()) throws {
        library = try Library(home: home)
        core = try MountCore(library: library, settings: settings, logger: Logger(label: "core-test"), fetcher: fetcher)
        self.kernel = kernel
        core.kernel = kernel
        adapter = TensorsFileSystem(core: core)
    }

    /// Stores `bytes` and names them loras/`name`.
    @discardableResult
    func add(_ name: String, _ bytes: [UInt8]) throws -> Digest {
        let committed = try library.store.put(bytes)
        try library.record(committed, folder: "loras", path: name)
        return committed.digest
    }

    /// The inode of a path, looked up step by step as the kernel does.
    func inode(_ path: String) throws -> Inode {
        var inode = Inode.root
        for part in path.split(separator: "/") {
            guard let node = try core.lookup(parent: inode, name: String(part)) else { throw Errno.noSuchFileOrDirectory }
            inode = node.inode
        }
        return inode
    }

    /// Reads `count` bytes at `offset` through an open handle (not a lazy one).
    func read(_ handle: UInt64, _ count: Int, at offset: Int64 = 0) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let outcome = try buffer.withUnsafeMutableBytes { try core.read(handle, offset: offset, into: $0) }
        guard case let .filled(n) = outcome else { throw Errno.ioError }
        return Array(buffer[0..<n])
    }
}
