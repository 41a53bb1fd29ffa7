
/// Builds syntactically valid `.safetensors` bytes for tests, benchmarks and the demo.
public struct SafetensorsBuilder: Sendable {
    public var metadata: [String: String]
    /// (name, dtype, shape); tensors are laid out in this order.
    public var tensors: [(String, String, [UInt64])]
    /// Byte used to fill tensor data; vary it to make files with different content.
    public var fill: UInt8

    public init(metadata: [String: String] = [:], tensors: [(String, String, [UInt64])] = [("weight", "F16", [4, 4])], fill: UInt8 = 0) {
        self.metadata = metadata
        self.tensors = tensors
        self.fill = fill
    }

    /// The file's bytes: length, JSON header (padded with spaces to 8 bytes), data.
    public func bytes() -> [UInt8] {
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(JSONValue.quote($0)):\(JSONValue.quote(metadata[$0]!))" }
            entries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset: UInt64 = 0
        for (name, dtype, shape) in tensors {
            let bits = (Safetensors.dtypeBits[dtype] ?? 8) * shape.reduce(1, *)
            let size = (bits + 7) / 8
            entries.append("\(JSONValue.quote(name)):{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        var json = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + json.count + Int(offset))
        var length = UInt64(json.count)
        for _ in 0..<8 {
            out.append(UInt8(length & 0xff))
            length >>= 8
        }
        out += json
        out += [UInt8](repeating: fill, count: Int(offset))
        return out
    }
}
