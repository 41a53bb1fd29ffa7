import TSRRegistry

/// What `tsr stats --json` and `GET /stats` report about a home.
public struct StatsReport: Sendable, Codable, Equatable {
    public var home: String
    public var blobs: Int
    public var remoteBlobs: Int
    public var quarantinedBlobs: Int
    public var aliases: Int
    public var bytesStored: Int64
    public var bytesSaved: Int64
    public var folders: [RegistryStats.Folder]
    public var workflows: Int
    /// Downloads running in the process that answers (the API only).
    public var downloadsActive: Int?

    enum CodingKeys: String, CodingKey {
        case home, blobs, aliases, folders, workflows
        case remoteBlobs = "remote_blobs", quarantinedBlobs = "quarantined_blobs"
        case bytesStored = "bytes_stored", bytesSaved = "bytes_saved", downloadsActive = "downloads_active"
    }
}

extension Library {
    public func statsReport() throws(LibraryError) -> StatsReport {
        do {
            let stats = try registry.stats()
            return StatsReport(
                home: layout.home, blobs: stats.blobs, remoteBlobs: stats.remoteBlobs, quarantinedBlobs: stats.quarantinedBlobs,
                aliases: stats.aliases, bytesStored: stats.bytesStored, bytesSaved: stats.bytesSaved, folders: stats.folders,
                workflows: try registry.workflows().count)
        } catch {
            throw .registry(error)
        }
    }
}
