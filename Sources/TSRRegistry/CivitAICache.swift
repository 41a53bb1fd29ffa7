import Foundation
import GRDB
import TSRStore

/// A CivitAI model as the cache stores it, built by TSRCivitAI from any era's JSON. Fields the
/// response lacked are nil and stored as NULL.
public struct CachedModel: Sendable, Equatable {
    public var civitaiId: Int64
    public var name: String
    public var description: String?
    public var type: String
    public var nsfw: Bool?
    public var nsfwLevel: Int?
    public var poi: Bool?
    public var allowCommercialUse: String?
    public var creator: String?
    public var creatorImage: String?
    public var downloadCount: Int?
    public var thumbsUpCount: Int?
    public var tags: [String]
    public var versions: [CachedVersion]
    /// True when this came from `/models/{id}` (all versions, all fields); false for a version
    /// response, which must not erase what a full response stored.
    public var complete: Bool

    public init(
        civitaiId: Int64, name: String, description: String? = nil, type: String, nsfw: Bool? = nil, nsfwLevel: Int? = nil,
        poi: Bool? = nil, allowCommercialUse: String? = nil, creator: String? = nil, creatorImage: String? = nil,
        downloadCount: Int? = nil, thumbsUpCount: Int? = nil, tags: [String] = [], versions: [CachedVersion] = [], complete: Bool
    ) {
        self.civitaiId = civitaiId
        self.name = name
        self.description = description
        self.type = type
        self.nsfw = nsfw
        self.nsfwLevel = nsfwLevel
        self.poi = poi
        self.allowCommercialUse = allowCommercialUse
        self.creator = creator
        self.creatorImage = creatorImage
        self.downloadCount = downloadCount
        self.thumbsUpCount = thumbsUpCount
        self.tags = tags
        self.versions = versions
        self.complete = complete
    }
}

public struct CachedVersion: Sendable, Equatable {
    public var civitaiId: Int64
    public var name: String
    public var description: String?
    public var baseModel: String?
    public var baseModelType: String?
    public var downloadURL: String?
    public var air: String?
    /// 0 is the newest; nil when unknown (a version response).
    public var index: Int?
    public var publishedAt: String?
    public var downloadCount: Int?
    public var thumbsUpCount: Int?
    public var trainedWords: [String]
    public var files: [CachedFile]
    public var images: [CachedImage]

    public init(
        civitaiId: Int64, name: String, description: String? = nil, baseModel: String? = nil, baseModelType: String? = nil,
        downloadURL: String? = nil, air: String? = nil, index: Int? = nil, publishedAt: String? = nil, downloadCount: Int? = nil,
        thumbsUpCount: Int? = nil, trainedWords: [String] = [], files: [CachedFile] = [], images: [CachedImage] = []
    ) {
        self.civitaiId = civitaiId
        self.name = name
        self.description = description
        self.baseModel = baseModel
        self.baseModelType = baseModelType
        self.downloadURL = downloadURL
        self.air = air
        self.index = index
        self.publishedAt = publishedAt
        self.downloadCount = downloadCount
        self.thumbsUpCount = thumbsUpCount
        self.trainedWords = trainedWords
        self.files = files
        self.images = images
    }
}

public struct CachedFile: Sendable, Equatable {
    public var civitaiId: Int64?
    public var name: String?
    public var sizeKB: Double?
    public var type: String?
    public var format: String?
    public var fp: String?
    public var size: String?
    public var primary: Bool?
    public var downloadURL: String?
    public var pickleScanResult: String?
    public var virusScanResult: String?
    /// Hash type (SHA256, AutoV2, BLAKE3 …) → value, upper-case hex as CivitAI prints it.
    public var hashes: [String: String]

    public init(
        civitaiId: Int64? = nil, name: String? = nil, sizeKB: Double? = nil, type: String? = nil, format: String? = nil, fp: String? = nil,
        size: String? = nil, primary: Bool? = nil, downloadURL: String? = nil, pickleScanResult: String? = nil,
        virusScanResult: String? = nil, hashes: [String: String] = [:]
    ) {
        self.civitaiId = civitaiId
        self.name = name
        self.sizeKB = sizeKB
        self.type = type
        self.format = format
        self.fp = fp
        self.size = size
        self.primary = primary
        self.downloadURL = downloadURL
        self.pickleScanResult = pickleScanResult
        self.virusScanResult = virusScanResult
        self.hashes = hashes
    }
}

