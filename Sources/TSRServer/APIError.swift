import Foundation
import Hummingbird
import TSRFetch
import TSRLibrary
import TSRRegistry
import TSRStore
import TSRWorkflow

/// An API failure: an HTTP status and a message a user can act on, sent as
/// `{"error": message, …extra}`. Never holds a token: messages come from errors that redact.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// Extra fields for clients, e.g. `requires_auth` ("huggingface" | "civitai").
    public var extra: [String: String]

    public init(_ status: HTTPResponse.Status, _ message: String, extra: [String: String] = [:]) {
        self.status = status
        self.message = message
        self.extra = extra
    }

    public var description: String { message }

    /// The status and message of any error a handler can meet.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let error as APIError: return error
        case let error as HTTPError:
            let message = error.body ?? (error.status == .notFound ? "no such endpoint; see /openapi.json" : error.status.reasonPhrase)
            return APIError(error.status, message)
        case let error as FetchError: return from(fetch: error)
        case let error as RegistrationError: return APIError(error.isUsage ? .badRequest : .conflict, error.apiMessage)
        case let error as WorkflowError: return APIError(.badRequest, error.description)
        case let error as RegistryError: return from(registry: error)
        case let error as LibraryError:
            if case let .registry(inner) = error { return from(registry: inner) }
            if case .notFound = error { return APIError(.notFound, error.description) }
            return APIError(.internalServerError, error.description)
        case let error as NameError: return APIError(.badRequest, error.description)
        default: return APIError(.internalServerError, "\(error)")
        }
    }

    private static func from(fetch error: FetchError) -> APIError {
        switch error {
        case .invalidSource: return APIError(.badRequest, error.description)
        // The policy (allowlist, https beyond loopback) refuses a well-formed source: forbidden.
        case .hostNotAllowed, .insecure: return APIError(.forbidden, error.description)
        case let .unauthorized(url, status, variable, message):
            // Not 401: that status is this API's own bearer token. The page asks for a key instead.
            let service = variable == "HF_TOKEN" ? "huggingface" : "civitai"
            var text = "\(url): \(status == 401 ? "authentication required" : "access denied") (HTTP \(status))"
            if let message, !message.isEmpty { text += ": \(message)" }
            text += "; send \(service == "huggingface" ? "huggingface_token" : "civitai_api_key") with a key that can read it"
            if let variable { text += " (or start tsr with \(variable) set)" }
            return APIError(.forbidden, text, extra: ["requires_auth": service])
        case .notFound, .noSource: return APIError(.notFound, error.description)
        case .cancelled: return APIError(.conflict, error.description)
        case let .registry(inner): return from(registry: inner)
        case .store: return APIError(.internalServerError, error.description)
        default: return APIError(.badGateway, error.description)
        }
    }

    private static func from(registry error: RegistryError) -> APIError {
        switch error {
        case let .workflowMissing(name): return APIError(.notFound, "no workflow \(name) (GET /workflows lists them)")
        case let .workflowExists(name): return APIError(.conflict, "a workflow \(name) exists already; send replace=true to replace it, or choose another name")
        case .aliasMissing, .blobUnknown: return APIError(.notFound, error.description)
        case let .aliasExists(name, sha256):
            return APIError(.conflict, "\(name) already names other content (\(sha256.short)…); send another \"filename\"")
        case .database: return APIError(.internalServerError, error.description)
        case .full: return APIError(.init(code: 507, reasonPhrase: "Insufficient Storage"), error.description)
        case .busy: return APIError(.serviceUnavailable, error.description)
        }
    }

    /// The JSON response.
    func response() -> Response {
        var object: [String: Any] = ["error": message]
        for (key, value) in extra { object[key] = value }
        var response = JSONBody.response(status: status, object: object)
        if status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer realm=\"tensors\"" }
        // The rest of a refused body is never read: the connection ends with the answer, so a
        // client still sending is told at once instead of waiting for a read that never comes.
        if status == .contentTooLarge { response.headers[.connection] = "close" }
        return response
    }
}

/// JSON responses and request bodies.
enum JSONBody {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static func response<T: Encodable>(status: HTTPResponse.Status = .ok, _ value: T) throws -> Response {
        let data = try encoder.encode(value)
        return bytes(status: status, Array(data), contentType: "application/json")
    }

    static func response(status: HTTPResponse.Status = .ok, object: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return bytes(status: status, Array(data), contentType: "application/json")
    }

    static func bytes(status: HTTPResponse.Status = .ok, _ bytes: [UInt8], contentType: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// Body limits by what a route takes: keys and download requests are a few hundred bytes; a
    /// workflow (ComfyUI's UI format with every node) a few MiB at most.
    static let smallLimit = 64 << 10
    static let workflowLimit = 16 << 20

    /// A request body of at most `limit` bytes: a declared Content-Length over it is refused
    /// before anything is read, a body that turns out longer as soon as it passes the limit.
    static func read(_ request: Request, limit: Int) async throws -> Data {
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw tooLarge(limit)
        }
        do {
            let buffer = try await request.body.collect(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch {
            throw tooLarge(limit)
        }
    }

    static func tooLarge(_ limit: Int) -> APIError {
        APIError(.contentTooLarge, "the request body is larger than \(limit >= 1 << 20 ? "\(limit >> 20) MiB" : "\(limit >> 10) KiB"), the most this route takes")
    }

    /// Reads a body of at most `limit` bytes and turns it into a value on the API's threads
    /// (parsing a large JSON document must not hold an event loop). Bodies over 1 MiB take one of
    /// `LargeBodies`' few places while they are read and parsed, so concurrent large requests
    /// cost at most that many bodies' memory at once.
    static func parse<T: Sendable>(_ request: Request, limit: Int, _ body: @escaping @Sendable (Data) throws -> T) async throws -> T {
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        if let declared, declared > limit { throw tooLarge(limit) }
        let large = declared.map { $0 > LargeBodies.threshold } ?? true
        if large { try await LargeBodies.shared.enter() }
        do {
            let data = try await read(request, limit: limit)
            let value = try await onAPIThreads { try body(data) }
            if large { await LargeBodies.shared.leave() }
            return value
        } catch {
            if large { await LargeBodies.shared.leave() }
            throw error
        }
    }

    /// Decodes a JSON body, with a message naming what is wrong.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request) async throws -> T {
        let data = try await read(request, limit: smallLimit)
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError(.badRequest, "the request body lacks \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw APIError(.badRequest, "the request body's \(path.isEmpty ? "top level" : "\"\(path)\"") has the wrong type")
        } catch {
            throw APIError(.badRequest, "the request body is not valid JSON")
        }
    }
}

/// The few request bodies over 1 MiB read and parsed at once; more wait their turn (at most
/// `maxWaiting`, then 503), so ten concurrent 30 MiB uploads cannot take a gigabyte.
actor LargeBodies {
    static let shared = LargeBodies()
    static let threshold = 1 << 20
    static let places = 2
    static let maxWaiting = 32

    private var inUse = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async throws {
        if inUse < Self.places {
            inUse += 1
            return
        }
        guard waiting.count < Self.maxWaiting else {
            throw APIError(.serviceUnavailable, "too many large requests at once; try again in a moment")
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty {
            inUse -= 1
        } else {
            // The place passes straight to the next in line.
            waiting.removeFirst().resume()
        }
    }
}
