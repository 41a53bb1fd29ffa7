import TSRStore

// libFuzzer entry point. scripts/fuzz.sh builds this target with -sanitize=fuzzer -DFUZZING,
// where libFuzzer supplies main(); a plain build gets the corpus runner below instead.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Any outcome but a crash is fine; the size claims both a whole file and a prefix of a larger one.
    _ = try? Safetensors.parse(bytes: bytes)
    _ = try? Safetensors.parse(bytes: bytes, fileSize: Int64(size) + 1 << 20)
    if let header = try? Safetensors.parse(bytes: bytes) { _ = BaseModel.infer(header) }
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
@_cdecl("SafetensorsFuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzSafetensors(data, size) }
}
#else
import Foundation

/// Runs every file named on the command line (or every file in named directories) through the
/// fuzz entry point once: the committed corpus as a regression test.
@main
struct CorpusRunner {
    static func main() throws {
        var files: [String] = []
        for argument in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue {
                files += try FileManager.default.contentsOfDirectory(atPath: argument).sorted().map { argument + "/" + $0 }
            } else {
                files.append(argument)
            }
        }
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            _ = data.withUnsafeBytes { raw in
                fuzzSafetensors(raw.bindMemory(to: UInt8.self).baseAddress ?? UnsafePointer(bitPattern: 1)!, raw.count)
            }
        }
        print("\(files.count) corpus inputs ran without a crash")
    }
}
#endif