public struct CachedImage: Sendable, Equatable {
    public var civitaiId: Int64?
    public var url: String?
    public var width: Int?
    public var height: Int?
    /// As the response had it: "true"/"false", "None"/"Soft"/"Mature"/"X".
    public var nsfw: String?
    public var nsfwLevel: Int?
    public var hash: String?
    public var type: String?
    /// Generation parameters (`meta`): prompt, negativePrompt, sampler, steps, cfgScale, seed …
    public var params: [String: String]
    public var resources: [CachedResource]

    public init(
        civitaiId: Int64? = nil, url: String? = nil, width: Int? = nil, height: Int? = nil, nsfw: String? = nil, nsfwLevel: Int? = nil,
        hash: String? = nil, type: String? = nil, params: [String: String] = [:], resources: [CachedResource] = []
    ) {
        self.civitaiId = civitaiId
        self.url = url
        self.width = width
        self.height = height
        self.nsfw = nsfw
        self.nsfwLevel = nsfwLevel
        self.hash = hash
        self.type = type
        self.params = params
        self.resources = resources
    }
}

public struct CachedResource: Sendable, Equatable {
    public var name: String?
    public var type: String?
    public var hash: String?
    public var weight: Double?
    public var modelVersionId: Int64?

    public init(name: String? = nil, type: String? = nil, hash: String? = nil, weight: Double? = nil, modelVersionId: Int64? = nil) {
        self.name = name
        self.type = type
        self.hash = hash
        self.weight = weight
        self.modelVersionId = modelVersionId
    }
}

/// A linked file's CivitAI facts.
public struct CivitAILink: Sendable, Equatable {
    public var modelId: Int64
    public var versionId: Int64
    public var modelName: String
    public var versionName: String
    public var type: String
    public var baseModel: String?
    public var creator: String?
}

/// A linked file's place among its model's versions: the newest version the cache lists, and
/// whether it is an update (another version, none of whose files is in the registry).
public struct CivitAIStatus: Sendable, Equatable, Encodable {
    public var link: CivitAILink
    public var newestVersionId: Int64?
    public var newestVersionName: String?
    public var updateAvailable: Bool

    enum CodingKeys: String, CodingKey {
        case type, creator
        case modelId = "model_id", versionId = "version_id", modelName = "model_name", versionName = "version_name", baseModel = "base_model"
        case newestVersionId = "newest_version_id", newestVersionName = "newest_version_name", updateAvailable = "update_available"
    }

    /// The JSON shape `tsr info`, `tsr db list` and the API share (docs/CLI.md, docs/API.md).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(link.modelId, forKey: .modelId)
        try container.encode(link.versionId, forKey: .versionId)
        try container.encode(link.modelName, forKey: .modelName)
        try container.encode(link.versionName, forKey: .versionName)
        try container.encode(link.type, forKey: .type)
        try container.encodeIfPresent(link.baseModel, forKey: .baseModel)
        try container.encodeIfPresent(link.creator, forKey: .creator)
        try container.encodeIfPresent(newestVersionId, forKey: .newestVersionId)
        try container.encodeIfPresent(newestVersionName, forKey: .newestVersionName)
        try container.encode(updateAvailable, forKey: .updateAvailable)
    }
}

/// One example image's generation parameters.
public struct ExamplePrompt: Sendable, Equatable {
    public var versionId: Int64
    public var imageURL: String?
    public var params: [String: String]
    public var resources: [CachedResource]
}

/// One search result.
public struct ModelHit: Sendable, Equatable {
    public var civitaiId: Int64
    public var name: String
    public var type: String
    public var creator: String?
    public var baseModel: String?
    public var latestVersion: String?
    public var downloadCount: Int?
    public var tags: [String]
    public var triggerWords: [String]
}

extension Registry {
    /// Stores a model with its creator, tags and versions in one transaction. Each version's
    /// trained words, files, hashes and images are replaced by the new ones, so re-caching
    /// updates every field of every version. A complete response also replaces the tags and
    /// marks versions CivitAI no longer lists (`version_index` NULL); a version response fills in
    /// without erasing what a complete one stored. Bumps the generation: the mount's by-base and
    /// by-creator views follow.
    public func cacheModel(_ model: CachedModel) throws(RegistryError) {
        try cacheModels([model])
    }

