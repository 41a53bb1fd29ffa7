import Foundation

/// What a numbered fault scenario did, appended as one JSON line to the ledger that
/// scripts/test.sh sums into the suite's closing report ("scenarios run, faults injected, bytes
/// lost, wrong bytes served"). The ledger is `$TSR_SCENARIO_LEDGER`, else
/// `.build/scenarios.ndjson` in the package.
public struct ScenarioRecord: Codable, Sendable {
    public var id: String
    public var title: String
    public var faultsInjected: Int
    /// Bytes read back and compared against their SHA-256.
    public var bytesChecked: Int64
    /// Committed bytes that could not be found again (must be 0).
    public var bytesLost: Int64
    /// Bytes served that differ from what their name stands for (must be 0).
    public var wrongBytesServed: Int64

    enum CodingKeys: String, CodingKey {
        case id, title
        case faultsInjected = "faults_injected", bytesChecked = "bytes_checked", bytesLost = "bytes_lost", wrongBytesServed = "wrong_bytes_served"
    }

    public init(id: String, title: String, faultsInjected: Int = 0, bytesChecked: Int64 = 0, bytesLost: Int64 = 0, wrongBytesServed: Int64 = 0) {
        self.id = id
        self.title = title
        self.faultsInjected = faultsInjected
        self.bytesChecked = bytesChecked
        self.bytesLost = bytesLost
        self.wrongBytesServed = wrongBytesServed
    }

    public static var ledgerPath: String {
        ProcessInfo.processInfo.environment["TSR_SCENARIO_LEDGER"] ?? BuildProducts.packageRoot + "/.build/scenarios.ndjson"
    }

    /// Appends this record to the ledger (O_APPEND: concurrent scenarios do not interleave lines).
    public func record() {
        guard let data = try? JSONEncoder().encode(self) else { return }
        let fd = open(Self.ledgerPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let line = data + Data("\n".utf8)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
