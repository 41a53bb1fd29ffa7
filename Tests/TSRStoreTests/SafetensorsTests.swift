import Foundation
import Testing
import TSRTesting
@testable import TSRStore

@Suite struct SafetensorsTests {
    /// A header of `json` text followed by `dataBytes` zero bytes.
    static func file(_ json: String, dataBytes: Int = 0) -> [UInt8] {
        let header = Array(json.utf8)
        var out: [UInt8] = []
        var length = UInt64(header.count)
        for _ in 0..<8 {
            out.append(UInt8(length & 0xff))
            length >>= 8
        }
        return out + header + [UInt8](repeating: 0, count: dataBytes)
    }

    @Test func readsAValidFile() throws {
        let bytes = SafetensorsBuilder(
            metadata: ["ss_network_dim": "32", "modelspec.architecture": "stable-diffusion-v1/lora"],
            tensors: [("a", "F16", [2, 3]), ("b", "BF16", [4]), ("c", "F4", [3]), ("d", "BOOL", [0])]
        ).bytes()
        let header = try Safetensors.parse(bytes: bytes)
        #expect(header.tensorCount == 4)
        #expect(header.metadata["ss_network_dim"] == "32")
        #expect(header.tensors["a"] == TensorInfo(dtype: "F16", shape: [2, 3], begin: 0, end: 12))
        #expect(header.tensors["c"]?.end == 22, "3 F4 values take 2 bytes")
        #expect(header.dataOffset + 22 == bytes.count)
        #expect(header.headerSize % 8 == 0)
    }

    @Test func readsFromDiskAndReportsHeaderSize() throws {
        try TempDirectory.with { dir in
            let bytes = SafetensorsBuilder(tensors: [("w", "F32", [16])]).bytes()
            let path = try dir.write("m.safetensors", bytes)
            let header = try Safetensors.read(path: path).get()
            #expect(header.headerSize == Int(Safetensors.headerLength(bytes)))
            #expect(header.tensors["w"]?.end == 64)
        }
    }

