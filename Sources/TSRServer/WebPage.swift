import Hummingbird

/// The library page served at `/`: one self-contained HTML file (no CDN, no external asset).
enum WebPage {
    static let html = "<!doctype html><title>tensors</title>"

    static func response() -> Response {
        var response = JSONBody.bytes(Array(html.utf8), contentType: "text/html; charset=utf-8")
        response.headers[.contentSecurityPolicy] = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
        return response
    }
}