    /// Caches several models in one transaction (a page of search results).
    public func cacheModels(_ models: [CachedModel]) throws(RegistryError) {
        guard !models.isEmpty else { return }
        try write { db in
            for model in models { try Self.cacheModel(model, db) }
            try db.execute(sql: "UPDATE registry_generation SET generation = generation + 1")
            // By-base and by-creator follow CivitAI data: mounts refresh those views.
            try db.execute(sql: "INSERT INTO mount_changes (folder) VALUES (NULL)")
        }
    }

    static func cacheModel(_ model: CachedModel, _ db: Database) throws {
        var creatorId: Int64?
        if let creator = model.creator, !creator.isEmpty {
            try db.execute(
                sql: "INSERT INTO creators (username, image_url) VALUES (?, ?) ON CONFLICT(username) DO UPDATE SET image_url = COALESCE(excluded.image_url, creators.image_url)",
                arguments: [creator, model.creatorImage])
            creatorId = try Int64.fetchOne(db, sql: "SELECT id FROM creators WHERE username = ?", arguments: [creator])
        }
        let merge = model.complete ? "excluded.%@" : "COALESCE(excluded.%@, models.%@)"
        func set(_ column: String) -> String { "\(column) = " + String(format: merge, column, column) }
        try db.execute(
            sql: """
                INSERT INTO models (civitai_id, name, description, type, nsfw, nsfw_level, poi, allow_commercial_use, creator_id,
                                    download_count, thumbs_up_count, cached_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(civitai_id) DO UPDATE SET name = excluded.name, type = excluded.type, cached_at = excluded.cached_at,
                    \(["description", "nsfw", "nsfw_level", "poi", "allow_commercial_use", "creator_id", "download_count", "thumbs_up_count"].map(set).joined(separator: ", "))
                """,
            arguments: [
                model.civitaiId, model.name, model.description, model.type, model.nsfw, model.nsfwLevel, model.poi,
                model.allowCommercialUse, creatorId, model.downloadCount, model.thumbsUpCount, Date(),
            ])
        guard let modelId = try Int64.fetchOne(db, sql: "SELECT id FROM models WHERE civitai_id = ?", arguments: [model.civitaiId]) else { return }
        if model.complete {
            try db.execute(sql: "DELETE FROM model_tags WHERE model_id = ?", arguments: [modelId])
            for tag in model.tags {
                try db.execute(sql: "INSERT INTO tags (name) VALUES (?) ON CONFLICT(name) DO NOTHING", arguments: [tag])
                try db.execute(
                    sql: "INSERT OR IGNORE INTO model_tags (model_id, tag_id) SELECT ?, id FROM tags WHERE name = ?", arguments: [modelId, tag])
            }
            try db.execute(
                sql: "UPDATE model_versions SET version_index = NULL WHERE model_id = ? AND civitai_id NOT IN (\(model.versions.map { _ in "?" }.joined(separator: ",")))",
                arguments: StatementArguments([modelId] + model.versions.map(\.civitaiId)))
        }
        for version in model.versions { try Self.cacheVersion(version, modelId: modelId, complete: model.complete, db) }
        try Self.indexForSearch(modelId: modelId, db)
    }

