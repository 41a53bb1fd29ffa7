import TSRRegistry

/// What `tsr stats --json` and `GET /stats` report about a home: the registry's totals (their
/// fields at the top level) with the home, the workflow count and, in the API, running downloads.
public struct StatsReport: Sendable, Encodable {
    public var home: String
    public var stats: RegistryStats
    public var workflows: Int
    /// Downloads running in the process that answers (the API only).
    public var downloadsActive: Int?

    public func encode(to encoder: any Encoder) throws {
        try stats.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(home, forKey: .home)
        try container.encode(workflows, forKey: .workflows)
        try container.encodeIfPresent(downloadsActive, forKey: .downloadsActive)
    }

    enum CodingKeys: String, CodingKey {
        case home, workflows
        case downloadsActive = "downloads_active"
    }
}

extension Library {
    public func statsReport() throws(LibraryError) -> StatsReport {
        do {
            return StatsReport(home: layout.home, stats: try registry.stats(), workflows: try registry.workflows().count)
        } catch {
            throw .registry(error)
        }
    }
}
