import CCrypto
import Foundation

/// An incremental SHA-256 computation through OpenSSL's EVP interface
/// (`EVP_DigestInit_ex` / `EVP_DigestUpdate` / `EVP_DigestFinal_ex`).
///
/// Not thread-safe: one hasher belongs to one thread at a time.
public final class SHA256Hasher {
    // SAFETY: the context is created in init, used only through this object and freed in deinit.
    private let context: OpaquePointer
    private var finished = false

    /// Starts a new hash.
    /// - Throws: `StoreError.cryptoUnavailable` when OpenSSL cannot allocate a context.
    public init() throws(StoreError) {
        guard let ctx = EVP_MD_CTX_new() else { throw .cryptoUnavailable }
        guard EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1 else {
            EVP_MD_CTX_free(ctx)
            throw .cryptoUnavailable
        }
        context = ctx
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Feeds bytes into the hash.
    public func update(_ buffer: UnsafeRawBufferPointer) {
        guard !buffer.isEmpty, let base = buffer.baseAddress else { return }
        precondition(!finished, "update after finalize")
        EVP_DigestUpdate(context, base, buffer.count)
    }

    /// Feeds bytes into the hash.
    public func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Finishes the hash and returns the digest; the hasher cannot be used afterwards.
    public func finalize() -> Digest {
        precondition(!finished, "finalize called twice")
        finished = true
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return Digest(bytes: out.prefix(Int(length)))
    }

    /// The digest of a byte sequence held in memory.
    public static func digest(_ bytes: some ContiguousBytes) throws(StoreError) -> Digest {
        let hasher = try SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }
}
