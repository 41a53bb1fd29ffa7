import Foundation
import Testing
import TSRRegistry
import TSRStore
import TSRTesting
@testable import TSRLibrary

@Suite struct ImporterTests {
    static func options(_ mode: AdoptMode = .link, explicit: Bool = false, dryRun: Bool = false, folder: String? = nil, all: Bool = false) -> ImportOptions {
        var options = ImportOptions()
        options.mode = mode
        options.modeExplicit = explicit
        options.dryRun = dryRun
        options.folder = folder
        options.includeAll = all
        return options
    }

    /// A library in `dir/home` and the demo tree in `dir/models`.
    static func setup(_ dir: TempDirectory) throws -> (Library, String) {
        let library = try Library(home: dir.path + "/home")
        let models = dir.path + "/models"
        try DemoTree.write(to: models)
        return (library, models)
    }

    @Test func importsATreeStoringDuplicatesOnce() throws {
        try TempDirectory.with { dir in
            let (library, models) = try Self.setup(dir)
            let summary = try Importer(library: library).run(root: models, options: Self.options())
            #expect(summary.files == 8)
            #expect(summary.imported == 8 && summary.unchanged == 0)
            #expect(summary.uniqueBlobs == 6 && summary.duplicates == 2)
            #expect(summary.skipped == 1, "the .civitai.info sidecar")
            #expect(summary.errors.isEmpty)
            #expect(summary.aliasesCreated == 8)
            let sd15 = DemoTree.files()[0].bytes
            #expect(summary.bytesSaved == Int64(sd15.count + DemoTree.files()[3].bytes.count))
            #expect(try library.store.blobsOnDisk().count == 6)
            let listing = try library.registry.listing()
            #expect(listing.map { $0.folder + "/" + $0.path }.contains("checkpoints/SD1.5/demo-sd15-copy.safetensors"))
            let pony = try #require(listing.first { $0.path == "pony/demo_pony_style.safetensors" })
            #expect(pony.baseModel == "Pony")
            let blob = try #require(try library.registry.blob(pony.sha256))
            #expect(blob.tensorCount == 1 && blob.metadata["ss_sd_model_name"] == "ponyDiffusionV6XL.safetensors")
            // --link: originals stay where they were and read the same.
            for file in DemoTree.files() where file.path.hasSuffix(".safetensors") {
                #expect(try readBytes(models + "/" + file.path) == file.bytes)
            }
        }
    }

    @Test func reimportOfAnUnchangedTreeHashesNothing() throws {
        try TempDirectory.with { dir in
            let (library, models) = try Self.setup(dir)
            let importer = Importer(library: library)
            _ = try importer.run(root: models, options: Self.options(.copy))
            let counter = ProgressCounter()
            let again = try importer.run(root: models, options: Self.options(.copy), progress: counter)
            #expect(again.imported == 0 && again.unchanged == 8 && again.bytesHashed == 0)
            #expect(counter.bytesTotal == 0 && counter.filesTotal == 0)
            #expect(again.aliasesCreated == 0)
            // A changed file is hashed again and its alias repointed.
            let changed = SafetensorsBuilder(tensors: [("w", "F16", [8])], fill: 42).bytes()
            try Data(changed).write(to: URL(fileURLWithPath: models + "/vae/demo-vae.safetensors"))
            let third = try importer.run(root: models, options: Self.options(.copy))
            #expect(third.imported == 1 && third.unchanged == 7 && third.aliasesReplaced == 1)
            let alias = try #require(try library.registry.alias(folder: "vae", path: "demo-vae.safetensors"))
            #expect(alias.sha256 == (try SHA256Hasher.digest(changed)))
        }
    }

    @Test func moveEmptiesTheTreeAndLosesNothing() throws {
        try TempDirectory.with { dir in
            let (library, models) = try Self.setup(dir)
            let summary = try Importer(library: library).run(root: models, options: Self.options(.move))
            #expect(summary.originalsRemoved == 8 && summary.errors.isEmpty)
            for file in DemoTree.files() where file.path.hasSuffix(".safetensors") {
                #expect(!SystemCalls.exists(models + "/" + file.path))
                let digest = try SHA256Hasher.digest(file.bytes)
                #expect(try readBytes(library.layout.blobPath(digest)) == file.bytes)
            }
            #expect(SystemCalls.exists(models + "/loras/demo_detail.civitai.info"), "files not imported are left alone")
            #expect(try library.registry.localFilesByPath().isEmpty, "removed originals are forgotten")
        }
    }

