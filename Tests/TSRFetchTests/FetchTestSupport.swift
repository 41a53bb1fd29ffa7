import Foundation
import Synchronization
import TSRFetch
import TSRLibrary
import TSRStore
import TSRTesting

/// A home plus fetch settings tuned for tests (short backoff and stall limits).
struct FetchHome {
    let dir: TempDirectory
    let library: Library

    init(_ label: String = "tsr-fetch", home: String? = nil) throws {
        dir = try TempDirectory(label)
        library = try Library(home: home ?? dir.path + "/home")
    }

    static func settings() -> FetchSettings {
        var settings = FetchSettings()
        settings.backoffBase = .milliseconds(10)
        settings.maxBackoff = .milliseconds(50)
        settings.limits.lowSpeedTime = .seconds(1)
        settings.limits.lowSpeedBytes = 1024
        settings.maxAttempts = 4
        return settings
    }

    func downloader(settings: FetchSettings = FetchHome.settings(), credentials: Credentials = Credentials()) -> Downloader {
        Downloader(store: library.store, registry: library.registry, settings: settings, credentials: credentials)
    }

    /// Every file under the home, read whole (for the "no secret written" checks).
    func everyByte() throws -> [UInt8] {
        var all: [UInt8] = []
        let root = library.layout.home
        let walker = FileManager.default.enumerator(atPath: root)
        while let relative = walker?.nextObject() as? String {
            let path = root + "/" + relative
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            all += (try? readBytes(path)) ?? []
        }
        return all
    }

    func remove() { dir.remove() }
}

/// Deterministic pseudo-random bytes.
func testBytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

/// A counter handlers can share.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    /// Increments and returns the new value.
    @discardableResult func next() -> Int { value.add(1, ordering: .relaxed).newValue }
    var count: Int { value.load(ordering: .relaxed) }
}

extension [UInt8] {
    func contains(_ needle: String) -> Bool {
        let n = Array(needle.utf8)
        guard !n.isEmpty, count >= n.count else { return false }
        for i in 0...(count - n.count) where self[i] == n[0] && Array(self[i..<(i + n.count)]) == n { return true }
        return false
    }
}
