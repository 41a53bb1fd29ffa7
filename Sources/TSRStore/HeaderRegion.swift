/// The bytes of a file that may be served before its verified blob exists: its "header region".
///
/// Tools that list models read each safetensors header (8 bytes of length, then JSON), and the
/// kernel reads ahead of them: up to two readahead windows past the last byte read (the window
/// that holds it, and the next one once its readahead mark is passed), each at most
/// `readaheadLimit` because the mount caps the kernel's readahead there. So registration stores
/// the header rounded up to `unit` plus two windows, and a header peek — by read(2) or by mmap —
/// never reaches past what is stored: it costs the header plus at most `margin` bytes, and starts
/// no download. Everything past the region is served only from the verified blob.
public enum HeaderRegion {
    /// Prefixes are fetched and rounded in units of this many bytes.
    public static let unit = 128 << 10
    /// The most the mount lets the kernel read ahead (`max_readahead`).
    public static let readaheadLimit = 128 << 10
    /// Bytes stored past the rounded header: two readahead windows.
    public static let margin = 2 * readaheadLimit
    /// The longest safetensors header kept as a prefix; a longer one (the format allows 100 MB)
    /// is fetched with the whole file. Real checkpoints' headers are well under 8 MiB.
    public static let maxHeaderLength: UInt64 = 16 << 20

    /// How many first bytes of a file to keep: for a safetensors file whose 8-byte header length
    /// is plausible (at least 2, at most `maxHeaderLength`, and inside the file), the header
    /// rounded up to `unit` plus `margin`; for any other file the first `unit` bytes; never more
    /// than the file. nil for a safetensors file whose length is implausible (damaged or not
    /// safetensors at all): no prefix is kept, since its "header" would be arbitrary bytes.
    public static func prefixLength(safetensors: Bool, headerLength: UInt64?, fileSize: Int64) -> Int? {
        guard fileSize >= 0 else { return nil }
        guard safetensors else { return Int(min(Int64(unit), fileSize)) }
        guard let length = headerLength, length >= 2, length <= maxHeaderLength, Int64(length) <= fileSize - 8 else { return nil }
        let rounded = (8 + Int(length) + unit - 1) / unit * unit
        return Int(min(Int64(rounded + margin), fileSize))
    }
}
