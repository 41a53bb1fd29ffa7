import Foundation
import TSRStore
import TSRWorkflow

// libFuzzer entry points. scripts/fuzz.sh builds this target with -sanitize=fuzzer -DFUZZING,
// where libFuzzer supplies main() and TSR_FUZZ_TARGET picks the target; a plain build gets the
// corpus runner below instead (`TSRFuzz TARGET FILE|DIR…`).

/// What one input is run through, by target name.
let fuzzTargets: [String: @Sendable ([UInt8]) -> Void] = [
    "safetensors": { bytes in
        // Any outcome but a crash is fine; the size claims both a whole file and a prefix of a larger one.
        _ = try? Safetensors.parse(bytes: bytes)
        _ = try? Safetensors.parse(bytes: bytes, fileSize: Int64(bytes.count) + 1 << 20)
        if let header = try? Safetensors.parse(bytes: bytes) { _ = BaseModel.infer(header) }
    },
    "workflows": { bytes in
        // Every format's parser, and the checks applied to names and folders it finds.
        if let parsed = try? WorkflowParser.parse(Data(bytes)) {
            for dependency in parsed.dependencies {
                _ = try? ModelPath.validateRelativePath(dependency.name)
                _ = try? WorkflowParser.validateName(dependency.name)
            }
        }
    },
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let name = ProcessInfo.processInfo.environment["TSR_FUZZ_TARGET"] ?? "safetensors"
    fuzzTargets[name]?(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

#if FUZZING
/// libFuzzer's driver (from the -sanitize=fuzzer runtime).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32

/// SwiftPM links executables with main defined as `<module>_main`; hand control to libFuzzer.
@_cdecl("TSRFuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOne(data, size) }
}
#else
/// Runs every file named on the command line (or every file in named directories) through a
/// fuzz target once: the committed corpus as a regression test.
@main
struct CorpusRunner {
    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let name = arguments.first, let target = fuzzTargets[name] else {
            FileHandle.standardError.write(Data("usage: TSRFuzz \(fuzzTargets.keys.sorted().joined(separator: "|")) FILE|DIR…\n".utf8))
            exit(64)
        }
        var files: [String] = []
        for argument in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue {
                files += try FileManager.default.contentsOfDirectory(atPath: argument).sorted().map { argument + "/" + $0 }
            } else {
                files.append(argument)
            }
        }
        for file in files { target([UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))) }
        print("\(name): \(files.count) corpus inputs ran without a crash")
    }
}
#endif