    @Test func badFilesAreReportedAndKept() throws {
        try TempDirectory.with { dir in
            let (library, models) = try Self.setup(dir)
            let truncated = Array(DemoTree.files()[2].bytes.prefix(200))
            try dir.write("models/checkpoints/broken.safetensors", truncated)
            try dir.write("models/checkpoints/notes.safetensors", Array("just text".utf8))
            try dir.write("models/loose.safetensors", DemoTree.files()[0].bytes)
            try dir.write("models/loras/new\nline.safetensors", DemoTree.files()[3].bytes)
            // A name that is not UTF-8: created through the C API with raw bytes.
            var raw = Array((models + "/loras/bad-").utf8) + [0xFF] + Array(".safetensors".utf8) + [0]
            let fd = creat(&raw, 0o644)
            #expect(fd >= 0)
            close(fd)
            try FileManager.default.createSymbolicLink(atPath: models + "/loras/loop", withDestinationPath: models + "/loras")
            try FileManager.default.createSymbolicLink(atPath: models + "/loras/dangling.safetensors", withDestinationPath: models + "/nowhere")
            let summary = try Importer(library: library).run(root: models, options: Self.options(.move))
            let messages = summary.errors.map { "\($0.path): \($0.message)" }
            func has(_ fragment: String, _ path: String) -> Bool { messages.contains { $0.contains(path) && $0.contains(fragment) } }
            #expect(has("truncated safetensors file", "broken.safetensors"))
            #expect(has("not a safetensors file", "notes.safetensors"))
            #expect(has("not inside a folder", "loose.safetensors"))
            #expect(has("control character", "new\\x0aline"))
            #expect(has("not valid UTF-8", "bad-\\xff"))
            #expect(has("symlink loop", "loras/loop"))
            #expect(has("broken symlink", "dangling"))
            #expect(summary.errors.count == 7, "\(messages)")
            #expect(summary.imported == 8)
            // Nothing of the bad files was stored or removed.
            for kept in ["checkpoints/broken.safetensors", "checkpoints/notes.safetensors", "loose.safetensors", "loras/new\nline.safetensors"] {
                #expect(SystemCalls.exists(models + "/" + kept))
            }
            #expect(try library.registry.listing().count == 8)
            #expect(try library.store.blobsOnDisk().count == 6)
        }
    }

    @Test func dryRunChangesNothing() throws {
        try TempDirectory.with { dir in
            let (library, models) = try Self.setup(dir)
            let summary = try Importer(library: library).run(root: models, options: Self.options(.move, dryRun: true))
            #expect(summary.dryRun && summary.files == 8 && summary.uniqueBlobs == 6 && summary.duplicates == 2)
            #expect(try library.store.blobsOnDisk().isEmpty)
            #expect(try library.registry.listing().isEmpty)
            #expect(SystemCalls.exists(models + "/checkpoints/demo-sd15.safetensors"))
        }
    }

    @Test func folderOptionAndAllTakeOneFolderWithSidecars() throws {
        try TempDirectory.with { dir in
            let (library, models) = try Self.setup(dir)
            let summary = try Importer(library: library).run(root: models + "/loras", options: Self.options(folder: "loras", all: true))
            #expect(summary.files == 5 && summary.errors.isEmpty)
            #expect(try library.registry.alias(folder: "loras", path: "demo_detail.civitai.info") != nil)
            #expect(try library.registry.alias(folder: "loras", path: "style/demo_detail_v1.safetensors") != nil)
            #expect(throws: LibraryError.self) { try Importer(library: library).run(root: models, options: Self.options(folder: "../x")) }
        }
    }