    @Test func nonStringMetadataIsKeptAsJSONText() throws {
        let header = try Safetensors.parse(bytes: Self.file(#"{"__metadata__":{"steps":1000,"tags":{"a":1},"s":"x"}}"#))
        #expect(header.metadata == ["steps": "1000", "tags": #"{"a":1}"#, "s": "x"])
    }

    static let malformed: [(String, [UInt8], SafetensorsError)] = [
        ("empty", [], .tooShort(size: 0)),
        ("seven bytes", [1, 0, 0, 0, 0, 0, 0], .tooShort(size: 7)),
        ("huge length", [0, 0, 0, 0, 0, 0, 0, 1], .headerTooLarge(length: 1 << 56)),
        ("length past end", [100, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d], .truncatedHeader(length: 100, available: 2)),
        ("not UTF-8", file("{\"\u{1}\":1}").enumerated().map { $0.offset == 10 ? 0xff : $0.element }, .notUTF8),
        ("top-level array", file("[]"), .notJSONObject("the top level is not an object")),
        ("unknown dtype", file(#"{"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#, dataBytes: 1), .badTensor(name: "t", reason: "unknown dtype Q4")),
        ("missing shape", file(#"{"t":{"dtype":"U8","data_offsets":[0,1]}}"#, dataBytes: 1), .badTensor(name: "t", reason: "missing shape")),
        ("negative dim", file(#"{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#, dataBytes: 1), .badTensor(name: "t", reason: "shape holds -1, not a non-negative integer")),
        ("float dim", file(#"{"t":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}"#, dataBytes: 1), .badTensor(name: "t", reason: "shape holds 1.5, not a non-negative integer")),
        ("size mismatch", file(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, dataBytes: 4), .badTensor(name: "t", reason: "F32 [2] needs 8 bytes but data_offsets [0, 4] hold 4")),
        ("reversed offsets", file(#"{"t":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#, dataBytes: 4), .badTensor(name: "t", reason: "data_offsets [4, 0] end before they begin")),
        ("overflowing shape", file(#"{"t":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, dataBytes: 8), .badTensor(name: "t", reason: "shape [4294967296, 4294967296] is too large")),
        ("overlap", file(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#, dataBytes: 6), .overlap(first: "a", second: "b")),
        ("past the end", file(#"{"t":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#, dataBytes: 4), .outOfBounds(name: "t", end: 8, dataSize: 4)),
        ("metadata not object", file(#"{"__metadata__":[1]}"#), .badMetadata("is not an object")),
    ]

    @Test(arguments: malformed.indices)
    func malformedInputGivesAPreciseError(_ index: Int) {
        let (label, bytes, expected) = Self.malformed[index]
        #expect(throws: expected, "\(label)") { try Safetensors.parse(bytes: bytes) }
    }

    @Test func invalidJSONNamesTheProblem() {
        #expect {
            try Safetensors.parse(bytes: Self.file(#"{"a": }"#))
        } throws: { error in
            guard case .notJSONObject? = error as? SafetensorsError else { return false }
            return "\(error)".hasPrefix("invalid safetensors header: not a JSON object")
        }
    }

    @Test func aTruncatedFileOnDiskIsReportedAsTruncated() throws {
        try TempDirectory.with { dir in
            let bytes = SafetensorsBuilder(tensors: [("w", "F32", [1024])]).bytes()
            let path = try dir.write("cut.safetensors", Array(bytes.prefix(bytes.count - 100)))
            guard case let .failure(error) = try Safetensors.read(path: path) else {
                Issue.record("a truncated file parsed")
                return
            }
            #expect(error == .outOfBounds(name: "w", end: 4096, dataSize: 3996))
            #expect(error.description.hasPrefix("truncated safetensors file"))
            let text = try dir.write("notes.safetensors", Array("hello, I am a text file".utf8))
            guard case let .failure(other) = try Safetensors.read(path: text) else {
                Issue.record("a text file parsed")
                return
            }
            #expect(other.description.hasPrefix("not a safetensors file"))
        }
    }

    @Test func deeplyNestedJSONDoesNotCrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: SafetensorsError.self) { try Safetensors.parse(bytes: Self.file(#"{"a":"# + deep + "}")) }
    }

    @Test func committedFuzzCorpusRunsWithoutCrash() throws {
        let corpus = BuildProducts.packageRoot + "/fuzz/corpus/safetensors"
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus)
        #expect(files.count >= 10)
        for name in files {
            let bytes = try readBytes(corpus + "/" + name)
            _ = try? Safetensors.parse(bytes: bytes)
        }
    }
}

@Suite struct BaseModelTests {
    @Test(arguments: [
        (["modelspec.architecture": "stable-diffusion-xl-v1-base/lora"], "SDXL 1.0"),
        (["modelspec.architecture": "stable-diffusion-v1/lora"], "SD 1.5"),
        (["modelspec.architecture": "flux-1-dev/lora"], "Flux.1 D"),
        (["modelspec.architecture": "flux-1-schnell"], "Flux.1 S"),
        (["modelspec.architecture": "stable-diffusion-3.5-large"], "SD 3.5 Large"),
        (["ss_base_model_version": "sdxl_base_v1-0"], "SDXL 1.0"),
        (["ss_base_model_version": "sd_v1"], "SD 1.5"),
        (["ss_base_model_version": "sd_v2_768_v"], "SD 2.1"),
        (["ss_base_model_version": "flux1"], "Flux.1 D"),
        (["ss_base_model_version": "sdxl_base_v1-0", "ss_sd_model_name": "ponyDiffusionV6XL_v6.safetensors"], "Pony"),
        (["ss_base_model_version": "sdxl_base_v1-0", "ss_sd_model_name": "illustriousXL_v01.safetensors"], "Illustrious"),
        (["ss_network_module": "networks.lora"], "SD 1.5"),
        (["ss_v2": "True", "ss_network_module": "networks.lora"], "SD 2.1"),
    ] as [([String: String], String)])
    func fromMetadata(_ metadata: [String: String], _ expected: String) {
        #expect(BaseModel.infer(metadata: metadata) == expected)
    }

    @Test func fromTensorNamesThenUnknown() {
        func header(_ names: [String], _ metadata: [String: String] = [:]) -> SafetensorsHeader {
            SafetensorsHeader(headerSize: 0, metadata: metadata, tensors: Dictionary(uniqueKeysWithValues: names.map { ($0, TensorInfo(dtype: "U8", shape: [0], begin: 0, end: 0)) }))
        }
        #expect(BaseModel.infer(header(["conditioner.embedders.1.model.x", "model.diffusion_model.y"])) == "SDXL 1.0")
        #expect(BaseModel.infer(header(["double_blocks.0.img_attn.qkv.weight"])) == "Flux.1 D")
        #expect(BaseModel.infer(header(["cond_stage_model.transformer.text_model.x"])) == "SD 1.5")
        #expect(BaseModel.infer(header(["encoder.conv_in.weight"])) == "unknown")
        #expect(BaseModel.infer(header(["double_blocks.0"], ["modelspec.architecture": "stable-diffusion-v1"])) == "SD 1.5", "metadata wins")
    }
}

@Suite struct ModelPathTests {
    @Test func legacyFoldersMapToTheirCurrentKeys() throws {
        #expect(try ModelPath.validateFolder("unet") == "diffusion_models")
        #expect(try ModelPath.validateFolder("clip") == "text_encoders")
        #expect(try ModelPath.validateFolder("ipadapter") == "ipadapter")
    }

    @Test func modelExtensionsAreCaseInsensitive() {
        #expect(ModelPath.isModelFile("A.SafeTensors"))
        #expect(ModelPath.isModelFile("x.sft"))
        #expect(!ModelPath.isModelFile("x.civitai.info"))
        #expect(!ModelPath.isModelFile("safetensors"))
        #expect(ModelPath.isPartialDownload("x.safetensors.123.comfy-download.tmp"))
        #expect(ModelPath.isPartialDownload("x.safetensors.part"))
    }

    @Test(arguments: [
        ("../x.safetensors", NameError.traversal("../x.safetensors")),
        ("a/../../x", NameError.traversal("a/../../x")),
        ("./x", NameError.traversal("./x")),
        ("/etc/passwd", NameError.absolute("/etc/passwd")),
        ("a//b", NameError.emptyComponent("a//b")),
        ("a/", NameError.emptyComponent("a/")),
        ("a\nb", NameError.controlCharacter(path: "a\nb", scalar: 10)),
        ("a\u{0}b", NameError.controlCharacter(path: "a\u{0}b", scalar: 0)),
        (String(repeating: "n", count: 256), NameError.tooLong(256)),
        (String(repeating: "d/", count: 2100) + "x", NameError.tooLong(4201)),
        ("", NameError.empty),
    ])
    func hostileRelativePathsAreRejected(_ path: String, _ expected: NameError) {
        #expect(throws: expected) { try ModelPath.validateRelativePath(path) }
    }

    @Test func aliasesSplitIntoFolderAndPath() throws {
        #expect(try ModelPath.parseAlias("loras/style/x.safetensors") == ("loras", "style/x.safetensors"))
        #expect(try ModelPath.parseAlias("unet/flux.safetensors") == ("diffusion_models", "flux.safetensors"))
        #expect(throws: NameError.noFolder("x.safetensors")) { try ModelPath.parseAlias("x.safetensors") }
        #expect(throws: NameError.badFolder("..")) { try ModelPath.parseAlias("../x") }
        #expect(NameError.controlCharacter(path: "a\nb", scalar: 10).description.contains("\"a\\x0ab\""))
    }
}
