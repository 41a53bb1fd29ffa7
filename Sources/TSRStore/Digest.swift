/// A SHA-256 content id in canonical form: 64 lowercase hex characters.
///
/// Parsing accepts upper case (CivitAI prints hashes upper-case) and surrounding white space.
public struct Digest: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// The 64 lowercase hex characters.
    public let rawValue: String

    /// Parses a hex SHA-256; nil unless it is exactly 64 hex digits (either case).
    public init?(rawValue: String) {
        let trimmed = rawValue.trimmingWhitespace()
        guard trimmed.utf8.count == 64, trimmed.utf8.allSatisfy({ $0.isHexDigit }) else { return nil }
        self.rawValue = trimmed.lowercased()
    }

    /// Builds a digest from its 32 raw bytes.
    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == 32, "SHA-256 digests are 32 bytes")
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0f)])
        }
        self.rawValue = String(decoding: out, as: UTF8.self)
    }

    /// The first 2 hex characters: the fan-out directory of the blob path.
    public var prefix: String { String(rawValue.prefix(2)) }

    /// A 12-character abbreviation for messages.
    public var short: String { String(rawValue.prefix(12)) }

    public var description: String { rawValue }

    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Digest(rawValue: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a SHA-256: \(text)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

extension UInt8 {
    var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
