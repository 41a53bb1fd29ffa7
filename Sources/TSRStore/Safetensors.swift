import Foundation

/// Why a byte sequence is not a valid safetensors file. Each message names the offending part.
public enum SafetensorsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than 8 bytes: no header length.
    case tooShort(size: Int64)
    /// The header length field exceeds the 100,000,000-byte cap.
    case headerTooLarge(length: UInt64)
    /// The file ends before the header does.
    case truncatedHeader(length: UInt64, available: Int64)
    /// The header bytes are not UTF-8.
    case notUTF8
    /// The header is not a JSON object (the parser's message follows).
    case notJSONObject(String)
    /// A tensor entry is malformed.
    case badTensor(name: String, reason: String)
    /// `__metadata__` is not an object of strings.
    case badMetadata(String)
    /// Two tensors' byte ranges overlap.
    case overlap(first: String, second: String)
    /// A tensor's bytes lie beyond the end of the file.
    case outOfBounds(name: String, end: UInt64, dataSize: Int64)

    public var description: String {
        switch self {
        case let .tooShort(size): return "not a safetensors file: \(size) bytes, fewer than the 8-byte header length"
        case let .headerTooLarge(length): return "not a safetensors file: header length \(length) exceeds the 100000000-byte limit"
        case let .truncatedHeader(length, available):
            return "truncated safetensors file: header says \(length) bytes but only \(max(0, available)) follow"
        case .notUTF8: return "invalid safetensors header: not UTF-8"
        case let .notJSONObject(why): return "invalid safetensors header: not a JSON object (\(why))"
        case let .badTensor(name, reason): return "invalid safetensors header: tensor \"\(name)\": \(reason)"
        case let .badMetadata(why): return "invalid safetensors header: __metadata__ \(why)"
        case let .overlap(first, second): return "invalid safetensors header: tensors \"\(first)\" and \"\(second)\" overlap"
        case let .outOfBounds(name, end, dataSize):
            return "truncated safetensors file: tensor \"\(name)\" ends at byte \(end) of the data but the file holds \(dataSize)"
        }
    }
}

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Equatable, Codable {
    public var dtype: String
    public var shape: [UInt64]
    /// Byte range within the data section (after the header), end exclusive.
    public var begin: UInt64
    public var end: UInt64
}

/// The validated header of a safetensors file.
public struct SafetensorsHeader: Sendable, Equatable {
    /// Length of the JSON header in bytes (the value of the 8-byte length field).
    public var headerSize: Int
    /// `__metadata__`: free-form string pairs (training parameters, modelspec.*, …).
    public var metadata: [String: String]
    /// Tensors by name.
    public var tensors: [String: TensorInfo]
    public var tensorCount: Int { tensors.count }
    /// Bytes before the tensor data: 8 + headerSize.
    public var dataOffset: Int { 8 + headerSize }
}

/// Reads safetensors headers: 8-byte little-endian length, then that many bytes of UTF-8 JSON.
/// Hostile input (any bytes at all) gives a `SafetensorsError`, never a crash.
public enum Safetensors {
    /// The format's cap on header length.
    public static let maxHeaderSize: UInt64 = 100_000_000

    /// Element sizes in bits, by dtype name.
    public static let dtypeBits: [String: UInt64] = [
        "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
        "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "I64": 64, "U64": 64, "F64": 64,
    ]

