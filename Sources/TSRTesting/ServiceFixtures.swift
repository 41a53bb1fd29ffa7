import Foundation
import Synchronization
import TSRStore

/// A Hugging Face emulator: the hub answers `resolve` URLs like huggingface.co (LFS files: 302 to
/// a CDN host with `X-Linked-Etag`/`X-Linked-Size`; small files: 200 with a git-blob ETag; gated
/// repos: 401 with `X-Error-Code: GatedRepo`; unknown files: 404 `EntryNotFound`), and a second
/// server plays the CDN, whose own ETag is not a SHA-256. The hub is reached as `localhost`, the
/// CDN as `127.0.0.1`, so they are different hosts to the client.
public final class HuggingFaceFixture: Sendable {
    public struct File: Sendable {
        public var bytes: [UInt8]
        public var lfs: Bool
        public var gated: Bool
        /// What the CDN sends instead of `bytes` (a damaged copy: the hub still names `bytes`'
        /// SHA-256 and size).
        public var served: [UInt8]?
        public init(bytes: [UInt8], lfs: Bool = true, gated: Bool = false, served: [UInt8]? = nil) {
            self.bytes = bytes
            self.lfs = lfs
            self.gated = gated
            self.served = served
        }
    }

    public let hub: FixtureServer
    public let cdn: FixtureServer
    private let files: Locked<[String: File]>
    /// The token gated files need.
    public let token: String

    /// `files` maps `org/repo/path/in/repo` to contents (revision `main`).
    public init(files: [String: File], token: String = "hf_test_token_0123456789") throws {
        let table = Locked(files)
        self.files = table
        self.token = token
        let cdn = try FixtureServer { request, connection in
            let digest = String(request.path.split(separator: "/").last ?? "")
            guard let file = table.withLock({ $0.values.first(where: { HuggingFaceFixture.digest(of: $0.bytes) == digest }) }) else {
                return connection.respond(404)
            }
            connection.serveFile(file.served ?? file.bytes, request: request, etag: "\"cdn-\(digest.prefix(8))\"")
        }
        self.cdn = cdn
        hub = try FixtureServer { request, connection in
            // /<org>/<repo>/resolve/<rev>/<path…>
            let parts = request.path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
            guard parts.count >= 5, parts[2] == "resolve" else { return connection.respond(404) }
            let key = ([parts[0], parts[1]] + parts[4...]).joined(separator: "/")
            guard let file = table.withLock({ $0[key] }) else {
                return connection.respond(404, headers: [("X-Error-Code", "EntryNotFound"), ("X-Error-Message", "Entry not found")])
            }
            if file.gated && request.header("authorization") != "Bearer \(token)" {
                return connection.respond(401, headers: [
                    ("X-Error-Code", "GatedRepo"),
                    ("X-Error-Message", "Access to model \(parts[0])/\(parts[1]) is restricted. You must have access to it and be authenticated to access it. Please log in."),
                ])
            }
            let digest = HuggingFaceFixture.digest(of: file.bytes)
            if file.lfs {
                connection.redirect(302, to: cdn.baseURL + "/blobs/\(digest)?X-Amz-Signature=signed", headers: [
                    ("X-Linked-Etag", "\"\(digest)\""), ("X-Linked-Size", "\(file.bytes.count)"), ("X-Repo-Commit", "0123abcd"),
                    ("ETag", "\"\(digest)\""),
                ])
            } else {
                connection.serveFile(file.bytes, request: request, etag: "\"a1b2c3d4e5f6\"", extraHeaders: [("X-Repo-Commit", "0123abcd")])
            }
        }
    }

    /// The endpoint to put in `HF_ENDPOINT`.
    public var endpoint: String { hub.localhostURL }

    /// SHA-256 of file contents, remembered (the emulated CDN finds files by digest, and a test
    /// may serve many).
    private static let digests = Locked<[Int: [([UInt8], String)]]>([:])
    static func digest(of bytes: [UInt8]) -> String {
        let key = bytes.count ^ Int(bytes.first ?? 0) << 40 ^ Int(bytes.last ?? 0) << 48
        if let known = digests.withLock({ $0[key]?.first(where: { $0.0 == bytes })?.1 }) { return known }
        let digest = (try? SHA256Hasher.digest(bytes).rawValue) ?? ""
        digests.withLock { table in
            if table.count > 256 { table.removeAll() }
            table[key, default: []].append((bytes, digest))
        }
        return digest
    }

