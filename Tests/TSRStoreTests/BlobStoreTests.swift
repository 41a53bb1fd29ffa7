import Foundation
import Synchronization
import Testing
import TSRTesting
@testable import TSRStore

@Suite struct BlobStoreTests {
    static func bytes(_ count: Int, seed: UInt8 = 7) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ Int(seed)) }
    }

    static func tempFiles(_ store: BlobStore) throws -> [String] {
        try SystemCalls.listDirectory(store.layout.tmp).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func homeLayoutIsCreated() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path + "/home"))
            for sub in ["blobs/sha256", "tmp", "quarantine"] {
                #expect(try SystemCalls.status(dir.path + "/home/" + sub).isDirectory)
            }
            #expect(store.layout.database == dir.path + "/home/models.db")
        }
    }

    @Test func homeResolutionOrder() {
        let env = ["TSR_HOME": "/t", "XDG_DATA_HOME": "/x", "HOME": "/h"]
        #expect(StoreLayout.resolveHome(explicit: "rel", environment: env, cwd: "/cwd") == "/cwd/rel")
        #expect(StoreLayout.resolveHome(explicit: nil, environment: env, cwd: "/") == "/t")
        #expect(StoreLayout.resolveHome(explicit: nil, environment: ["XDG_DATA_HOME": "/x", "HOME": "/h"], cwd: "/") == "/x/tensors")
        #expect(StoreLayout.resolveHome(explicit: nil, environment: ["HOME": "/h"], cwd: "/") == "/h/.local/share/tensors")
    }

    @Test func committedBlobIsReadOnlyAndHoldsTheBytes() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let data = Self.bytes(3 << 20)
            let committed = try store.put(data)
            #expect(committed.digest == (try SHA256Hasher.digest(data)))
            #expect(!committed.deduplicated)
            let path = store.layout.blobPath(committed.digest)
            #expect(path.hasSuffix("/blobs/sha256/\(committed.digest.prefix)/\(committed.digest.rawValue)"))
            #expect(try readBytes(path) == data)
            #expect(try SystemCalls.status(path).mode.rawValue & 0o777 == 0o444)
            #expect(try Self.tempFiles(store).isEmpty)
        }
    }

    @Test func sameBytesAreStoredOnce() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let first = try store.put(Self.bytes(1000))
            let inode = try SystemCalls.status(store.layout.blobPath(first.digest)).inode
            let second = try store.put(Self.bytes(1000))
            #expect(second.digest == first.digest)
            #expect(second.deduplicated)
            #expect(try SystemCalls.status(store.layout.blobPath(first.digest)).inode == inode)
            #expect(try store.blobsOnDisk().count == 1)
            #expect(try Self.tempFiles(store).isEmpty)
        }
    }

    @Test func concurrentCommitsOfTheSameBytesPublishExactlyOnce() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let data = Self.bytes(1 << 20)
            for _ in 0..<20 {
                let results = Parallel.map(Array(0..<8), workers: 8) { _ in Result { () throws(StoreError) in try store.put(data) } }
                let committed = try results.map { try $0.get() }
                #expect(committed.filter { !$0.deduplicated }.count == 1)
                try store.remove(committed[0].digest)
            }
            #expect(try Self.tempFiles(store).isEmpty)
        }
    }

    @Test func positionalWritesAndTruncationHashTheFinalBytes() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            // Out of order: the second half first, then the first, then a patch in the middle.
            let data = Self.bytes(3 << 20)
            let writer = try store.begin(expectedSize: Int64(data.count))
            let half = data.count / 2
            try Array(data[half...]).withUnsafeBytes { try writer.write($0, at: Int64(half)) }
            try Array(data[..<half]).withUnsafeBytes { try writer.write($0, at: 0) }
            var expected = data
            expected[1000] = 0xAB
            try [UInt8(0xAB)].withUnsafeBytes { try writer.write($0, at: 1000) }
            var readBack = [UInt8](repeating: 0, count: 4)
            #expect(try readBack.withUnsafeMutableBytes { try writer.read(into: $0, at: 999) } == 4)
            #expect(readBack == Array(expected[999..<1003]))
            let committed = try writer.commit()
            #expect(committed.digest == (try SHA256Hasher.digest(expected)))
            // Truncation (shorter, then longer: the gap reads as zeros).
            let cut = try store.begin()
            try cut.write(Self.bytes(100))
            try cut.truncate(to: 10)
            try cut.truncate(to: 20)
            let result = try cut.commit()
            #expect(result.size == 20)
            #expect(try readBytes(store.layout.blobPath(result.digest)) == Array(Self.bytes(100)[0..<10]) + [UInt8](repeating: 0, count: 10))
        }
    }

    @Test func wrongDigestIsQuarantinedNeverVisible() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let data = Self.bytes(5000)
            let claimed = try SHA256Hasher.digest(Array("something else".utf8))
            #expect {
                _ = try store.put(data, expected: claimed)
            } throws: { error in
                guard case let StoreError.digestMismatch(expected, actual, aside)? = error as? StoreError else { return false }
                return expected == claimed && actual == (try? SHA256Hasher.digest(data)) && aside != nil
            }
            #expect(!store.contains(claimed))
            #expect(try store.blobsOnDisk().isEmpty)
            let quarantined = try SystemCalls.listDirectory(store.layout.quarantine)
            #expect(quarantined.count == 1)
            #expect(try Self.tempFiles(store).isEmpty)
        }
    }

    /// Issue 17: ten reads of one bad file left thirty copies. One copy per distinct wrong
    /// content, named by its digest; past the size bound the oldest go, never the newest; gc's
    /// age cut removes old copies.
    @Test func quarantineKeepsOneCopyPerWrongContentWithinItsBound() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let claimed = try SHA256Hasher.digest(Array("claimed".utf8))
            let wrong = Self.bytes(4000, seed: 1)
            for _ in 0..<5 { #expect(throws: StoreError.self) { _ = try store.put(wrong, expected: claimed) } }
            let names = try SystemCalls.listDirectory(store.layout.quarantine).map { String(decoding: $0, as: UTF8.self) }
            #expect(names == [try SHA256Hasher.digest(wrong).rawValue], "one copy, named by the digest it has: \(names)")

            // Three more copies of other wrong bytes, oldest first.
            for seed in 2...4 {
                #expect(throws: StoreError.self) { _ = try store.put(Self.bytes(4000, seed: UInt8(seed)), expected: claimed) }
                Thread.sleep(forTimeInterval: 0.02)
            }
            let newest = store.layout.quarantine + "/" + (try SHA256Hasher.digest(Self.bytes(4000, seed: 4)).rawValue)
            #expect(try store.quarantinedFiles().count == 4)
            let freed = try store.trimQuarantine(limit: 8000, keeping: newest)
            let kept = try store.quarantinedFiles().map(\.path)
            #expect(freed == 8000 && kept.count == 2 && kept.contains(newest), "the two oldest went")
            #expect(try store.trimQuarantine(limit: 0, keeping: newest) == 4000)
            #expect(try store.quarantinedFiles().map(\.path) == [newest])
            #expect(try store.removeQuarantined(olderThanNs: 0).files == 0, "nothing is older than the epoch")
            let removed = try store.removeQuarantined(olderThanNs: .max)
            #expect(removed.files == 1 && removed.bytes == 4000)
        }
    }

    @Test func wrongSizeCommitsNothing() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let writer = try store.begin(expectedSize: 10)
            try writer.write(Self.bytes(9))
            #expect(throws: StoreError.sizeMismatch(path: "download", expected: 10, actual: 9)) { try writer.commit() }
            #expect(try store.blobsOnDisk().isEmpty)
            #expect(try Self.tempFiles(store).isEmpty)
        }
    }

    @Test func abortAndDeinitLeaveNothing() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let writer = try store.begin()
            try writer.write(Self.bytes(100))
            #expect(try Self.tempFiles(store).count == 1)
            writer.abort()
            #expect(throws: StoreError.transactionClosed) { try writer.write(Self.bytes(1)) }
            do {
                let dropped = try store.begin()
                try dropped.write(Self.bytes(100))
            }
            #expect(try Self.tempFiles(store).isEmpty)
        }
    }

    @Test func crashMidWriteLeavesOnlyATempFileThatTheNextStartRemoves() throws {
        try TempDirectory.with { dir in
            let layout = StoreLayout(home: dir.path)
            let store = try BlobStore(layout: layout, tempGraceNs: 0)
            let data = Self.bytes(200_000)
            let writer = try store.begin(expected: try SHA256Hasher.digest(data))
            try writer.write(Array(data[0..<100_000]))
            // A live writer's temp file is locked: cleanup by another opener must keep it.
            let concurrent = try BlobStore(layout: layout, tempGraceNs: 0)
            #expect(try concurrent.staleTempFiles().isEmpty)
            #expect(try Self.tempFiles(store).count == 1)
            // The "crash": descriptor closed, lock gone, file left behind, nothing committed.
            writer.abandon()
            #expect(try store.blobsOnDisk().isEmpty)
            _ = try BlobStore(layout: layout, tempGraceNs: 0)
            #expect(try Self.tempFiles(store).isEmpty)
            // With the default grace period a just-abandoned file is still kept (its writer may
            // be between creating and locking it).
            let writer2 = try store.begin()
            try writer2.write(Self.bytes(10))
            writer2.abandon()
            _ = try BlobStore(layout: layout)
            #expect(try Self.tempFiles(store).count == 1)
        }
    }

    @Test func adoptByHardLinkKeepsTheOriginalWorking() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path + "/home"))
            let data = Self.bytes(70_000)
            let original = try dir.write("models/loras/a.safetensors", data)
            let before = try SystemCalls.status(original)
            let adopted = try store.adopt(path: original, mode: .link)
            #expect(adopted.method == .hardLink)
            #expect(adopted.committed.digest == (try SHA256Hasher.digest(data)))
            let blob = try SystemCalls.status(store.layout.blobPath(adopted.committed.digest))
            #expect(blob.inode == before.inode)
            #expect(try readBytes(original) == data)
            #expect(blob.mode.rawValue & 0o777 == 0o444)
            #expect(try Self.tempFiles(store).isEmpty)
        }
    }

    @Test func adoptByCopyIsIndependent() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path + "/home"))
            let data = Self.bytes(70_000)
            let original = try dir.write("x.ckpt", data)
            let adopted = try store.adopt(path: original, mode: .copy)
            #expect([.reflink, .byteCopy].contains(adopted.method))
            let blob = try SystemCalls.status(store.layout.blobPath(adopted.committed.digest))
            #expect(blob.inode != (try SystemCalls.status(original)).inode)
            #expect(try readBytes(store.layout.blobPath(adopted.committed.digest)) == data)
            #expect(try SystemCalls.status(original).mode.rawValue & 0o200 != 0, "the original keeps its mode")
        }
    }

    @Test(.enabled(if: Btrfs.isAvailable, "needs root, loop devices and btrfs-progs"))
    func copyOnAReflinkFilesystemClones() throws {
        try Btrfs.with { fs in
            let store = try BlobStore(layout: StoreLayout(home: fs + "/home"))
            let data = Self.bytes(3 << 20, seed: 3)
            let original = fs + "/model.safetensors"
            try Data(data).write(to: URL(fileURLWithPath: original))
            let adopted = try store.adopt(path: original, mode: .copy)
            #expect(adopted.method == .reflink)
            let blobPath = store.layout.blobPath(adopted.committed.digest)
            #expect(try SystemCalls.status(blobPath).inode != (try SystemCalls.status(original)).inode)
            #expect(try readBytes(blobPath) == data)
            #expect(adopted.committed.digest == (try SHA256Hasher.digest(data)))
        }
    }

    @Test func moveRemovesTheOriginalOnlyWhenUnchanged() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path + "/home"))
            let original = try dir.write("a.bin", Self.bytes(1000))
            let adopted = try store.adopt(path: original, mode: .move)
            #expect(SystemCalls.exists(original), "adopt never removes the original itself")
            try store.removeOriginal(path: original, adopted: adopted)
            #expect(!SystemCalls.exists(original))
            #expect(store.contains(adopted.committed.digest))

            let other = try dir.write("b.bin", Self.bytes(1000, seed: 9))
            let adoptedCopy = try store.adopt(path: other, mode: .copy)
            // Replaced by other bytes after hashing: it must be kept.
            try SystemCalls.remove(other)
            try dir.write("b.bin", Self.bytes(1001, seed: 9))
            #expect(throws: StoreError.changedDuringRead(path: other)) { try store.removeOriginal(path: other, adopted: adoptedCopy) }
            #expect(SystemCalls.exists(other))
        }
    }

    @Test(arguments: [AdoptMode.link, .copy, .move])
    func aFileChangedWhileHashedIsRefused(_ mode: AdoptMode) throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path + "/home"))
            let path = try dir.write("growing.ckpt", Self.bytes(4 << 20))
            // After the first chunk is hashed, another writer appends to the file.
            let appended = Mutex(false)
            let error = #expect(throws: StoreError.self) {
                try store.adopt(path: path, mode: mode) { _ in
                    appended.withLock { done in
                        guard !done else { return }
                        done = true
                        if let handle = FileHandle(forWritingAtPath: path) {
                            handle.seekToEndOfFile()
                            handle.write(Data([1, 2, 3]))
                            try? handle.close()
                        }
                    }
                }
            }
            #expect(error == .changedDuringRead(path: path))
            #expect(try store.blobsOnDisk().isEmpty)
            #expect(try Self.tempFiles(store).isEmpty)
            #expect(try SystemCalls.status(path).size == (4 << 20) + 3, "the writer's data is intact")
        }
    }

    @Test func symlinkIsAdoptedThroughItsTarget() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path + "/home"))
            let data = Self.bytes(4096)
            let target = try dir.write("elsewhere/real.safetensors", data)
            let link = dir.path + "/link.safetensors"
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
            let adopted = try store.adopt(path: link, mode: .link)
            let blobPath = store.layout.blobPath(adopted.committed.digest)
            #expect(try !SystemCalls.linkStatus(blobPath).isSymlink)
            #expect(try readBytes(blobPath) == data)
        }
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs root to mount a tmpfs"))
    func acrossFilesystemsLinkFailsClearlyAndCopyWorks() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path + "/home"))
            try Tmpfs.with(sizeBytes: 8 << 20) { other in
                let data = Self.bytes(100_000)
                let path = other + "/m.safetensors"
                try Data(data).write(to: URL(fileURLWithPath: path))
                #expect(throws: StoreError.crossDevice(path: path, home: store.layout.home)) {
                    try store.adopt(path: path, mode: .link, allowCopyFallback: false)
                }
                #expect(try store.blobsOnDisk().isEmpty)
                let adopted = try store.adopt(path: path, mode: .move)
                #expect(adopted.method == .byteCopy)
                #expect(try readBytes(store.layout.blobPath(adopted.committed.digest)) == data)
                try store.removeOriginal(path: path, adopted: adopted)
                #expect(!SystemCalls.exists(path))
            }
        }
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs root to mount a tmpfs"))
    func fullDiskGivesAClearErrorAndLeavesNothingHalfWritten() throws {
        try TempDirectory.with { dir in
            let data = Self.bytes(3 << 20)
            let original = try dir.write("big.ckpt", data)
            try Tmpfs.with(sizeBytes: 1 << 20) { home in
                let store = try BlobStore(layout: StoreLayout(home: home))
                #expect {
                    try store.adopt(path: original, mode: .copy)
                } throws: { error in
                    (error as? StoreError)?.errno == .noSpace && "\(error)".contains("no space left")
                }
                #expect(try store.blobsOnDisk().isEmpty)
                #expect(try Self.tempFiles(store).isEmpty)
                #expect(try readBytes(original) == data)
            }
        }
    }

    @Test func verifyQuarantinesFlippedBytes() throws {
        try TempDirectory.with { dir in
            let store = try BlobStore(layout: StoreLayout(home: dir.path))
            let committed = try store.put(Self.bytes(10_000))
            #expect(try store.verify(committed.digest) == .intact)
            let path = store.layout.blobPath(committed.digest)
            try SystemCalls.changeMode(path, 0o644)
            var bytes = try readBytes(path)
            bytes[1234] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            guard case let .corrupt(actual, aside) = try store.verify(committed.digest) else {
                Issue.record("flipped byte not detected")
                return
            }
            #expect(actual == (try SHA256Hasher.digest(bytes)))
            #expect(!store.contains(committed.digest))
            #expect(try readBytes(aside) == bytes)
            #expect(try store.verify(committed.digest) == .missing)
        }
    }

    @Test func hashAllKeepsOrderAndReportsErrorsPerFile() throws {
        try TempDirectory.with { dir in
            let a = try dir.write("a", Self.bytes(10, seed: 1))
            let b = try dir.write("b", Self.bytes(2 << 20, seed: 2))
            let results = FileHasher.hashAll(paths: [b, dir.path + "/missing", a], workers: 2)
            #expect(try results[0].get().0 == (try SHA256Hasher.digest(Self.bytes(2 << 20, seed: 2))))
            #expect(try results[2].get().0 == (try SHA256Hasher.digest(Self.bytes(10, seed: 1))))
            guard case let .failure(error) = results[1] else {
                Issue.record("missing file hashed")
                return
            }
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }
}

