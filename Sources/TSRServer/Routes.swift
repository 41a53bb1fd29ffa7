import Foundation
import Hummingbird
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRWorkflow

/// The endpoints: the operations of the OpenAPI document (/openapi.json, docs/API.md), each with its handler.
struct Routes: Sendable {
    let server: APIServer
    var fetcher: Fetcher { server.fetcher }
    var library: Library { server.fetcher.library }
    var registry: Registry { server.fetcher.library.registry }

    /// Answers one operation of the API.
    typealias Handler = @Sendable (Routes, Request, BasicRequestContext) async throws -> Response

    /// The handler of each operation of the document, by `operationId`.
    static let handlers: [String: Handler] = [
        "webPage": { _, _, _ in WebPage.response() },
        "openAPIDocument": { _, _, _ in JSONBody.bytes(Array(OpenAPIDocument.json.utf8), contentType: "application/json") },
        "getStats": { routes, _, _ in try await onAPIThreads { try routes.stats() } },
        "listModels": { routes, request, _ in try await onAPIThreads { try routes.models(request) } },
        "getModel": { routes, _, context in
            let sha256 = try context.parameters.require("sha256")
            return try await onAPIThreads { try routes.model(sha256) }
        },
        "checkDependencies": { routes, request, _ in try await routes.checkDependencies(request) },
        "downloadModel": { routes, request, _ in try await routes.download(request) },
        "listWorkflows": { routes, _, _ in try await onAPIThreads { try routes.workflows() } },
        "addWorkflow": { routes, request, _ in try await routes.addWorkflow(request) },
        "checkWorkflow": { routes, request, _ in try await routes.checkWorkflow(request) },
        "checkStoredWorkflow": { routes, _, context in
            let name = try Routes.decoded(context.parameters.require("name"))
            return try await onAPIThreads { try routes.checkStored(name) }
        },
        "pullWorkflow": { routes, request, context in try await routes.pull(Routes.decoded(context.parameters.require("name")), request) },
        "listDownloads": { routes, _, _ in try JSONBody.response(DownloadList(downloads: routes.server.downloads.list())) },
        "downloadEvents": { routes, _, _ in routes.events() },
        "cancelDownload": { routes, _, context in try routes.cancel(context.parameters.require("id")) },
    ]

    /// Registers every operation of the OpenAPI document with its handler: the document is the
    /// list of routes. Operations without a handler are left out and logged (a test checks that
    /// there are none).
    func register(on router: Router<BasicRequestContext>) {
        for operation in OpenAPIDocument.operationList {
            guard let handler = Self.handlers[operation.id], let method = HTTPRequest.Method(operation.method) else {
                server.logger.error("the API document lists \(operation.method) \(operation.path) (\(operation.id)), which has no handler")
                continue
            }
            router.on(RouterPath(operation.routerPath), method: method) { request, context in try await handler(self, request, context) }
        }
    }

    // MARK: Library

    func stats() throws -> Response {
        var report = try library.statsReport()
        report.downloadsActive = server.downloads.list().filter { !$0.state.isFinished }.count
        return try JSONBody.response(report)
    }

    func models(_ request: Request) throws -> Response {
        let query = request.uri.queryParameters
        var filter = CatalogFilter()
        if let folder = query.get("folder"), !folder.isEmpty {
            do { filter.folder = try ModelPath.validateFolder(folder) } catch { throw APIError(.badRequest, "folder: \(error.description)") }
        }
        filter.baseModel = query.get("base").flatMap { $0.isEmpty ? nil : $0 }
        filter.creator = query.get("creator").flatMap { $0.isEmpty ? nil : $0 }
        filter.text = query.get("text").flatMap { $0.isEmpty ? nil : $0 }
        if let state = query.get("state"), !state.isEmpty {
            guard let parsed = BlobState(rawValue: state) else { throw APIError(.badRequest, "state must be present, remote or quarantined") }
            filter.state = parsed
        }
        let limit = try Self.integer(query.get("limit"), name: "limit", default: 200, range: 1...5000)
        let offset = try Self.integer(query.get("offset"), name: "offset", default: 0, range: 0...9_007_199_254_740_991)
        let all = try registry.catalog()
        let failures = try registry.fetchFailures()
        let kept = all.filter(filter.keeps)
        return try JSONBody.response(ModelList(
            total: kept.count, offset: offset, models: kept.dropFirst(offset).prefix(limit).map { ModelSummary($0, failure: failures[$0.sha256]) },
            facets: Facets(all)))
    }

