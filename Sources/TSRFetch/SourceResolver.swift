import Foundation
import TSRStore

/// Asks a source what a file is before downloading it: Hugging Face's HEAD (`X-Linked-Etag` is
/// the SHA-256 of an LFS file, `X-Linked-Size` its size; the CDN's own ETag is not a digest),
/// CivitAI's API (`files[].hashes.SHA256`), and for every source a range request for the first
/// bytes, which gives the exact size (`Content-Range`), the file name (`Content-Disposition`)
/// and the safetensors header for reads before the download.
public struct SourceResolver: Sendable {
    public let settings: FetchSettings
    public let credentials: Credentials

    /// Prefixes are fetched in units of this many bytes.
    public static let prefixUnit = HeaderRegion.unit

    public init(settings: FetchSettings, credentials: Credentials) {
        self.settings = settings
        self.credentials = credentials
    }

    var walker: HopWalker { HopWalker(settings: settings, credentials: credentials) }

    /// Resolves a source; `readPrefix` also fetches the first bytes (always done when the size
    /// is not known otherwise).
    public func resolve(_ spec: SourceSpec, readPrefix: Bool = true) throws(FetchError) -> RemoteFile {
        var file: RemoteFile
        switch spec {
        case let .huggingFace(_, _, path):
            file = try huggingFace(spec, path: path)
        case let .civitai(model, version):
            file = try civitai(model: model, version: version)
        case let .url(url):
            _ = try settings.checkStart(url)
            let name = Self.sanitisedFileName(WebURL(url)?.path.split(separator: "/").last.map { String($0).removingPercentEncoding ?? String($0) } ?? "")
            file = RemoteFile(source: spec, canonicalURL: spec.canonicalURL, downloadURL: url, digest: nil, size: nil, fileName: name ?? "download", folderHint: nil, prefix: nil)
        }
        if readPrefix || file.size == nil { try readPrefixBytes(&file) }
        return file
    }

    // MARK: Hugging Face

    private func huggingFace(_ spec: SourceSpec, path: String) throws(FetchError) -> RemoteFile {
        guard let url = spec.downloadURL(settings: settings) else { throw .invalidSource("no download URL for \(spec.canonicalURL)") }
        let outcome = try walker.send(HTTPRequest(url: url, method: .head))
        guard case let .response(final, redirects) = outcome else {
            if case let .transport(error) = outcome { throw .transport(url: Redact.url(url), message: error.message) }
            throw .invalidSource(url)
        }
        guard final.isSuccess else { throw walker.error(for: final, url: url) }
        let all = redirects + [final]
        let linkedEtag = all.lazy.compactMap { $0.header("x-linked-etag") }.first
        let linkedSize = all.lazy.compactMap { $0.header("x-linked-size").flatMap { Int64($0) } }.first
        let digest = linkedEtag.flatMap(Self.digest(fromETag:))
        let name = Self.sanitisedFileName(String(path.split(separator: "/").last ?? "")) ?? "download"
        // Small (non-LFS) files answer 200 with a git blob id as ETag: no SHA-256, size from Content-Length.
        let size = linkedSize ?? (redirects.isEmpty ? final.contentLength : nil)
        return RemoteFile(source: spec, canonicalURL: spec.canonicalURL, downloadURL: url, digest: digest, size: size, fileName: name, folderHint: nil, prefix: nil)
    }

    /// `"<64 hex>"` (quotes and a weak prefix allowed) as a digest.
    static func digest(fromETag etag: String) -> Digest? {
        var text = etag.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("W/") { text.removeFirst(2) }
        text = text.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        return Digest(rawValue: text.lowercased())
    }

    // MARK: CivitAI

    private func civitai(model: Int?, version: Int?) throws(FetchError) -> RemoteFile {
        let api = settings.civitaiBase + "/api/v1"
        let versionObject: [String: Any]
        var modelType: String?
        if let version {
            versionObject = try getJSON(api + "/model-versions/\(version)")
        } else if let model {
            let modelObject = try getJSON(api + "/models/\(model)")
            modelType = modelObject["type"] as? String
            // modelVersions[0] is the newest.
            guard let first = (modelObject["modelVersions"] as? [[String: Any]])?.first else {
                throw .notFound(url: Redact.url(api + "/models/\(model)"), message: "the model has no versions")
            }
            versionObject = first
        } else {
            throw .invalidSource("civitai: needs a model or version id")
        }
        guard let versionId = Self.integer(versionObject["id"]) ?? version else {
            throw .protocolViolation(url: Redact.url(api), message: "a model version without an id")
        }
        modelType = modelType ?? (versionObject["model"] as? [String: Any])?["type"] as? String
        let files = versionObject["files"] as? [[String: Any]] ?? []
        guard let file = files.first(where: { ($0["primary"] as? Bool) == true }) ?? files.first else {
            throw .notFound(url: Redact.url(api + "/model-versions/\(versionId)"), message: "the version has no files")
        }
        let hashes = file["hashes"] as? [String: Any] ?? [:]
        let digest = (hashes["SHA256"] as? String).flatMap { Digest(rawValue: $0.lowercased()) }
        let spec = SourceSpec.civitai(modelId: model ?? Self.integer(versionObject["modelId"]), versionId: versionId)
        let name = (file["name"] as? String).flatMap(Self.sanitisedFileName) ?? "civitai-\(versionId)"
        guard let url = spec.downloadURL(settings: settings) else { throw .invalidSource(spec.canonicalURL) }
        return RemoteFile(
            source: spec, canonicalURL: spec.canonicalURL, downloadURL: url, digest: digest, size: nil, fileName: name,
            folderHint: CivitAITypes.folder(forType: modelType), prefix: nil)
    }

