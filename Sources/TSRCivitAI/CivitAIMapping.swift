import Foundation
import TSRRegistry

/// # TSRCivitAI
///
/// CivitAI's REST API and the mapping of its JSON into the registry's cache tables. Responses
/// drift between years (shared/fixtures/civitai/SOURCES.md): `allowCommercialUse` is a string, an
/// array or a Postgres array literal; image NSFW is a boolean, a string or an integer level;
/// stats may be null; image `meta` may be missing. The mapping reads every field through tolerant
/// accessors: unknown fields are ignored, missing or mistyped ones become nil (stored as NULL),
/// and nothing short of a missing id or name drops a model.
enum TSRCivitAIModule {}

public enum CivitAIMapping {
    /// `GET /models/{id}` (or an item of `GET /models`): the whole model, all versions.
    public static func model(_ json: [String: Any]) -> CachedModel? {
        guard let id = int64(json["id"]), let name = string(json["name"]) else { return nil }
        let creator = json["creator"] as? [String: Any]
        let versions = (json["modelVersions"] as? [Any] ?? []).enumerated().compactMap { index, item in
            (item as? [String: Any]).flatMap { version($0, index: index) }
        }
        let stats = json["stats"] as? [String: Any]
        return CachedModel(
            civitaiId: id, name: name, description: string(json["description"]), type: string(json["type"]) ?? "Other",
            nsfw: bool(json["nsfw"]), nsfwLevel: int(json["nsfwLevel"]), poi: bool(json["poi"]),
            allowCommercialUse: commercialUse(json["allowCommercialUse"]), creator: creator.flatMap { string($0["username"]) },
            creatorImage: creator.flatMap { string($0["image"]) }, downloadCount: int(stats?["downloadCount"]),
            thumbsUpCount: int(stats?["thumbsUpCount"]), tags: tags(json["tags"]), versions: versions, complete: true)
    }

    /// `GET /model-versions/{id}` or `/model-versions/by-hash/{hash}`: one version and the little
    /// it says of its model (`model{name,type,nsfw,poi}`, `modelId`).
    public static func versionResponse(_ json: [String: Any]) -> CachedModel? {
        guard let modelId = int64(json["modelId"]), let parsed = version(json, index: nil) else { return nil }
        let model = json["model"] as? [String: Any] ?? [:]
        let creator = json["creator"] as? [String: Any]
        return CachedModel(
            civitaiId: modelId, name: string(model["name"]) ?? "model \(modelId)", type: string(model["type"]) ?? "Other",
            nsfw: bool(model["nsfw"]), poi: bool(model["poi"]), creator: creator.flatMap { string($0["username"]) },
            creatorImage: creator.flatMap { string($0["image"]) }, versions: [parsed], complete: false)
    }

    static func version(_ json: [String: Any], index: Int?) -> CachedVersion? {
        guard let id = int64(json["id"]) else { return nil }
        let stats = json["stats"] as? [String: Any]
        let files = (json["files"] as? [Any] ?? []).compactMap { ($0 as? [String: Any]).map(file) }
        let images = (json["images"] as? [Any] ?? []).compactMap { ($0 as? [String: Any]).map(image) }
        return CachedVersion(
            civitaiId: id, name: string(json["name"]) ?? "version \(id)", description: string(json["description"]),
            baseModel: string(json["baseModel"]), baseModelType: string(json["baseModelType"]), downloadURL: string(json["downloadUrl"]),
            air: string(json["air"]), index: index ?? int(json["index"]), publishedAt: string(json["publishedAt"]),
            downloadCount: int(stats?["downloadCount"]), thumbsUpCount: int(stats?["thumbsUpCount"]),
            trainedWords: (json["trainedWords"] as? [Any] ?? []).compactMap(string).filter { !$0.isEmpty }, files: files, images: images)
    }