    func model(_ text: String) throws -> Response {
        guard let digest = Digest(rawValue: text.lowercased()) else { throw APIError(.badRequest, "\(text.prefix(80)) is not a SHA-256 (64 hex digits)") }
        guard let blob = try registry.blob(digest) else { throw APIError(.notFound, "no model with SHA-256 \(digest) in the library") }
        let info = try Inspector(library: library).info(digest.rawValue, cwd: "/")
        let status = try registry.civitaiStatus(digest)
        let link = status?.link
        var detail = ModelDetail(
            sha256: digest.rawValue, size: blob.size, state: blob.state.rawValue,
            downloadError: blob.state == .remote ? try registry.fetchFailure(digest)?.summary : nil, baseModel: link?.baseModel ?? info.baseModel,
            names: try registry.aliases(of: digest).map { AliasName(folder: $0.folder, path: $0.path) },
            tensorCount: info.tensorCount, headerSize: info.headerSize, metadata: info.metadata,
            sources: try registry.sources(of: digest).map { SourceBody(url: $0.url, kind: $0.kind) },
            civitai: nil, triggerWords: [], examplePrompts: [], pinned: try registry.isPinned(digest))
        if let link {
            detail.civitai = status
            detail.triggerWords = try registry.triggerWords(versionId: link.versionId)
            detail.examplePrompts = try registry.examplePrompts(versionIds: [link.versionId]).map {
                PromptBody(imageURL: $0.imageURL, params: $0.params, resources: $0.resources.map { ResourceBody(name: $0.name, type: $0.type, weight: $0.weight) })
            }
        }
        return try JSONBody.response(detail)
    }

    // MARK: Seed endpoints

