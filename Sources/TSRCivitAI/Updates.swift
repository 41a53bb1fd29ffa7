import Foundation
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore

/// A name whose source has something newer (`tsr outdated`, `tsr update`).
public struct Outdated: Sendable, Codable, Equatable {
    /// `folder/name`.
    public var name: String
    public var folder: String
    public var path: String
    public var sha256: String
    /// "civitai" or "huggingface".
    public var source: String
    /// The version the name holds (CivitAI version name, or the Hugging Face revision).
    public var current: String
    /// The newer one (CivitAI version name, or the revision's content now).
    public var newest: String
    public var modelId: Int64?
    public var newestVersionId: Int64?
    /// The SHA-256 the source gives now, when it tells (Hugging Face).
    public var newestSha256: String?
    /// The source to pull the newer content from (`civitai:MODEL@VERSION`, or the resolve URL).
    public var update: String

    enum CodingKeys: String, CodingKey {
        case name, sha256, source, current, newest, update
        case folder, path
        case modelId = "model_id", newestVersionId = "newest_version_id", newestSha256 = "newest_sha256"
    }
}

/// What a look for newer versions found.
public struct OutdatedReport: Sendable, Codable, Equatable {
    public var outdated: [Outdated] = []
    /// Names checked (CivitAI-linked, and with `refresh` those with a Hugging Face source).
    public var checked = 0
    /// Names with a Hugging Face source that were not asked (offline: only `refresh` asks).
    public var notAsked = 0
    public var errors: [FileIssue] = []
    /// Why asking stopped before the end (the network, a 429); what was found so far stands.
    public var stoppedEarly: String?

    enum CodingKeys: String, CodingKey {
        case outdated, checked, errors
        case notAsked = "not_asked", stoppedEarly = "stopped_early"
    }
}

/// Finds names whose source has something newer: CivitAI-linked files from the cache (asking
/// CivitAI again with `refresh`), Hugging Face sources by asking whether the revision a name was
/// taken from now resolves to other content (`refresh` only: it needs the network).
public struct UpdateFinder: Sendable {
    public let fetcher: Fetcher
    public let civitai: CivitAIClient

    public init(fetcher: Fetcher) {
        self.fetcher = fetcher
        civitai = CivitAIClient(settings: fetcher.settings, credentials: fetcher.credentials, registry: fetcher.library.registry)
    }

    var registry: Registry { fetcher.library.registry }

    /// `names` (`folder/name`) limits the look to those; empty means every name.
    public func find(refresh: Bool, names: Set<String> = []) throws(RegistryError) -> OutdatedReport {
        var report = OutdatedReport()
        let listing = try registry.listing().filter { names.isEmpty || names.contains("\($0.folder)/\($0.path)") }
        var refreshed: Set<Int64> = []
        var asked: [Digest: String?] = [:]   // Hugging Face: the SHA-256 the source gives now
        for entry in listing {
            let name = "\(entry.folder)/\(entry.path)"
            if let status = try registry.civitaiStatus(entry.sha256) {
                if refresh, report.stoppedEarly == nil, refreshed.insert(status.link.modelId).inserted {
                    do {
                        try civitai.cacheModel(status.link.modelId)
                    } catch {
                        if error.isUnreachable {
                            report.stoppedEarly = "\(error); the cache's answers are used for the rest, run `tsr outdated --refresh` again later"
                        } else {
                            report.errors.append(FileIssue(path: name, message: error.description))
                        }
                    }
                }
                report.checked += 1
                guard let fresh = try registry.civitaiStatus(entry.sha256), fresh.updateAvailable, let newestId = fresh.newestVersionId else { continue }
                report.outdated.append(Outdated(
                    name: name, folder: entry.folder, path: entry.path, sha256: entry.sha256.rawValue, source: "civitai",
                    current: fresh.link.versionName, newest: fresh.newestVersionName ?? String(newestId), modelId: fresh.link.modelId,
                    newestVersionId: newestId, newestSha256: nil, update: "civitai:\(fresh.link.modelId)@\(newestId)"))
                continue
            }
            guard let source = try registry.sources(of: entry.sha256).first(where: { $0.kind == "huggingface" }) else { continue }
            guard refresh else {
                report.notAsked += 1
                continue
            }
            guard report.stoppedEarly == nil else { continue }
            if asked[entry.sha256] == nil {
                do {
                    let spec = try SourceSpec.parse(source.url, settings: fetcher.settings).0
                    asked[entry.sha256] = try fetcher.resolver.resolve(spec, readPrefix: false).digest?.rawValue
                } catch {
                    if case .transport = error {
                        report.stoppedEarly = "\(error); run `tsr outdated --refresh` again later"
                        continue
                    }
                    report.errors.append(FileIssue(path: name, message: "\(error)"))
                    continue
                }
            }
            report.checked += 1
            guard let now = asked[entry.sha256] ?? nil, now != entry.sha256.rawValue else { continue }
            report.outdated.append(Outdated(
                name: name, folder: entry.folder, path: entry.path, sha256: entry.sha256.rawValue, source: "huggingface",
                current: Self.revision(of: source.url), newest: "\(Self.revision(of: source.url)) now (\(now.prefix(12)))", modelId: nil,
                newestVersionId: nil, newestSha256: now, update: source.url))
        }
        return report
    }

    /// The services whose keys looking at (and updating) `names` (all names when empty) may need:
    /// civitai for linked files, huggingface for names with a Hugging Face source.
    public static func services(of names: Set<String>, in registry: Registry) -> Set<String> {
        var services: Set<String> = []
        for entry in (try? registry.listing()) ?? [] where names.isEmpty || names.contains("\(entry.folder)/\(entry.path)") {
            if (try? registry.civitaiLink(entry.sha256)) != nil { services.insert("civitai") }
            if ((try? registry.sources(of: entry.sha256)) ?? []).contains(where: { $0.kind == "huggingface" }) { services.insert("huggingface") }
        }
        return services
    }

    /// The revision in a Hugging Face resolve URL (`…/resolve/<rev>/…`), else "main".
    static func revision(of url: String) -> String {
        guard let range = url.range(of: "/resolve/") else { return "main" }
        let rest = url[range.upperBound...]
        return rest.split(separator: "/").first.map { String($0).removingPercentEncoding ?? String($0) } ?? "main"
    }

    /// The name an update gets beside the old one: the version (CivitAI) or the new content's
    /// short hash (Hugging Face) before the extension: `loras/style.v2.safetensors`.
    public static func besideName(for item: Outdated) -> String {
        let tag = item.source == "civitai" ? Self.tag(item.newest) : String((item.newestSha256 ?? item.newest).prefix(12))
        let path = item.path as NSString
        let ext = path.pathExtension
        let stem = path.deletingPathExtension
        return ext.isEmpty ? "\(stem).\(tag)" : "\(stem).\(tag).\(ext)"
    }

    /// A version name as part of a file name: letters, digits, `.`, `-` and `_`; the rest become `_`.
    static func tag(_ text: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
        let mapped = String(text.map { allowed.contains($0) ? $0 : "_" }).trimmingCharacters(in: CharacterSet(charactersIn: "._"))
        return mapped.isEmpty ? "new" : String(mapped.prefix(40))
    }
}