    public func set(_ key: String, _ file: File) { files.withLock { $0[key] = file } }

    /// Body bytes the CDN was asked for so far (from each GET's Range, capped by the file's size):
    /// what crossed the network.
    public func cdnBytes(of digest: String, size: Int) -> Int {
        cdn.requests.filter { $0.method == "GET" && $0.path.hasSuffix(digest) }.reduce(0) { total, request in
            total + FixtureServer.rangeLength(request.header("range"), size: size)
        }
    }
}

/// A CivitAI emulator: `/api/v1/models/{id}` and `/api/v1/model-versions/{id}` answer with the
/// JSON given (real responses from Tests/Fixtures/civitai, or built ones), `/api/download/models/{id}`
/// answers 307 to a storage host that sends the bytes with `Content-Disposition`; versions that
/// need a key answer 401 with CivitAI's JSON message.
public final class CivitAIFixture: Sendable {
    public struct Download: Sendable {
        public var bytes: [UInt8]
        public var fileName: String
        public var requiresKey: Bool
        public init(bytes: [UInt8], fileName: String, requiresKey: Bool = false) {
            self.bytes = bytes
            self.fileName = fileName
            self.requiresKey = requiresKey
        }
    }

    public let api: FixtureServer
    public let storage: FixtureServer
    private let models: Locked<[Int: String]>
    private let versions: Locked<[Int: String]>
    private let downloads: Locked<[Int: Download]>
    private let byHash: Locked<[String: String]>
    private let rateLimited: Locked<Int>
    public let key: String