    @Test func legacyFolderNamesImportIntoCurrentKeys() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            try dir.write("models/unet/flux.safetensors", DemoTree.files()[6].bytes)
            try dir.write("models/clip/t5.safetensors", DemoTree.files()[7].bytes)
            _ = try Importer(library: library).run(root: dir.path + "/models", options: Self.options())
            #expect(try library.registry.alias(folder: "diffusion_models", path: "flux.safetensors") != nil)
            #expect(try library.registry.alias(folder: "text_encoders", path: "t5.safetensors") != nil)
        }
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs root to mount a tmpfs"))
    func acrossFilesystemsExplicitLinkFailsDefaultCopiesMoveVerifies() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            try Tmpfs.with(sizeBytes: 16 << 20) { other in
                try DemoTree.write(to: other + "/models")
                let explicit = try Importer(library: library).run(root: other + "/models", options: Self.options(.link, explicit: true))
                #expect(explicit.errors.count == 8 && explicit.errors.allSatisfy { $0.message.contains("another filesystem") })
                #expect(try library.store.blobsOnDisk().isEmpty)
                let fallback = try Importer(library: library).run(root: other + "/models", options: Self.options(.link))
                #expect(fallback.errors.isEmpty && fallback.imported == 8)
                #expect(SystemCalls.exists(other + "/models/vae/demo-vae.safetensors"))
                try DemoTree.write(to: other + "/models2")
                let moved = try Importer(library: library).run(root: other + "/models2", options: Self.options(.move))
                #expect(moved.originalsRemoved == 8 && moved.errors.isEmpty)
                #expect(!SystemCalls.exists(other + "/models2/vae/demo-vae.safetensors"))
            }
        }
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs root to mount a tmpfs"))
    func aFullHomeDiskReportsPerFileAndKeepsOriginals() throws {
        try TempDirectory.with { dir in
            let big = SafetensorsBuilder(tensors: [("w", "U8", [2 << 20])], fill: 9).bytes()
            try dir.write("models/checkpoints/big.safetensors", big)
            try dir.write("models/loras/small.safetensors", DemoTree.files()[3].bytes)
            try Tmpfs.with(sizeBytes: 1 << 20) { home in
                let library = try Library(home: home)
                // One file at a time: with two hashing threads the small file's commit could land
                // while the big one's temp file fills the disk, and fail too.
                var options = Self.options(.move)
                options.workers = 1
                let summary = try Importer(library: library).run(root: dir.path + "/models", options: options)
                #expect(summary.errors.count == 1)
                #expect(summary.errors.first?.message.contains("no space left on device") == true)
                #expect(SystemCalls.exists(dir.path + "/models/checkpoints/big.safetensors"))
                #expect(try readBytes(dir.path + "/models/checkpoints/big.safetensors") == big)
                #expect(try library.registry.listing().map(\.path) == ["small.safetensors"])
                #expect(try SystemCalls.listDirectory(library.layout.tmp).isEmpty, "no half-written temp file")
            }
        }
    }
}