    /// `POST /models/check-dependencies {dependencies}`: the seed's answer, from the registry
    /// only (no network, nothing stored).
    func checkDependencies(_ request: Request) async throws -> Response {
        let parsed = try await JSONBody.parse(request, limit: JSONBody.workflowLimit) { body in
            guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
                throw APIError(.badRequest, "the request body must be a JSON object {\"dependencies\": {folder: [entries]}}")
            }
            guard let dependencies = object["dependencies"] as? [String: Any] else {
                throw APIError(.badRequest, "the request body lacks \"dependencies\" ({folder: [{filename, sha256, size, urls}]})")
            }
            try Self.checkTypes(body)
            let wrapped = try JSONSerialization.data(withJSONObject: ["workflow": ["dependencies": dependencies]])
            return try WorkflowParser.parse(wrapped)
        }
        return try await onAPIThreads { try JSONBody.response(WorkflowService(fetcher: fetcher).check(parsed)) }
    }

    /// A true/false query flag; absent is false, anything else a 400.
    static func flag(_ value: String?, name: String) throws -> Bool {
        switch value {
        case nil: return false
        case "true": return true
        case "false": return false
        default: throw APIError(.badRequest, "\(name) must be true or false")
        }
    }

    /// The seed's entry, as its types must be (the OpenAPI `Dependency`): a field of another type,
    /// a malformed hash or a negative size is a 400 naming the entry, not an entry skipped.
    struct DependencyTypes: Decodable {
        enum Provider: String, Decodable { case huggingface, civitai }
        var filename: String
        var sha256: String?
        var size: Int64?
        var urls: [String]?
        var displayName: String?
        var required: Bool?
        var requiresAuth: Bool?
        var authProvider: Provider?
        enum CodingKeys: String, CodingKey {
            case filename, sha256, size, urls, required
            case displayName = "display_name", requiresAuth = "requires_auth", authProvider = "auth_provider"
        }
    }

    static func checkTypes(_ body: Data) throws {
        struct Request: Decodable { var dependencies: [String: [DependencyTypes]] }
        let request: Request
        do { request = try JSONDecoder().decode(Request.self, from: body) } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
            let DecodingError.keyNotFound(_, context), let DecodingError.dataCorrupted(context) {
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            throw APIError(.badRequest, "dependencies: \(path.isEmpty ? "the body" : path): \(context.debugDescription)")
        }
        for (folder, entries) in request.dependencies {
            for (index, entry) in entries.enumerated() {
                if let sha256 = entry.sha256, Digest(rawValue: sha256.lowercased()) == nil {
                    throw APIError(.badRequest, "dependencies.\(folder)[\(index)].sha256 is not a SHA-256 (64 hex digits)")
                }
                if let size = entry.size, !(0...9_007_199_254_740_991).contains(size) {
                    throw APIError(.badRequest, "dependencies.\(folder)[\(index)].size must be 0…2^53-1")
                }
            }
        }
    }

    /// `POST /models/download`: downloads one file and streams NDJSON progress, then one
    /// completion or error line. The download goes on if the client goes away (GET /downloads).
    func download(_ request: Request) async throws -> Response {
        let body = try await JSONBody.decode(DownloadBody.self, from: request)
        let (spec, urlKey) = try SourceSpec.parse(body.url, settings: fetcher.settings)
        // The forms the OpenAPI document publishes (SourcePattern); then the policy (403).
        guard SourcePattern.matches(body.url, SourcePattern.source) else {
            throw APIError(.badRequest, "url: not in a form this API takes (hf://ORG/REPO/PATH[@REVISION], civitai:MODEL[@VERSION], or an http(s) URL of plain characters; see /openapi.json)")
        }
        // A URL the policy refuses is refused before any stream starts.
        if let url = spec.downloadURL(settings: fetcher.settings) { _ = try fetcher.settings.checkStart(url) }
        if let folder = body.folder {
            do { _ = try ModelPath.validateFolder(folder) } catch { throw APIError(.badRequest, "folder: \(error.description)") }
        }
        // A name that can never be stored is a bad request too, before the stream starts.
        if let filename = body.filename {
            do { _ = try ModelPath.validateRelativePath(filename) } catch { throw APIError(.badRequest, "filename: \(error.description)") }
            guard SourcePattern.matches(filename, SourcePattern.filename) else {
                throw APIError(.badRequest, "filename: components of up to 255 ASCII characters, or 63 when one is not ASCII (see /openapi.json)")
            }
        }
        if let folder = body.folder, !SourcePattern.matches(folder, SourcePattern.folder) {
            throw APIError(.badRequest, "folder: a folder key of up to 255 ASCII letters, digits, _, - and . (see /openapi.json)")
        }
        if let sha256 = body.sha256, Digest(rawValue: sha256.lowercased()) == nil {
            throw APIError(.badRequest, "sha256: not a SHA-256 (64 hex digits)")
        }
        let keyed = keyed(huggingFace: body.huggingfaceToken, civitai: body.civitaiApiKey ?? urlKey)
        let pullRequest = PullRequest(spec: spec, folder: body.folder, name: body.filename, sha256: body.sha256)
        let label = body.filename ?? body.displayName ?? spec.canonicalURL
        let events = server.downloads.events()
        let id = server.downloads.start(file: label, source: spec.canonicalURL) { progress, cancel, named in
            let result = try keyed.pull(pullRequest, progress: progress, cancel: cancel, resolved: { named(body.filename ?? $0.fileName) })
            return DownloadOutcome(digest: result.committed.digest, size: result.committed.size, path: "\(result.folder)/\(result.path)")
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/x-ndjson"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            for await status in events where status.id == id {
                try await writer.write(ByteBuffer(bytes: Self.ndjsonLine(status)))
                if status.state.isFinished { break }
            }
            try await writer.finish(nil)
        })
    }

    /// One line of the seed's download stream.
    static func ndjsonLine(_ status: DownloadStatus) -> [UInt8] {
        var line: [String: Any] = ["id": status.id, "file": status.file, "bytes": status.bytes, "speed": status.speed]
        if let total = status.totalBytes { line["total_bytes"] = total }
        switch status.state {
        case .queued, .downloading:
            line["status"] = "downloading"
            if let total = status.totalBytes, total > 0 {
                line["progress"] = (Double(status.bytes) / Double(total) * 1000).rounded() / 10
                line["message"] = "Downloading \(status.file): \(Int(Double(status.bytes) / Double(total) * 100))%"
            } else {
                line["message"] = "Downloading \(status.file)"
            }
        case .completed:
            line["status"] = "completed"
            line["message"] = "Downloaded \(status.file)"
            line["path"] = status.path ?? ""
            line["sha256"] = status.sha256 ?? ""
            line["progress"] = 100.0
        case .failed, .cancelled:
            line["status"] = "error"
            line["error"] = status.error ?? "failed"
            line["message"] = status.error ?? "failed"
            if let service = status.requiresAuth { line["requires_auth"] = service }
        }
        let data = (try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Array(data) + [0x0A]
    }

    /// The fetcher with the keys one request sent on top of the daemon's (never stored); its
    /// downloads still join the daemon's one download per blob.
    func keyed(huggingFace: String?, civitai: String?) -> Fetcher {
        fetcher.with(credentials: Credentials(huggingFace: huggingFace ?? fetcher.credentials.huggingFace, civitai: civitai ?? fetcher.credentials.civitai))
    }

    // MARK: Workflows

    func workflows() throws -> Response {
        try JSONBody.response(WorkflowList(workflows: registry.workflows().map {
            WorkflowSummaryBody(
                name: $0.workflow.name, format: $0.workflow.format, entries: $0.entries, missing: $0.missing, totalSize: $0.totalSize,
                updatedAt: $0.workflow.updatedAt)
        }))
    }

    /// `POST /workflows?name=N[&replace=true]` with a workflow JSON body (any supported format):
    /// registers it and what it needs (asking the sources for digests and sizes). Keys for gated
    /// sources may come in `X-Huggingface-Token` / `X-Civitai-Api-Key`.
    func addWorkflow(_ request: Request) async throws -> Response {
        guard let given = request.uri.queryParameters.get("name"), !given.isEmpty else {
            throw APIError(.badRequest, "name the workflow: POST /workflows?name=NAME")
        }
        let name = try WorkflowParser.validateName(given)
        guard SourcePattern.matches(name, SourcePattern.workflowName) else {
            throw APIError(.badRequest, "name: up to 255 ASCII characters, or 63 when one is not ASCII (see /openapi.json)")
        }
        let replace = try Self.flag(request.uri.queryParameters.get("replace"), name: "replace")
        let parsed = try await JSONBody.parse(request, limit: JSONBody.workflowLimit) { try WorkflowParser.parse($0) }
        if !replace, try await onAPIThreads({ try registry.workflows().contains(where: { $0.workflow.name == name }) }) {
            throw RegistryError.workflowExists(name)
        }
        // Keys for asking gated sources, in headers (the body is the workflow); never stored.
        let service = WorkflowService(fetcher: keyed(request))
        let check = try await blocking { try service.add(parsed, name: name, replace: replace) }
        return try JSONBody.response(status: .created, AddedWorkflow(name: name, format: parsed.format.rawValue, check: check))
    }

    /// `POST /workflows/check[?resolve=true]`: what a workflow JSON needs, from the registry
    /// only, or after asking the sources of entries without a hash for digest and size (keys in
    /// the same headers as `POST /workflows`). Nothing is stored either way.
    func checkWorkflow(_ request: Request) async throws -> Response {
        let parsed = try await JSONBody.parse(request, limit: JSONBody.workflowLimit) { try WorkflowParser.parse($0) }
        let service = WorkflowService(fetcher: keyed(request))
        guard try Self.flag(request.uri.queryParameters.get("resolve"), name: "resolve") else {
            return try await onAPIThreads { try JSONBody.response(service.check(parsed)) }
        }
        return try JSONBody.response(try await blocking { service.check(parsed, resolvingSources: true) })
    }

    /// The fetcher with the keys of `X-Huggingface-Token` / `X-Civitai-Api-Key`, for this request.
    func keyed(_ request: Request) -> Fetcher {
        keyed(huggingFace: request.headers[.init("X-Huggingface-Token")!], civitai: request.headers[.init("X-Civitai-Api-Key")!])
    }

    func checkStored(_ name: String) throws -> Response {
        try JSONBody.response(try WorkflowService(fetcher: fetcher).check(name: name))
    }

    /// `POST /workflows/{name}/pull [{huggingface_token, civitai_api_key}]`: starts a download
    /// per missing file; progress in GET /downloads and its event stream.
    func pull(_ name: String, _ request: Request) async throws -> Response {
        let data = try await JSONBody.read(request, limit: JSONBody.smallLimit)
        var keys = KeysBody()
        if !data.isEmpty {
            do { keys = try JSONDecoder().decode(KeysBody.self, from: data) } catch { throw APIError(.badRequest, "the body must be {\"huggingface_token\"?, \"civitai_api_key\"?}") }
        }
        let service = WorkflowService(fetcher: keyed(huggingFace: keys.huggingfaceToken, civitai: keys.civitaiApiKey))
        let (items, unresolved) = try await onAPIThreads { try service.pullPlan(name: name) }
        var started: [DownloadStatus] = []
        for item in items {
            let label = item.label
            let id = server.downloads.start(file: label, source: label, workflow: name) { progress, cancel, _ in
                let committed = try service.pull(item, progress: progress, cancel: cancel)
                return DownloadOutcome(digest: committed.digest, size: committed.size, path: label)
            }
            if let status = server.downloads.status(id) { started.append(status) }
        }
        return try JSONBody.response(status: .accepted, PullStarted(downloads: started, unresolved: unresolved))
    }

    // MARK: Downloads

    /// Server-Sent Events: every current download first, then each change (`event: download`),
    /// and a comment every 15 s so a closed page is noticed.
    func events() -> Response {
        let current = server.downloads.list()
        let updates = server.downloads.events()
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
        let forward = Task {
            for status in current.reversed() { continuation.yield(Self.sseEvent(status)) }
            for await status in updates { continuation.yield(Self.sseEvent(status)) }
            continuation.finish()
        }
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(15))
                continuation.yield(Array(": keep-alive\n\n".utf8))
            }
        }
        continuation.onTermination = { _ in
            forward.cancel()
            heartbeat.cancel()
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await writer.write(ByteBuffer(bytes: Array("retry: 2000\n\n".utf8)))
            for await chunk in stream { try await writer.write(ByteBuffer(bytes: chunk)) }
            try await writer.finish(nil)
        })
    }

    static func sseEvent(_ status: DownloadStatus) -> [UInt8] {
        let data = (try? JSONBody.encoder.encode(status)) ?? Data()
        return Array("event: download\ndata: ".utf8) + Array(data) + Array("\n\n".utf8)
    }

    func cancel(_ text: String) throws -> Response {
        guard let id = Int(text) else { throw APIError(.badRequest, "\(text.prefix(40)) is not a download id") }
        guard let status = server.downloads.cancel(id) else { throw APIError(.notFound, "no download \(id) (GET /downloads lists them)") }
        if status.state.isFinished { throw APIError(.conflict, "download \(id) has already \(status.state == .completed ? "completed" : "ended") (\(status.state.rawValue))") }
        return try JSONBody.response(status)
    }

    /// A path parameter as the client meant it: Hummingbird hands them over still percent-encoded
    /// (`my%20flow`), and the page encodes names with `encodeURIComponent`.
    static func decoded(_ parameter: String) throws -> String {
        guard let text = parameter.removingPercentEncoding else {
            throw APIError(.badRequest, "\(parameter) is not a valid percent-encoded name")
        }
        return text
    }

    static func integer(_ text: String?, name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text else { return value }
        guard let number = Int(text), range.contains(number) else { throw APIError(.badRequest, "\(name) must be a whole number in \(range.lowerBound)…\(range.upperBound == Int.max ? "" : String(range.upperBound))") }
        return number
    }
}
