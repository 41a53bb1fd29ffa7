import Foundation

/// What the API's string inputs may be, as the OpenAPI document publishes them and the handlers
/// check them (one definition: schemathesis holds the two to each other).
/// - `source` (`POST /models/download`'s url): hf:// paths, civitai: references and http(s) URLs
///   whose host, path segments and query use plain characters. Segments never start with a dot
///   (no `.` or `..`); a host's last label starts with a letter (never read as an IPv4 number).
///   The allowlist is checked after this (a host not on it, or plain http beyond loopback: 403).
/// - `filename`: a path inside a folder; components of up to 255 ASCII characters, or 63 when one
///   is not ASCII (at most 252 bytes: within NAME_MAX), none `.` or `..`, no control characters.
/// - `workflowName`: one such component. `folder`: a folder key (ASCII letters, digits, `_-.`).
enum SourcePattern {
    static let source = #"^(?:hf://(?:(?:datasets|spaces)/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60}/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60}(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60}){1,8}|(?!(?:datasets|spaces)/)[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60}/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60}(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60}){1,8})(?:@[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60})?|civitai:[1-9][0-9]{0,8}(?:@[1-9][0-9]{0,8})?|https?://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,60}){0,12}/?(?:\?[A-Za-z0-9._~=&-]{0,200})?)$"#
    static let filename = #"^(?!\.\.?(?:/|$))(?:[ -.0-~]{1,255}|[^/\u0000-\u001f\u007f]{1,63})(?:/(?!\.\.?(?:/|$))(?:[ -.0-~]{1,255}|[^/\u0000-\u001f\u007f]{1,63})){0,15}$"#
    static let workflowName = #"^(?!\.\.?$)(?:[ -.0-~]{1,255}|[^/\u0000-\u001f\u007f]{1,63})$"#
    static let folder = #"^(?!\.\.?$)[A-Za-z0-9_.-]{1,255}$"#

    /// The four patterns, compiled once (not per request).
    private static let compiled: [String: NSRegularExpression] = Dictionary(uniqueKeysWithValues: [source, filename, workflowName, folder].compactMap { pattern in
        (try? NSRegularExpression(pattern: pattern)).map { (pattern, $0) }
    })

    /// True when the whole of `text` matches `pattern` (one of the above).
    static func matches(_ text: String, _ pattern: String) -> Bool {
        guard let expression = compiled[pattern] else { return false }
        return expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// A pattern as a JSON string body (backslashes doubled).
    static func jsonEscaped(_ pattern: String) -> String {
        pattern.replacingOccurrences(of: "\\", with: "\\\\")
    }
}