    /// Reads and validates the header of a file.
    public static func read(path: String) throws(StoreError) -> Result<SafetensorsHeader, SafetensorsError> {
        let fd = try SystemCalls.openForReading(path)
        defer { try? fd.close() }
        let size = try SystemCalls.status(of: fd, path: path).size
        var lengthBytes = [UInt8](repeating: 0, count: 8)
        let got = try SystemCalls.wrap("read", path) {
            try lengthBytes.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }
        }
        guard got == 8 else { return .failure(.tooShort(size: size)) }
        let length = headerLength(lengthBytes)
        guard length <= maxHeaderSize else { return .failure(.headerTooLarge(length: length)) }
        guard Int64(length) <= size - 8 else { return .failure(.truncatedHeader(length: length, available: size - 8)) }
        var header = [UInt8](repeating: 0, count: Int(length))
        var filled = 0
        while filled < header.count {
            let n = try SystemCalls.wrap("read", path) {
                try header.withUnsafeMutableBytes {
                    try fd.read(fromAbsoluteOffset: Int64(8 + filled), into: UnsafeMutableRawBufferPointer(rebasing: $0[filled...]))
                }
            }
            if n == 0 { return .failure(.truncatedHeader(length: length, available: Int64(8 + filled))) }
            filled += n
        }
        return Result { () throws(SafetensorsError) in try parse(json: header, fileSize: size) }
    }

    /// Parses a whole file, or a prefix of at least the header, held in memory.
    public static func parse(bytes: [UInt8], fileSize: Int64? = nil) throws(SafetensorsError) -> SafetensorsHeader {
        let size = fileSize ?? Int64(bytes.count)
        guard bytes.count >= 8, size >= 8 else { throw .tooShort(size: size) }
        let length = headerLength(bytes)
        guard length <= maxHeaderSize else { throw .headerTooLarge(length: length) }
        guard Int64(length) <= Int64(bytes.count) - 8, Int64(length) <= size - 8 else {
            throw .truncatedHeader(length: length, available: min(Int64(bytes.count), size) - 8)
        }
        return try parse(json: Array(bytes[8..<(8 + Int(length))]), fileSize: size)
    }

    /// The little-endian length in the first 8 bytes.
    public static func headerLength(_ bytes: [UInt8]) -> UInt64 {
        var value: UInt64 = 0
        for i in (0..<8).reversed() { value = value << 8 | UInt64(bytes[i]) }
        return value
    }

    /// Validates the JSON header against a file of `fileSize` bytes.
    static func parse(json: [UInt8], fileSize: Int64) throws(SafetensorsError) -> SafetensorsHeader {
        guard String(validating: json, as: UTF8.self) != nil else { throw .notUTF8 }
        let top: [String: JSONValue]
        do {
            let value = try JSONDecoder().decode(JSONValue.self, from: Data(json))
            guard case let .object(map) = value else { throw SafetensorsError.notJSONObject("the top level is not an object") }
            top = map
        } catch let error as SafetensorsError {
            throw error
        } catch let DecodingError.dataCorrupted(context) {
            throw .notJSONObject(context.underlyingError.map { "\($0)" } ?? context.debugDescription)
        } catch {
            throw .notJSONObject("unparseable JSON")
        }
        let dataSize = fileSize - 8 - Int64(json.count)
        var metadata: [String: String] = [:]
        var tensors: [String: TensorInfo] = [:]
        for (name, value) in top {
            if name == "__metadata__" {
                metadata = try parseMetadata(value)
                continue
            }
            tensors[name] = try parseTensor(name: name, value, dataSize: dataSize)
        }
        // Ordered and non-overlapping: sort by start, each must begin at or after the previous end.
        let ordered = tensors.sorted { ($0.value.begin, $0.value.end, $0.key) < ($1.value.begin, $1.value.end, $1.key) }
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.value.begin < previous.value.end {
            throw .overlap(first: previous.key, second: next.key)
        }
        return SafetensorsHeader(headerSize: json.count, metadata: metadata, tensors: tensors)
    }

    private static func parseMetadata(_ value: JSONValue) throws(SafetensorsError) -> [String: String] {
        switch value {
        case .null:
            return [:]
        case let .object(map):
            // The format says strings only; some writers store numbers or objects. Keep their
            // JSON text rather than rejecting an otherwise valid model.
            return map.mapValues { item in
                if case let .string(text) = item { return text }
                return item.jsonText
            }
        default:
            throw .badMetadata("is not an object")
        }
    }

    private static func parseTensor(name: String, _ value: JSONValue, dataSize: Int64) throws(SafetensorsError) -> TensorInfo {
        guard case let .object(entry) = value else { throw .badTensor(name: name, reason: "entry is not an object") }
        guard case let .string(dtype)? = entry["dtype"] else { throw .badTensor(name: name, reason: "missing dtype") }
        guard let bits = dtypeBits[dtype] else { throw .badTensor(name: name, reason: "unknown dtype \(dtype)") }
        guard case let .array(shapeArray)? = entry["shape"] else { throw .badTensor(name: name, reason: "missing shape") }
        var shape: [UInt64] = []
        var elements: UInt64 = 1
        for dim in shapeArray {
            guard let n = dim.nonNegativeInteger else {
                throw .badTensor(name: name, reason: "shape holds \(dim.jsonText), not a non-negative integer")
            }
            shape.append(n)
            let (product, overflow) = elements.multipliedReportingOverflow(by: n)
            guard !overflow else { throw .badTensor(name: name, reason: "shape \(shape) is too large") }
            elements = product
        }
        guard case let .array(offsets)? = entry["data_offsets"], offsets.count == 2,
            let begin = offsets[0].nonNegativeInteger, let end = offsets[1].nonNegativeInteger
        else { throw .badTensor(name: name, reason: "data_offsets must be two non-negative integers") }
        guard begin <= end else { throw .badTensor(name: name, reason: "data_offsets [\(begin), \(end)] end before they begin") }
        let (bitCount, overflow) = elements.multipliedReportingOverflow(by: bits)
        guard !overflow else { throw .badTensor(name: name, reason: "shape \(shape) is too large") }
        let bytes = bitCount / 8 + (bitCount % 8 == 0 ? 0 : 1)
        guard end - begin == bytes else {
            throw .badTensor(name: name, reason: "\(dtype) \(shape) needs \(bytes) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
        }
        guard dataSize >= 0, end <= UInt64(dataSize) else { throw .outOfBounds(name: name, end: end, dataSize: max(0, dataSize)) }
        return TensorInfo(dtype: dtype, shape: shape, begin: begin, end: end)
    }
}