    public init(key: String = "civitai_test_key_abcdef") throws {
        let models = Locked<[Int: String]>([:])
        let versions = Locked<[Int: String]>([:])
        let downloads = Locked<[Int: Download]>([:])
        let byHash = Locked<[String: String]>([:])
        let rateLimited = Locked<Int>(0)
        self.byHash = byHash
        self.rateLimited = rateLimited
        self.models = models
        self.versions = versions
        self.downloads = downloads
        self.key = key
        let storage = try FixtureServer { request, connection in
            let id = Int(request.path.split(separator: "/").last ?? "") ?? -1
            guard let file = downloads.withLock({ $0[id] }) else { return connection.respond(404) }
            connection.serveFile(file.bytes, request: request, etag: "\"s3-\(id)\"", extraHeaders: [
                ("Content-Disposition", "attachment; filename=\"\(file.fileName)\""),
            ])
        }
        self.storage = storage
        api = try FixtureServer { request, connection in
            let parts = request.path.split(separator: "/").map(String.init)
            let id = Int(parts.last ?? "") ?? -1
            let route = parts.dropLast().joined(separator: "/")
            if route == "api/v1/models" || route == "api/v1/model-versions/by-hash" {
                let limited = rateLimited.withLock { count -> Bool in
                    guard count > 0 else { return false }
                    count -= 1
                    return true
                }
                if limited { return connection.json(429, #"{"error":"Too many requests"}"#, headers: [("Retry-After", "1")]) }
            }
            switch route {
            case "api/v1/models":
                guard let json = models.withLock({ $0[id] }) else { return connection.json(404, #"{"error":"No model with id \#(id)"}"#) }
                connection.json(200, json)
            case "api/v1" where parts.last == "models":
                // A list: the models whose JSON contains the query, `limit` per page, cursor = offset.
                if request.query["query"] != nil && request.query["page"] != nil {
                    return connection.json(400, #"{"error":"Cannot use page with query, use cursor instead"}"#)
                }
                let limit = Int(request.query["limit"] ?? "") ?? 20
                let offset = Int(request.query["cursor"] ?? "") ?? 0
                let needle = request.query["query"]?.lowercased()
                let type = request.query["types"]?.lowercased()
                let all = models.withLock { $0 }.sorted { $0.key < $1.key }.map(\.value).filter { json in
                    (needle.map { json.lowercased().contains($0) } ?? true) && (type.map { json.lowercased().contains("\"type\":\"\($0)\"") || json.lowercased().contains("\"type\": \"\($0)\"") } ?? true)
                }
                let page = all.dropFirst(offset).prefix(limit)
                let next = offset + limit < all.count ? #""nextCursor":"\#(offset + limit)","# : ""
                connection.json(200, #"{"items":[\#(page.joined(separator: ","))],"metadata":{\#(next)"pageSize":\#(limit)}}"#)
            case "api/v1/model-versions":
                guard let json = versions.withLock({ $0[id] }) else { return connection.json(404, #"{"error":"Model version not found"}"#) }
                connection.json(200, json)
            case "api/v1/model-versions/by-hash":
                let hash = (parts.last ?? "").uppercased()
                guard let json = byHash.withLock({ $0[hash] }) else { return connection.json(404, #"{"error":"Model not found"}"#) }
                connection.json(200, json)
            case "api/download/models":
                guard let file = downloads.withLock({ $0[id] }) else { return connection.json(404, #"{"error":"Model not found"}"#) }
                if file.requiresKey && request.header("authorization") != "Bearer \(key)" {
                    return connection.json(401, #"{"error":"Unauthorized","message":"The creator of this asset requires you to be logged in to download it"}"#)
                }
                connection.redirect(307, to: storage.baseURL + "/files/\(id)?X-Amz-Signature=signed")
            default:
                connection.respond(404)
            }
        }
    }

    /// The base URL to put in `TSR_CIVITAI_URL`.
    public var base: String { api.localhostURL }

    public func addModel(_ id: Int, json: String) { models.withLock { $0[id] = json } }
    public func addVersion(_ id: Int, json: String) { versions.withLock { $0[id] = json } }
    public func addDownload(_ versionId: Int, _ download: Download) { downloads.withLock { $0[versionId] = download } }
    /// Answers `/model-versions/by-hash/<sha256>` (any case) with this version JSON.
    public func addByHash(_ sha256: String, json: String) { byHash.withLock { $0[sha256.uppercased()] = json } }
    /// The next `count` by-hash or /models/{id} requests answer 429 with Retry-After: 1.
    public func rateLimitNext(_ count: Int) { rateLimited.withLock { $0 = count } }

    /// A version object in the API's shape for bytes made by a test.
    public static func versionJSON(id: Int, modelId: Int, type: String, fileName: String, bytes: [UInt8], baseModel: String = "SDXL 1.0") -> String {
        let sha = (try? SHA256Hasher.digest(bytes).rawValue.uppercased()) ?? ""
        return """
            {"id":\(id),"modelId":\(modelId),"name":"v\(id)","baseModel":"\(baseModel)","trainedWords":["tsrstyle"],
             "model":{"name":"Test model \(modelId)","type":"\(type)","nsfw":false,"poi":false},
             "files":[{"id":\(id * 10),"sizeKB":\(Double(bytes.count) / 1024),"name":"\(fileName)","type":"Model",
               "metadata":{"format":"SafeTensor","size":null,"fp":null},"hashes":{"SHA256":"\(sha)","AutoV2":"\(sha.prefix(10))"},
               "primary":true,"downloadUrl":"https://civitai.com/api/download/models/\(id)"}],
             "images":[],"downloadUrl":"https://civitai.com/api/download/models/\(id)"}
            """
    }

    /// A model object in the API's shape around version objects (`versionJSON`).
    public static func modelJSON(id: Int, name: String, type: String, creator: String, tags: [String] = [], versions: [String]) -> String {
        """
        {"id":\(id),"name":"\(name)","type":"\(type)","nsfw":false,"creator":{"username":"\(creator)","image":null},
         "tags":\(tags.debugDescription),"stats":{"downloadCount":5,"thumbsUpCount":1},"modelVersions":[\(versions.joined(separator: ","))]}
        """
    }

    /// A real CivitAI response of Tests/Fixtures/civitai (copied unmodified from the project's
    /// shared fixtures; SOURCES.md there says where each came from), read as it is. Inside the
    /// repository: a clone tests alone.
    public static func sharedFixture(_ name: String) throws -> String {
        let path = BuildProducts.packageRoot + "/Tests/Fixtures/civitai/" + name
        return try String(contentsOfFile: path, encoding: .utf8)
    }
}

/// A value behind a lock that closures can share (Mutex itself cannot be captured).
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

/// A boolean fixture handlers can read while the test flips it.
public final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public func set(_ on: Bool) { value.store(on, ordering: .relaxed) }
    public var isSet: Bool { value.load(ordering: .relaxed) }
}
