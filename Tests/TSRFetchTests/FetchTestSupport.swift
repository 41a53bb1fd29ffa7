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
    func everyByte() throws -> [UInt8] { TSRTesting.everyByte(under: library.layout.home) }

    func remove() { dir.remove() }
}

/// A counter handlers can share.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    /// Increments and returns the new value.
    @discardableResult func next() -> Int { value.add(1, ordering: .relaxed).newValue }
    var count: Int { value.load(ordering: .relaxed) }
}
