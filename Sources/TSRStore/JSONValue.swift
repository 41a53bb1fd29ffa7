import Foundation

/// Any JSON value, decoded without loss of integer precision.
public enum JSONValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    /// A number that is an exact integer within Int64/UInt64.
    case integer(Int64)
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null; return }
        if let value = try? container.decode(Bool.self) { self = .bool(value); return }
        if let value = try? container.decode(Int64.self) { self = .integer(value); return }
        if let value = try? container.decode(UInt64.self) { self = .unsigned(value); return }
        if let value = try? container.decode(Double.self) { self = .double(value); return }
        if let value = try? container.decode(String.self) { self = .string(value); return }
        if let value = try? container.decode([JSONValue].self) { self = .array(value); return }
        self = .object(try container.decode([String: JSONValue].self))
    }

    /// The value as a non-negative integer, when it is one exactly.
    public var nonNegativeInteger: UInt64? {
        switch self {
        case let .integer(n): return n >= 0 ? UInt64(n) : nil
        case let .unsigned(n): return n
        default: return nil
        }
    }

    /// Compact JSON text of the value (keys sorted), for storing non-string metadata.
    public var jsonText: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .integer(n): return String(n)
        case let .unsigned(n): return String(n)
        case let .double(d): return d.isFinite ? "\(d)" : "null"
        case let .string(s): return JSONValue.quote(s)
        case let .array(items): return "[" + items.map(\.jsonText).joined(separator: ",") + "]"
        case let .object(map):
            return "{" + map.sorted { $0.key < $1.key }.map { JSONValue.quote($0.key) + ":" + $0.value.jsonText }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal.
    public static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let s where s.value < 0x20: out += String(format: "\\u%04x", s.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
