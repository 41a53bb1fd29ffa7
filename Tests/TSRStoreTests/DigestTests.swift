import CCurl
import Testing
@testable import TSRStore

/// The libcurl shim links and its typed setopt/getinfo wrappers reach libcurl (the fetch engine
/// builds on them).
@Suite struct CurlShimTests {
    @Test func wrappersReachLibcurl() throws {
        let info = try #require(tsr_curl_version())
        #expect(info.pointee.features & Int32(CURL_VERSION_SSL) != 0, "libcurl built with TLS")
        let handle = try #require(curl_easy_init())
        defer { curl_easy_cleanup(handle) }
        #expect(tsr_curl_setopt_string(handle, CURLOPT_URL, "http://127.0.0.1:9/") == CURLE_OK)
        #expect(tsr_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, 1) == CURLE_OK)
        #expect(tsr_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1) == CURLE_OK)
        #expect(tsr_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, Int(-1)) == CURLE_OK)
        var effective: UnsafeMutablePointer<CChar>?
        #expect(tsr_curl_getinfo_string(handle, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK)
        #expect(effective.map { String(cString: $0) } == "http://127.0.0.1:9/")
    }
}

@Suite struct DigestTests {
    @Test func parsesUpperCaseIntoCanonicalLowerCase() throws {
        let upper = "9753338AB693CA82BF89ED77A5D1912879E40051463EC6E330FB9866CE798668"
        let digest = try #require(Digest(rawValue: upper))
        #expect(digest.rawValue == upper.lowercased())
        #expect(Digest(rawValue: " \(upper)\n") == digest)
        #expect(digest.prefix == "97")
    }

    @Test(arguments: ["", "abc", String(repeating: "g", count: 64), String(repeating: "a", count: 63), String(repeating: "a", count: 65)])
    func rejectsWhatIsNotSHA256(_ text: String) {
        #expect(Digest(rawValue: text) == nil)
    }

    @Test func sha256MatchesKnownVectors() throws {
        // FIPS 180-2 test vectors.
        #expect(try SHA256Hasher.digest(Array("abc".utf8)).rawValue == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try SHA256Hasher.digest([UInt8]()).rawValue == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func incrementalHashingEqualsOneShot() throws {
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let hasher = try SHA256Hasher()
        for chunk in stride(from: 0, to: bytes.count, by: 4093) {
            hasher.update(Array(bytes[chunk..<min(chunk + 4093, bytes.count)]))
        }
        #expect(hasher.finalize() == (try SHA256Hasher.digest(bytes)))
    }
}