    static func file(_ json: [String: Any]) -> CachedFile {
        let metadata = json["metadata"] as? [String: Any] ?? [:]
        var hashes: [String: String] = [:]
        for (type, value) in json["hashes"] as? [String: Any] ?? [:] {
            if let text = string(value), !text.isEmpty { hashes[type] = text.uppercased() }
        }
        return CachedFile(
            civitaiId: int64(json["id"]), name: string(json["name"]), sizeKB: double(json["sizeKB"]), type: string(json["type"]),
            format: string(metadata["format"]), fp: string(metadata["fp"]), size: string(metadata["size"]), primary: bool(json["primary"]),
            downloadURL: string(json["downloadUrl"]), pickleScanResult: string(json["pickleScanResult"]),
            virusScanResult: string(json["virusScanResult"]), hashes: hashes)
    }

    static func image(_ json: [String: Any]) -> CachedImage {
        let meta = json["meta"] as? [String: Any] ?? [:]
        var params: [String: String] = [:]
        for (key, value) in meta where key != "resources" && key != "civitaiResources" && key != "hashes" {
            if let text = string(value) ?? jsonText(value) { params[key] = text }
        }
        var resources: [CachedResource] = (meta["resources"] as? [Any] ?? []).compactMap { item in
            guard let r = item as? [String: Any] else { return nil }
            return CachedResource(name: string(r["name"]), type: string(r["type"]), hash: string(r["hash"]), weight: double(r["weight"]))
        }
        resources += (meta["civitaiResources"] as? [Any] ?? []).compactMap { item in
            guard let r = item as? [String: Any] else { return nil }
            return CachedResource(name: string(r["modelVersionName"]), type: string(r["type"]), weight: double(r["weight"]), modelVersionId: int64(r["modelVersionId"]))
        }
        let nsfw: String? = (json["nsfw"] as? Bool).map { $0 ? "true" : "false" } ?? string(json["nsfw"])
        return CachedImage(
            civitaiId: int64(json["id"]), url: string(json["url"]), width: int(json["width"]), height: int(json["height"]), nsfw: nsfw,
            nsfwLevel: int(json["nsfwLevel"]), hash: string(json["hash"]), type: string(json["type"]), params: params, resources: resources)
    }

    // MARK: Tolerant accessors

    /// `allowCommercialUse`: "Rent", ["Image","Rent"] or "{Image,RentCivit}" → comma-separated.
    static func commercialUse(_ value: Any?) -> String? {
        if let list = value as? [Any] { return list.compactMap(string).joined(separator: ",") }
        guard let text = string(value) else { return nil }
        if text.hasPrefix("{") && text.hasSuffix("}") { return String(text.dropFirst().dropLast()) }
        return text
    }

    static func tags(_ value: Any?) -> [String] {
        (value as? [Any] ?? []).compactMap { item in
            if let name = item as? String { return name }
            return (item as? [String: Any]).flatMap { string($0["name"]) }
        }.filter { !$0.isEmpty }
    }

    static func string(_ value: Any?) -> String? {
        switch value {
        case let text as String: return text
        case let number as NSNumber where !(value is Bool): return number.stringValue
        case let flag as Bool: return flag ? "true" : "false"
        default: return nil
        }
    }

    static func int(_ value: Any?) -> Int? {
        switch value {
        case let flag as Bool: return flag ? 1 : 0
        case let number as Int: return number
        case let number as Double: return number.isFinite ? Int(exactly: number.rounded()) : nil
        case let text as String: return Int(text)
        default: return nil
        }
    }

    static func int64(_ value: Any?) -> Int64? { int(value).map(Int64.init) }

    static func double(_ value: Any?) -> Double? {
        switch value {
        case let number as Double: return number
        case let number as Int: return Double(number)
        case let text as String: return Double(text)
        default: return nil
        }
    }

    static func bool(_ value: Any?) -> Bool? {
        switch value {
        case let flag as Bool: return flag
        case let number as Int: return number != 0
        case let text as String: return ["true", "1", "yes"].contains(text.lowercased()) ? true : (["false", "0", "no", "none"].contains(text.lowercased()) ? false : nil)
        default: return nil
        }
    }

    static func jsonText(_ value: Any?) -> String? {
        guard let value, JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
