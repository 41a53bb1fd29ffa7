// swift-tools-version: 6.1
import PackageDescription

// Layers (docs/ARCHITECTURE.md): C shims → TSRStore → TSRRegistry → TSRLibrary → TSRWorkflow →
// TSRFetch → TSRCivitAI → TSRServer; C shims → FUSE → TSRMount; all of them → tsr.
// Dependencies point one way; only the executable sees ArgumentParser.
let package = Package(
    name: "tensors",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tsr", targets: ["tsr"]),
        .library(name: "TSRLibrary", targets: ["TSRLibrary"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // C shims: a module map and a header of static inline wrappers. No logic.
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CFUSE", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CLinux"),
        // FUSE passthrough on libfuse 3.14: read/writev hooks on the session's /dev/fuse fd.
        .target(name: "CPassthrough", linkerSettings: [.linkedLibrary("fuse3")]),

        .target(
            name: "TSRStore",
            dependencies: [
                "CCrypto", "CLinux",
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        .target(
            name: "TSRRegistry",
            dependencies: ["TSRStore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "TSRLibrary", dependencies: ["TSRStore", "TSRRegistry", .product(name: "SystemPackage", package: "swift-system")]),
        // Workflow dependency formats (seed, ComfyUI UI, API): pure parsing.
        .target(name: "TSRWorkflow", dependencies: ["TSRStore"]),
        // HTTP engine (libcurl), sources (Hugging Face, CivitAI, URLs), resumable verified downloads,
        // workflows (registering and pulling their dependencies).
        .target(name: "TSRFetch", dependencies: ["CCurl", "TSRStore", "TSRRegistry", "TSRLibrary", "TSRWorkflow"]),
        // CivitAI's API and the mapping of its JSON into the registry's cache tables.
        .target(name: "TSRCivitAI", dependencies: ["TSRFetch", "TSRLibrary", "TSRRegistry", "TSRStore"]),
        // The local HTTP API and web page (Hummingbird): `tsr serve` and `tsr mount --api`.
        .target(
            name: "TSRServer",
            dependencies: [
                "TSRFetch", "TSRCivitAI", "TSRLibrary", "TSRRegistry", "TSRStore", "TSRWorkflow",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Swift binding of the libfuse low-level API; knows nothing about models.
        .target(name: "FUSE", dependencies: ["CFUSE", "CPassthrough", .product(name: "SystemPackage", package: "swift-system")]),
        // The filesystem: what each path shows (views → aliases → blobs), the core's rules
        // (MountCore) and the thin FUSE adapter over them (TensorsFileSystem).
        .target(
            name: "TSRMount",
            dependencies: [
                "FUSE", "TSRLibrary", "TSRRegistry", "TSRStore", "CLinux",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "TSRTesting",
            dependencies: ["TSRStore", "TSRMount", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "tsr",
            dependencies: [
                "TSRLibrary", "TSRStore", "TSRRegistry", "TSRMount", "TSRFetch", "TSRWorkflow", "TSRCivitAI", "TSRServer", "CLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // libFuzzer entry points for the safetensors header reader and the workflow parsers
        // (scripts/fuzz.sh builds it with -sanitize=fuzzer; a plain build is a corpus runner).
        .executableTarget(name: "TSRFuzz", dependencies: ["TSRStore", "TSRWorkflow"]),
        // bench/run: stat latency while reads wait on stalled downloads (an in-process mount).
        .executableTarget(
            name: "StallBench",
            dependencies: ["TSRMount", "TSRLibrary", "TSRRegistry", "TSRStore", "TSRTesting"],
            path: "bench/StallBench"),
        // bench/run: tsr db search over 50,000 cached models vs the seed's LIKE search.
        .executableTarget(name: "SearchBench", dependencies: ["TSRRegistry", "TSRStore"], path: "bench/SearchBench"),
        // bench/run: choosing what to evict among 100,000 blobs (the bounded cache).
        .executableTarget(
            name: "CacheBench", dependencies: ["TSRLibrary", "TSRRegistry", "TSRStore", .product(name: "GRDB", package: "GRDB.swift")],
            path: "bench/CacheBench"),
        // bench/run: header peeks and a lazy load through a real mount vs the header size / a direct read.
        .executableTarget(name: "PeekBench", dependencies: ["TSRStore", "TSRTesting"], path: "bench/PeekBench"),
        // bench/run: download + verify through the fetch engine vs curl -o (a local server).
        .executableTarget(
            name: "FetchBench",
            dependencies: ["TSRFetch", "TSRLibrary", "TSRStore", "TSRTesting"],
            path: "bench/FetchBench"),

        .testTarget(name: "TSRStoreTests", dependencies: ["TSRStore", "TSRTesting", "CCurl"]),
        .testTarget(name: "TSRRegistryTests", dependencies: ["TSRRegistry", "TSRTesting", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "TSRLibraryTests", dependencies: ["TSRLibrary", "TSRTesting"]),
        .testTarget(name: "TSRCivitAITests", dependencies: ["TSRCivitAI", "TSRFetch", "TSRLibrary", "TSRRegistry", "TSRTesting"]),
        .testTarget(name: "TSRWorkflowTests", dependencies: ["TSRWorkflow", "TSRStore"]),
        .testTarget(name: "TSRServerTests", dependencies: ["TSRServer", "TSRCivitAI", "TSRFetch", "TSRLibrary", "TSRRegistry", "TSRTesting", "TSRWorkflow"]),
        .testTarget(name: "TSRFetchTests", dependencies: ["TSRFetch", "TSRLibrary", "TSRTesting", "TSRWorkflow"]),
        .testTarget(
            name: "TSRMountTests",
            dependencies: ["TSRMount", "TSRLibrary", "TSRTesting", "TSRRegistry", "CLinux", .product(name: "GRDB", package: "GRDB.swift")]),
        // The mount's rules without a kernel: MountCore and its FUSE adapter, driven through
        // doubles of the kernel (KernelChannel) and of each request (Replier).
        .testTarget(
            name: "MountCoreTests",
            dependencies: ["TSRMount", "FUSE", "TSRLibrary", "TSRTesting", "TSRRegistry", "TSRStore", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "IntegrationTests", dependencies: ["TSRTesting", "TSRStore", "TSRLibrary", "CLinux"]),
        // Numbered fault scenarios (docs/SCENARIOS.md); each appends to the report scripts/test.sh prints.
        .testTarget(name: "ScenarioTests", dependencies: ["TSRTesting", "TSRStore", "CLinux"]),
    ]
)