    static func cacheVersion(_ version: CachedVersion, modelId: Int64, complete: Bool, _ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO model_versions (civitai_id, model_id, name, description, base_model, base_model_type, download_url, air,
                                            version_index, published_at, download_count, thumbs_up_count)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(civitai_id) DO UPDATE SET model_id = excluded.model_id, name = excluded.name,
                    description = COALESCE(excluded.description, model_versions.description),
                    base_model = COALESCE(excluded.base_model, model_versions.base_model),
                    base_model_type = COALESCE(excluded.base_model_type, model_versions.base_model_type),
                    download_url = COALESCE(excluded.download_url, model_versions.download_url),
                    air = COALESCE(excluded.air, model_versions.air),
                    version_index = \(complete ? "excluded.version_index" : "COALESCE(excluded.version_index, model_versions.version_index)"),
                    published_at = COALESCE(excluded.published_at, model_versions.published_at),
                    download_count = COALESCE(excluded.download_count, model_versions.download_count),
                    thumbs_up_count = COALESCE(excluded.thumbs_up_count, model_versions.thumbs_up_count)
                """,
            arguments: [
                version.civitaiId, modelId, version.name, version.description, version.baseModel, version.baseModelType,
                version.downloadURL, version.air, version.index, version.publishedAt, version.downloadCount, version.thumbsUpCount,
            ])
        guard let versionId = try Int64.fetchOne(db, sql: "SELECT id FROM model_versions WHERE civitai_id = ?", arguments: [version.civitaiId]) else { return }
        try db.execute(sql: "DELETE FROM trained_words WHERE version_id = ?", arguments: [versionId])
        for (position, word) in version.trainedWords.enumerated() {
            try db.execute(sql: "INSERT INTO trained_words (version_id, word, position) VALUES (?, ?, ?)", arguments: [versionId, word, position])
        }
        try db.execute(sql: "DELETE FROM version_files WHERE version_id = ?", arguments: [versionId])
        for file in version.files {
            // A file id seen under another version (CivitAI moved it) follows this response.
            if let id = file.civitaiId { try db.execute(sql: "DELETE FROM version_files WHERE civitai_id = ?", arguments: [id]) }
            try db.execute(
                sql: """
                    INSERT INTO version_files (civitai_id, version_id, name, size_kb, type, format, fp, size, is_primary, download_url,
                                               pickle_scan_result, virus_scan_result)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    file.civitaiId, versionId, file.name, file.sizeKB, file.type, file.format, file.fp, file.size, file.primary,
                    file.downloadURL, file.pickleScanResult, file.virusScanResult,
                ])
            let fileId = db.lastInsertedRowID
            for (type, value) in file.hashes.sorted(by: { $0.key < $1.key }) {
                try db.execute(
                    sql: "INSERT INTO file_hashes (file_id, hash_type, hash_value) VALUES (?, ?, ?)", arguments: [fileId, type, value.uppercased()])
            }
        }
        // `/models/{id}` stopped sending image `meta` in 2025 while `/model-versions/{id}` still
        // does: an image that comes back without parameters keeps the ones stored before.
        var kept: [String: (params: [String: String], resources: [CachedResource])] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, url, civitai_id FROM version_images WHERE version_id = ?", arguments: [versionId]) {
            let imageId: Int64 = row["id"]
            var params: [String: String] = [:]
            for param in try Row.fetchAll(db, sql: "SELECT key, value FROM image_generation_params WHERE image_id = ?", arguments: [imageId]) {
                params[param["key"]] = param["value"]
            }
            guard !params.isEmpty else { continue }
            let resources = try Row.fetchAll(
                db, sql: "SELECT name, type, hash, weight, model_version_id FROM image_resources WHERE image_id = ? ORDER BY id", arguments: [imageId]
            ).map { CachedResource(name: $0["name"], type: $0["type"], hash: $0["hash"], weight: $0["weight"], modelVersionId: $0["model_version_id"]) }
            for key in [(row["url"] as String?).map(Self.imageKey), (row["civitai_id"] as Int64?).map { "id:\($0)" }].compactMap({ $0 }) {
                kept[key] = (params, resources)
            }
        }
        try db.execute(sql: "DELETE FROM version_images WHERE version_id = ?", arguments: [versionId])
        for (position, var image) in version.images.enumerated() {
            if image.params.isEmpty,
                let old = [image.url.map(Self.imageKey), image.civitaiId.map { "id:\($0)" }].compactMap({ $0 }).lazy.compactMap({ kept[$0] }).first
            {
                image.params = old.params
                image.resources = old.resources
            }
            try db.execute(
                sql: """
                    INSERT INTO version_images (version_id, civitai_id, url, width, height, nsfw, nsfw_level, hash, type, position)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [versionId, image.civitaiId, image.url, image.width, image.height, image.nsfw, image.nsfwLevel, image.hash, image.type, position])
            let imageId = db.lastInsertedRowID
            for (key, value) in image.params.sorted(by: { $0.key < $1.key }) {
                try db.execute(sql: "INSERT INTO image_generation_params (image_id, key, value) VALUES (?, ?, ?)", arguments: [imageId, key, value])
            }
            for resource in image.resources {
                try db.execute(
                    sql: "INSERT INTO image_resources (image_id, name, type, hash, weight, model_version_id) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [imageId, resource.name, resource.type, resource.hash, resource.weight, resource.modelVersionId])
            }
        }
    }

    /// An image URL without its size transform (`…/<uuid>/width=832/<name>` and
    /// `…/<uuid>/original=true/<name>` are the same image).
    static func imageKey(_ url: String) -> String {
        var parts = url.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count >= 6, parts[parts.count - 2].contains("=") { parts.remove(at: parts.count - 2) }
        return parts.joined(separator: "/")
    }

    /// Rewrites a model's row of the search index from what is stored.
    static func indexForSearch(modelId: Int64, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM models_fts WHERE rowid = ?", arguments: [modelId])
        try db.execute(
            sql: """
                INSERT INTO models_fts (rowid, name, tags, creator, words)
                SELECT m.id, m.name,
                       COALESCE((SELECT group_concat(t.name, ' ') FROM model_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.model_id = m.id), ''),
                       COALESCE(c.username, ''),
                       COALESCE((SELECT group_concat(tw.word, ' ') FROM trained_words tw JOIN model_versions mv ON mv.id = tw.version_id WHERE mv.model_id = m.id), '')
                FROM models m LEFT JOIN creators c ON c.id = m.creator_id WHERE m.id = ?
                """,
            arguments: [modelId])
    }

    // MARK: Linking

    /// SHA-256s of blobs and scanned files not linked to CivitAI yet and not known to be absent
    /// there (unless `retryUnknown`).
    public func civitaiLinkCandidates(retryUnknown: Bool) throws(RegistryError) -> [Digest] {
        try read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT sha256 FROM (SELECT sha256 FROM blobs WHERE state != 'quarantined' UNION SELECT sha256 FROM local_files) s
                    WHERE NOT EXISTS (SELECT 1 FROM file_hashes fh WHERE fh.hash_type = 'SHA256' AND fh.hash_value = upper(s.sha256))
                      AND NOT EXISTS (SELECT 1 FROM civitai_lookups l WHERE l.sha256 = s.sha256 AND (l.status = 'found' OR ?))
                    ORDER BY sha256
                    """,
                arguments: [!retryUnknown]
            ).compactMap(Digest.init(rawValue:))
        }
    }

    /// Remembers the answer CivitAI gave about a SHA-256.
    public func recordCivitAILookup(_ digest: Digest, found: Bool) throws(RegistryError) {
        try write { db in
            try db.execute(
                sql: "INSERT INTO civitai_lookups (sha256, status, checked_at) VALUES (?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET status = excluded.status, checked_at = excluded.checked_at",
                arguments: [digest, found ? "found" : "not_found", Date()])
        }
    }

    /// The link of a file with this SHA-256 and its model's newest version (`tsr info`, `tsr db
    /// list`, `tsr outdated`, `GET /models/{sha256}`: one definition of "update available").
    public func civitaiStatus(_ digest: Digest) throws(RegistryError) -> CivitAIStatus? {
        try read { db in
            guard let link = try Self.civitaiLink(digest, db) else { return nil }
            let newest = try Row.fetchOne(
                db,
                sql: """
                    SELECT v.civitai_id, v.name FROM model_versions v JOIN models m ON m.id = v.model_id
                    WHERE m.civitai_id = ? AND v.version_index IS NOT NULL ORDER BY v.version_index LIMIT 1
                    """,
                arguments: [link.modelId])
            let newestId: Int64? = newest?[0]
            var update = false
            if let newestId, newestId != link.versionId {
                // Not an update if a file of the newest version is here (or registered) already.
                let here = try Bool.fetchOne(
                    db,
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM file_hashes fh JOIN version_files vf ON vf.id = fh.file_id
                                       JOIN model_versions mv ON mv.id = vf.version_id
                                       WHERE mv.civitai_id = ? AND fh.hash_type = 'SHA256'
                                         AND (lower(fh.hash_value) IN (SELECT sha256 FROM blobs WHERE state != 'quarantined')
                                              OR lower(fh.hash_value) IN (SELECT sha256 FROM local_files)))
                        """,
                    arguments: [newestId]) ?? false
                update = !here
            }
            return CivitAIStatus(link: link, newestVersionId: newestId, newestVersionName: newest?[1], updateAvailable: update)
        }
    }

    /// The cached version a file with this SHA-256 belongs to.
    public func civitaiLink(_ digest: Digest) throws(RegistryError) -> CivitAILink? {
        try read { db in try Self.civitaiLink(digest, db) }
    }

    /// Writes the CivitAI model and version of every scanned file into `local_files` (the columns
    /// the seed's `v_local_files_full` joins on) from the cache: set where the cache knows the
    /// file's SHA-256, cleared where it no longer does. Returns how many files changed.
    @discardableResult
    public func linkLocalFiles() throws(RegistryError) -> Int {
        try write { db in
            var changed = 0
            for row in try Row.fetchAll(db, sql: "SELECT id, sha256, civitai_model_id, civitai_version_id FROM local_files") {
                guard let digest = Digest(rawValue: row["sha256"]) else { continue }
                let link = try Self.civitaiLink(digest, db)
                let model: Int64? = row["civitai_model_id"], version: Int64? = row["civitai_version_id"]
                guard link?.modelId != model || link?.versionId != version else { continue }
                try db.execute(
                    sql: "UPDATE local_files SET civitai_model_id = ?, civitai_version_id = ?, updated_at = ? WHERE id = ?",
                    arguments: [link?.modelId, link?.versionId, Date(), row["id"] as Int64])
                changed += 1
            }
            return changed
        }
    }

    static func civitaiLink(_ digest: Digest, _ db: Database) throws -> CivitAILink? {
            guard let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT m.civitai_id AS model_id, mv.civitai_id AS version_id, m.name AS model_name, mv.name AS version_name,
                           m.type, mv.base_model, c.username AS creator
                    FROM file_hashes fh JOIN version_files vf ON vf.id = fh.file_id JOIN model_versions mv ON mv.id = vf.version_id
                    JOIN models m ON m.id = mv.model_id LEFT JOIN creators c ON c.id = m.creator_id
                    WHERE fh.hash_type = 'SHA256' AND fh.hash_value = ? ORDER BY mv.version_index IS NULL, mv.version_index LIMIT 1
                    """,
                arguments: [digest.rawValue.uppercased()])
            else { return nil }
            return CivitAILink(
                modelId: row["model_id"], versionId: row["version_id"], modelName: row["model_name"], versionName: row["version_name"],
                type: row["type"], baseModel: row["base_model"], creator: row["creator"])
    }

    /// Trigger words of a cached version, in order.
    public func triggerWords(versionId: Int64) throws(RegistryError) -> [String] {
        try read { db in
            try String.fetchAll(
                db,
                sql: "SELECT tw.word FROM trained_words tw JOIN model_versions mv ON mv.id = tw.version_id WHERE mv.civitai_id = ? ORDER BY tw.position",
                arguments: [versionId])
        }
    }

    /// Generation parameters of the example images of some versions (by CivitAI id), in order.
    public func examplePrompts(versionIds: [Int64]) throws(RegistryError) -> [ExamplePrompt] {
        guard !versionIds.isEmpty else { return [] }
        return try read { db in
            let images = try Row.fetchAll(
                db,
                sql: """
                    SELECT vi.id, vi.url, mv.civitai_id AS version FROM version_images vi JOIN model_versions mv ON mv.id = vi.version_id
                    WHERE mv.civitai_id IN (\(versionIds.map { _ in "?" }.joined(separator: ",")))
                    ORDER BY mv.version_index IS NULL, mv.version_index, vi.position
                    """,
                arguments: StatementArguments(versionIds))
            return try images.compactMap { image -> ExamplePrompt? in
                let imageId: Int64 = image["id"]
                var params: [String: String] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT key, value FROM image_generation_params WHERE image_id = ?", arguments: [imageId]) {
                    params[row["key"]] = row["value"]
                }
                guard !params.isEmpty else { return nil }
                let resources = try Row.fetchAll(
                    db, sql: "SELECT name, type, hash, weight, model_version_id FROM image_resources WHERE image_id = ? ORDER BY id", arguments: [imageId]
                ).map { CachedResource(name: $0["name"], type: $0["type"], hash: $0["hash"], weight: $0["weight"], modelVersionId: $0["model_version_id"]) }
                return ExamplePrompt(versionId: image["version"], imageURL: image["url"], params: params, resources: resources)
            }
        }
    }

    /// CivitAI ids of a cached model's versions, newest first.
    public func versionIds(modelId: Int64) throws(RegistryError) -> [Int64] {
        try read { db in
            try Int64.fetchAll(
                db,
                sql: "SELECT mv.civitai_id FROM model_versions mv JOIN models m ON m.id = mv.model_id WHERE m.civitai_id = ? ORDER BY mv.version_index IS NULL, mv.version_index",
                arguments: [modelId])
        }
    }

    /// Offline search of cached models: FTS5 over names, tags, creators and trigger words,
    /// ranked by bm25 (names weigh most), then downloads; no query lists by downloads.
    public func searchModels(query: String?, type: String?, baseModel: String?, limit: Int) throws(RegistryError) -> [ModelHit] {
        try read { db in
            var conditions: [String] = []
            var arguments: [(any DatabaseValueConvertible)?] = []
            var from = "models m"
            var order = "m.download_count DESC, m.name"
            if let query, let match = Self.ftsQuery(query) {
                from = "models_fts f JOIN models m ON m.id = f.rowid"
                conditions.append("models_fts MATCH ?")
                arguments.append(match)
                order = "bm25(models_fts, 10.0, 3.0, 3.0, 5.0), m.download_count DESC"
            }
            if let type {
                conditions.append("lower(m.type) = lower(?)")
                arguments.append(type)
            }
            if let baseModel {
                conditions.append("EXISTS (SELECT 1 FROM model_versions b WHERE b.model_id = m.id AND lower(b.base_model) = lower(?))")
                arguments.append(baseModel)
            }
            arguments.append(limit)
            // Rank and cut first; only the rows kept get their latest version looked up.
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT m.id, m.civitai_id, m.name, m.type, m.download_count, c.username AS creator,
                           (SELECT mv.base_model FROM model_versions mv WHERE mv.model_id = m.id ORDER BY mv.version_index IS NULL, mv.version_index LIMIT 1) AS base_model,
                           (SELECT mv.name FROM model_versions mv WHERE mv.model_id = m.id ORDER BY mv.version_index IS NULL, mv.version_index LIMIT 1) AS latest
                    FROM (
                        SELECT m.id, ROW_NUMBER() OVER (ORDER BY \(order)) AS position FROM \(from)
                        \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
                        ORDER BY \(order) LIMIT ?
                    ) top
                    JOIN models m ON m.id = top.id LEFT JOIN creators c ON c.id = m.creator_id
                    ORDER BY top.position
                    """,
                arguments: StatementArguments(arguments))
            return try rows.map { row in
                let id: Int64 = row["id"]
                let tags = try String.fetchAll(db, sql: "SELECT t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.model_id = ? ORDER BY t.name", arguments: [id])
                let words = try String.fetchAll(
                    db,
                    sql: """
                        SELECT tw.word FROM trained_words tw JOIN model_versions mv ON mv.id = tw.version_id
                        WHERE mv.model_id = ? ORDER BY mv.version_index IS NULL, mv.version_index, tw.position LIMIT 200
                        """, arguments: [id])
                // Versions usually share their trigger words: each once, newest version's order.
                var seen = Set<String>()
                let distinct = Array(words.filter { seen.insert($0).inserted }.prefix(20))
                return ModelHit(
                    civitaiId: row["civitai_id"], name: row["name"], type: row["type"], creator: row["creator"], baseModel: row["base_model"],
                    latestVersion: row["latest"], downloadCount: row["download_count"], tags: tags, triggerWords: distinct)
            }
        }
    }

    /// A user's words as an FTS5 query: each word a quoted prefix term, all required.
    static func ftsQuery(_ text: String) -> String? {
        let words = text.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { "\"\($0.replacingOccurrences(of: "\"", with: ""))\"*" }
        return words.isEmpty ? nil : words.joined(separator: " ")
    }
}

extension Registry {
    /// A single integer from a query, for this package's tests only (arguments bound as text,
    /// which SQLite compares with integers by affinity).
    package func count(_ sql: String, _ arguments: [String] = []) throws(RegistryError) -> Int {
        try read { db in try Int.fetchOne(db, sql: sql, arguments: StatementArguments(arguments)) ?? 0 }
    }
}

extension Registry {
    /// The seed system's search (`name LIKE '%q%'` joined to the latest version): the baseline
    /// of bench/SearchBench. Not used by tsr itself.
    package func searchModelsLikeSeed(_ query: String, limit: Int) throws(RegistryError) -> Int {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT m.*, mv.base_model, mv.download_url FROM models m
                    JOIN model_versions mv ON mv.model_id = m.id AND mv.version_index = 0
                    WHERE m.name LIKE ? LIMIT ?
                    """,
                arguments: ["%\(query)%", limit]
            ).count
        }
    }
}