@Suite struct ExternalHashTests {
    @Test func aTakenHasherFedElsewhereCommitsTheRightDigestAndAResumedPrefixIsInIt() throws {
        let dir = try TempDirectory("tsr-external-hash")
        defer { dir.remove() }
        let store = try BlobStore(layout: StoreLayout(home: dir.path))
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        // A resumed transaction: its first 100,000 bytes are re-hashed into the hasher taken.
        let first = try store.resume(key: "k")
        try first.write(Array(bytes[0..<100_000]))
        first.suspend()
        let writer = try store.resume(key: "k", expected: try SHA256Hasher.digest(bytes))
        let hasher = try #require(writer.takeHasher())
        let rest = Array(bytes[100_000...])
        try writer.write(rest)
        hasher.update(rest)
        #expect(try writer.commit().digest == (try SHA256Hasher.digest(bytes)))

        // Forgetting to feed it is caught by the expected digest, never committed.
        let careless = try store.begin(expected: try SHA256Hasher.digest(bytes))
        _ = try #require(careless.takeHasher())
        try careless.write(bytes)
        #expect(throws: StoreError.self) { try careless.commit() }

        // Bytes not written in order cannot be hashed by someone else.
        let scattered = try store.begin()
        try bytes.withUnsafeBytes { try scattered.write(UnsafeRawBufferPointer(rebasing: $0[10..<20]), at: 10) }
        #expect(scattered.takeHasher() == nil)
        scattered.abort()
    }
}