    func getJSON(_ url: String) throws(FetchError) -> [String: Any] {
        try JSONAPI(settings: settings, credentials: credentials).object(url)
    }

    static func integer(_ value: Any?) -> Int? {
        switch value {
        case let n as Int: return n
        case let n as Double: return Int(exactly: n)
        case let s as String: return Int(s)
        default: return nil
        }
    }

    // MARK: Prefix, size and name

    /// Fetches the header region (`HeaderRegion`: the safetensors header rounded up to 128 KiB
    /// plus two readahead windows, or the first 128 KiB of any other file) with at most two range
    /// requests; fills in the exact size and the server's file name. A safetensors file whose
    /// header length is implausible keeps no prefix (its first bytes are read, nothing more). A
    /// file no larger than what was read comes whole: the caller verifies it before keeping it.
    func readPrefixBytes(_ file: inout RemoteFile) throws(FetchError) {
        var (collected, total, disposition) = try rangeRead(file.downloadURL, from: 0, to: HeaderRegion.unit)
        if let expected = file.size, let total, expected != total {
            throw .sizeMismatch(url: Redact.url(file.downloadURL), expected: expected, actual: total)
        }
        if let disposition { file.fileName = disposition }
        file.size = file.size ?? total
        guard let size = file.size else {
            file.prefix = nil
            return
        }
        if Int64(collected.count) >= size {
            file.prefix = Array(collected.prefix(Int(size)))
            return
        }
        let safetensors = ModelPath.isSafetensors(file.fileName)
        let length = safetensors && collected.count >= 8 ? Safetensors.headerLength(collected) : nil
        guard let wanted = HeaderRegion.prefixLength(safetensors: safetensors, headerLength: length, fileSize: size) else {
            file.prefix = nil
            return
        }
        if wanted > collected.count {
            let (rest, _, _) = try rangeRead(file.downloadURL, from: collected.count, to: wanted)
            collected += rest
        }
        file.prefix = Array(collected.prefix(wanted))
    }

    /// Bytes `[from, to)` (fewer at the end of the file), the total size, and the name from
    /// Content-Disposition. A server that ignores Range is read up to `to` and stopped.
    private func rangeRead(_ url: String, from: Int, to: Int) throws(FetchError) -> ([UInt8], Int64?, String?) {
        var request = HTTPRequest(url: url)
        request.rangeStart = Int64(from)
        request.rangeEnd = Int64(to - 1)
        var bytes: [UInt8] = []
        var total: Int64?
        var name: String?
        var skip = 0
        let handler = HTTPClient.BodyHandler(
            start: { status, headers in
                let response = HTTPResponse(status: status, headers: headers, redirectURL: nil, body: [])
                total = status == 206 ? response.contentRangeTotal : response.contentLength
                skip = status == 206 ? 0 : from
                name = response.header("content-disposition").flatMap(Self.fileName(fromDisposition:))
                return true
            },
            receive: { chunk in
                var chunk = chunk[...]
                if skip > 0 {
                    let dropped = min(skip, chunk.count)
                    skip -= dropped
                    chunk = chunk.dropFirst(dropped)
                }
                bytes += chunk.prefix(to - from - bytes.count)
                return bytes.count < to - from
            })
        let outcome = try walker.send(request, body: handler)
        switch outcome {
        case let .transport(error):
            // Stopping a server that ignored Range is the one transport error that is expected.
            guard error.isAbortedBySink, bytes.count == to - from else {
                throw .transport(url: Redact.url(url), message: error.message)
            }
        case let .response(response, redirects):
            if response.status == 416 { return ([], response.contentRangeTotal, nil) }
            guard response.isSuccess else { throw walker.error(for: response, url: url) }
            name = name ?? redirects.lazy.compactMap { $0.header("content-disposition").flatMap(Self.fileName(fromDisposition:)) }.first
        }
        return (bytes, total, name)
    }

    /// The file name of `Content-Disposition` (`filename*=UTF-8''…` preferred), sanitised.
    public static func fileName(fromDisposition header: String) -> String? {
        var plain: String?
        var extended: String?
        for part in header.split(separator: ";") {
            let item = part.trimmingCharacters(in: .whitespaces)
            let lower = item.lowercased()
            if lower.hasPrefix("filename*=") {
                let value = String(item.dropFirst("filename*=".count))
                if let quote = value.range(of: "''") { extended = String(value[quote.upperBound...]).removingPercentEncoding }
            } else if lower.hasPrefix("filename=") {
                plain = String(item.dropFirst("filename=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return (extended ?? plain).flatMap(sanitisedFileName)
    }

    /// One safe path component: the last segment after `/` or `\`, no control characters, not
    /// `.` or `..`, at most 255 bytes (the extension kept). nil when nothing usable is left.
    public static func sanitisedFileName(_ raw: String) -> String? {
        let last = raw.replacingOccurrences(of: "\\", with: "/").split(separator: "/").last.map(String.init) ?? ""
        var name = String(String.UnicodeScalarView(last.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
            .trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name != ".", name != ".." else { return nil }
        while name.utf8.count > ModelPath.maxNameBytes {
            let ext = name.range(of: ".", options: .backwards).map { String(name[$0.lowerBound...]) } ?? ""
            let stem = ext.count < name.count ? String(name.dropLast(ext.count)) : name
            name = String(stem.dropLast(max(1, name.utf8.count - ModelPath.maxNameBytes))) + (ext.utf8.count < 32 ? ext : "")
        }
        return name
    }
}