@Suite struct MaintenanceTests {
    @Test func scanRegistersFilesInPlace() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            try DemoTree.write(to: dir.path + "/models")
            let summary = try Scanner(library: library).run(root: dir.path + "/models")
            #expect(summary.files == 8 && summary.hashed == 8 && summary.errors.isEmpty)
            #expect(try library.store.blobsOnDisk().isEmpty, "scan stores nothing")
            let path = dir.path + "/models/loras/pony/demo_pony_style.safetensors"
            #expect(try library.registry.localMetadata(path: path)["ss_base_model_version"] == "sdxl_base_v1-0")
            #expect(try Scanner(library: library).run(root: dir.path + "/models").unchanged == 8)
        }
    }

    @Test func verifyFindsAndQuarantinesAFlippedByte() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            try DemoTree.write(to: dir.path + "/models")
            _ = try Importer(library: library).run(root: dir.path + "/models", options: ImporterTests.options(.copy))
            #expect(try Maintenance(library: library).verify([]).allSatisfy(\.isOK))
            let victim = try SHA256Hasher.digest(DemoTree.files()[7].bytes)
            let path = library.layout.blobPath(victim)
            try SystemCalls.changeMode(path, 0o644)
            var bytes = try readBytes(path)
            bytes[bytes.count - 1] ^= 0x80
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let reports = try Maintenance(library: library).verify([])
            let bad = reports.filter { !$0.isOK }
            #expect(bad.map(\.sha256) == [victim.rawValue])
            #expect(bad.first?.status == .corrupt)
            #expect(try library.registry.blob(victim)?.state == .quarantined)
            #expect(!library.store.contains(victim))
            #expect(try library.registry.blob(try SHA256Hasher.digest(DemoTree.files()[0].bytes))?.verifiedAt != nil)
        }
    }

    @Test func gcRemovesOnlyUnreferencedBlobs() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            try DemoTree.write(to: dir.path + "/models")
            _ = try Importer(library: library).run(root: dir.path + "/models", options: ImporterTests.options(.copy))
            let vae = try SHA256Hasher.digest(DemoTree.files()[7].bytes)
            let sd15 = try SHA256Hasher.digest(DemoTree.files()[0].bytes)
            try library.registry.removeAlias(folder: "vae", path: "demo-vae.safetensors")
            try library.registry.removeAlias(folder: "checkpoints", path: "demo-sd15.safetensors")
            let dry = try Maintenance(library: library).collectGarbage(dryRun: true)
            #expect(dry.blobs == [vae.rawValue] && library.store.contains(vae))
            let report = try Maintenance(library: library).collectGarbage(dryRun: false)
            #expect(report.blobs == [vae.rawValue] && report.bytesFreed == Int64(DemoTree.files()[7].bytes.count))
            #expect(!library.store.contains(vae))
            #expect(try library.registry.blob(vae) == nil)
            #expect(library.store.contains(sd15), "still named by its other alias")
        }
    }

    @Test func infoResolvesFilesAliasesAndHashes() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            try DemoTree.write(to: dir.path + "/models")
            _ = try Importer(library: library).run(root: dir.path + "/models", options: ImporterTests.options(.copy))
            let inspector = Inspector(library: library)
            let byAlias = try inspector.info("checkpoints/demo-sdxl.safetensors", cwd: "/")
            #expect(byAlias.baseModel == "SDXL 1.0" && byAlias.tensorCount == 2 && byAlias.aliases == ["checkpoints/demo-sdxl.safetensors"])
            let byHash = try inspector.info(byAlias.sha256.uppercased(), cwd: "/")
            #expect(byHash == byAlias)
            let byPath = try inspector.info("models/checkpoints/SD1.5/demo-sd15-copy.safetensors", cwd: dir.path)
            #expect(byPath.aliases.count == 2 && byPath.path != nil)
            let outside = try dir.write("loose.safetensors", SafetensorsBuilder(metadata: ["modelspec.architecture": "flux-1-dev"], fill: 77).bytes())
            let unregistered = try inspector.info(outside, cwd: "/")
            #expect(unregistered.aliases.isEmpty && unregistered.baseModel == "Flux.1 D" && unregistered.state == nil)
            #expect(throws: LibraryError.self) { try inspector.info("loras/none.safetensors", cwd: "/") }
        }
    }
}

@Suite struct ImportSafetyTests {
    @Test func theHomeIsNeverImported() throws {
        try TempDirectory.with { dir in
            // The home inside the tree being imported: its blobs are passed over.
            let library = try Library(home: dir.path + "/models/home")
            try DemoTree.write(to: dir.path + "/models")
            let first = try Importer(library: library).run(root: dir.path + "/models", options: ImporterTests.options(.move))
            #expect(first.errors.isEmpty && first.files == 8)
            let again = try Importer(library: library).run(root: dir.path + "/models", options: ImporterTests.options(.move, all: true))
            #expect(again.files == 1, "only the sidecar; nothing under the home")
            #expect(try library.store.blobsOnDisk().count == 7)
            for blob in try library.store.blobsOnDisk() { #expect(library.store.contains(blob.digest)) }
            // The tree inside the home: refused outright.
            #expect(throws: LibraryError.self) {
                try Importer(library: library).run(root: dir.path + "/models/home/blobs", options: ImporterTests.options(.move))
            }
            #expect(try library.store.blobsOnDisk().count == 7)
        }
    }

    @Test func aFileThatVanishesBeforeItsTurnIsReported() throws {
        try TempDirectory.with { dir in
            let library = try Library(home: dir.path + "/home")
            let path = try dir.write("models/loras/gone.safetensors", DemoTree.files()[3].bytes)
            let status = try SystemCalls.status(path)
            try SystemCalls.remove(path)
            let candidate = Importer.Candidate(
                file: FoundFile(path: path, relative: ["loras", "gone.safetensors"], status: status, isSymlink: false),
                folder: "loras", aliasPath: "gone.safetensors")
            guard case let .failed(_, message) = Importer.process(candidate, library: library, options: ImporterTests.options(.move), progress: nil) else {
                Issue.record("a vanished file was imported")
                return
            }
            #expect(message.contains("No such file"))
            #expect(try library.store.blobsOnDisk().isEmpty)
        }
    }
}
