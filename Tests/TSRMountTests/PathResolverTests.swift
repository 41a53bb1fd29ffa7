import Foundation
import Testing
import TSRRegistry
import TSRStore
import TSRTesting
@testable import TSRMount

/// The per-path resolver answers exactly what the snapshot builder answers for the same data:
/// every node (inode, parent, name, attributes, link count), every listing, and nil elsewhere.
@Suite struct PathResolverTests {
    typealias T = NamespaceTests

    /// `MountQueries` over data in memory, as the registry answers them (the registry's own SQL is
    /// checked against this in `mountQueriesMatchTheSnapshot`).
    struct MemorySource: MountQueries {
        let data: MountData

        static func isUnder(_ path: String, _ prefix: String, strictly: Bool) -> Bool {
            prefix.isEmpty || path.hasPrefix(prefix + "/") || (!strictly && path == prefix)
        }

        func mountEntries(folder: String?, under prefix: String) -> [MountEntry] {
            data.entries.filter { (folder == nil || $0.folder == folder) && Self.isUnder($0.path, prefix, strictly: false) }
                .sorted { ($0.folder, $0.path) < ($1.folder, $1.path) }
        }

        func mountEntry(folder: String, path: String) -> MountEntry? {
            data.entries.first { $0.folder == folder && $0.path == path }
        }

        func directoryFacts(folder: String, under prefix: String) -> DirectoryFacts {
            let entries = data.entries.filter { $0.folder == folder && Self.isUnder($0.path, prefix, strictly: true) }
            let removals = data.tombstones.filter { $0.folder == folder && Self.isUnder($0.path, prefix, strictly: true) }
            let subdirectories = Set(entries.compactMap { entry -> String? in
                let rest = prefix.isEmpty ? entry.path : String(entry.path.dropFirst(prefix.count + 1))
                let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
                return parts.count > 1 ? String(parts[0]) : nil
            })
            return DirectoryFacts(
                hasNames: !entries.isEmpty, newestUpdate: entries.map(\.updatedAt).max(), newestRemoval: removals.map(\.deletedAt).max(),
                subdirectories: subdirectories.sorted())
        }

        func mountHasNames(folder: String, under prefix: String) -> Bool { directoryFacts(folder: folder, under: prefix).hasNames }

        func mountFolders() -> [String] { Array(Set(data.entries.map(\.folder))).sorted() }
        func mountHasFolder(_ folder: String) -> Bool { data.entries.contains { $0.folder == folder } }

        func mountTombstones(folder: String?, under prefix: String) -> [MountTombstone] {
            data.tombstones.filter { (folder == nil || $0.folder == folder) && Self.isUnder($0.path, prefix, strictly: false) }
        }

        func mountBlob(_ digest: Digest) -> MountBlob? { data.blobs.first { $0.sha256 == digest && $0.state != .quarantined } }
        func mountBlobs() -> [MountBlob] { data.blobs.filter { $0.state != .quarantined }.sorted { $0.sha256 < $1.sha256 } }
        func mountWorkflowEntries() -> [MountWorkflowEntry] { data.workflowEntries.filter { $0.state != .quarantined } }

        func mountChildren(folder: String, under prefix: String) -> [MountEntry] {
            data.entries.filter { entry in
                guard entry.folder == folder, Self.isUnder(entry.path, prefix, strictly: true) else { return false }
                return !entry.path.dropFirst(prefix.isEmpty ? 0 : prefix.count + 1).contains("/")
            }.sorted { $0.path < $1.path }
        }

        func viewFacts(creator: Bool) -> ViewFacts {
            let values = Set(data.entries.map { creator ? $0.creator : $0.baseModel })
            return ViewFacts(values: Array(values), newestUpdate: data.entries.map(\.updatedAt).max())
        }

        func newestRemoval() -> Date? { data.tombstones.map(\.deletedAt).max() }

        func mountViewEntries(creator: Bool, values: [String?], folder: String?, under prefix: String) -> [MountEntry] {
            mountEntries(folder: folder, under: prefix).filter { values.contains(creator ? $0.creator : $0.baseModel) }
        }

        func mountWorkflowNames() -> [String] { Array(Set(data.workflowEntries.map(\.workflow))).sorted() }
        func mountWorkflowEntries(named names: [String]) -> [MountWorkflowEntry] { mountWorkflowEntries().filter { names.contains($0.workflow) } }
        func newestBlob() -> Date? { data.blobs.filter { $0.state != .quarantined }.map(\.createdAt).max() }
    }

    static func at(_ seconds: Double) -> Date { T.t0.addingTimeInterval(seconds) }

    /// Nested folders, mirrors, bases and creators (one with a slash), removals in a directory
    /// that still exists, in one that does not and in a folder with no names left, a workflow, a
    /// quarantined blob, and the overlay: a new name, a name rewritten, a new nested directory.
    static var sample: (MountData, Overlay) {
        var entries = [
            T.entry(1, "checkpoints", "sdxl.safetensors", "A", base: "SDXL 1.0", at: at(10)),
            T.entry(2, "loras", "style/detail.safetensors", "B", base: "SD 1.5", at: at(20)),
            T.entry(3, "loras", "style/deep/more.safetensors", "C", at: at(5)),
            T.entry(4, "loras", "flat.safetensors", "D", base: "a/b", at: at(30)),
            T.entry(5, "diffusion_models", "flux.safetensors", "E", base: "Flux.1 D", at: at(40)),
            T.entry(6, "text_encoders", "t5/t5xxl.safetensors", "F", at: at(50)),
            T.entry(7, "ipadapter", "ip.bin", "G", at: at(60)),
        ]
        entries[1].creator = "someone"
        entries[3].creator = "with/slash"
        var data = T.data(entries, tombstones: [
            MountTombstone(folder: "loras", path: "style/gone.safetensors", deletedAt: at(70)),
            MountTombstone(folder: "loras", path: "vanished/dir/x.safetensors", deletedAt: at(80)),
            MountTombstone(folder: "controlnet", path: "old.safetensors", deletedAt: at(90)),
            MountTombstone(folder: "workflows", path: "retired/", deletedAt: at(15)),
        ])
        data.blobs.append(MountBlob(sha256: T.digest("Q"), size: 3, state: .quarantined, createdAt: at(99)))
        data.blobs.append(MountBlob(sha256: T.digest("R"), size: 4, state: .remote, createdAt: at(25)))
        data.workflowEntries = [
            MountWorkflowEntry(workflow: "portrait", folder: "loras", path: "style/detail.safetensors", sha256: T.digest("B"), size: 1, state: .present, updatedAt: at(35)),
            MountWorkflowEntry(workflow: "x/y", folder: "vae", path: "v.safetensors", sha256: T.digest("R"), size: 4, state: .remote, updatedAt: at(45)),
        ]
        var overlay = Overlay()
        overlay.pending[AliasKey(folder: "loras", path: "new/being-written.safetensors")] = (size: 12, mtimeNs: NamespaceBuilder.ns(at(100)), serial: 1)
        overlay.pending[AliasKey(folder: "loras", path: "flat.safetensors")] = (size: 7, mtimeNs: NamespaceBuilder.ns(at(110)), serial: 2)
        overlay.emptyDirectories[AliasKey(folder: "vae", path: "made/here")] = NamespaceBuilder.ns(at(120))
        overlay.emptyDirectories[AliasKey(folder: "upscale_models", path: "")] = NamespaceBuilder.ns(at(3))
        overlay.emptyDirectories[AliasKey(folder: "sams", path: "")] = NamespaceBuilder.ns(at(4))  // a custom node's folder, mkdir'd
        return (data, overlay)
    }

    /// Compares the resolver with the snapshot on every path the snapshot has, and on paths it
    /// does not have.
    static func expectSameAnswers(_ data: MountData, _ overlay: Overlay, source: any MountQueries) throws {
        // What `mountSnapshot` reads: quarantined blobs are left out of by-hash and workflows.
        var read = data
        read.blobs.removeAll { $0.state == .quarantined }
        read.workflowEntries.removeAll { $0.state == .quarantined }
        let snapshot = NamespaceBuilder.build(read, overlay: overlay)
        let resolver = PathResolver(source: source, overlay: overlay)
        for (inode, node) in snapshot.nodes {
            let path = snapshot.path(of: inode)
            let answered = try resolver.node(at: path)
            #expect(answered == PathResolver.withoutNames(node), "node at '\(path)'")
            if let dir = node.directory {
                let listed = try resolver.listing(at: path)
                #expect(listed?.map(\.name) == dir.names, "listing of '\(path)'")
                let expected = dir.names.compactMap { dir.children[$0].flatMap(snapshot.node) }.map(PathResolver.withoutNames)
                #expect(listed == expected, "nodes listed in '\(path)'")
            } else {
                #expect(try resolver.listing(at: path) == nil, "a file has no listing: '\(path)'")
            }
            for missing in [path.isEmpty ? "nothing" : path + "/nothing", path + "x", path + "/"] where snapshot.node(at: missing) == nil {
                #expect(try resolver.node(at: missing) == nil, "'\(missing)' does not exist")
            }
        }
        for missing in ["by-hash/" + T.digest("Q").rawValue, "by-hash/nothex", "by-base/nothing", "workflows/none", "unknownview", "loras/style/detail.safetensors/x"] {
            #expect(try resolver.node(at: missing) == nil, "'\(missing)' does not exist")
        }
    }

    @Test func everyNodeAndListingMatchesTheSnapshot() throws {
        let (data, overlay) = Self.sample
        try Self.expectSameAnswers(data, overlay, source: MemorySource(data: data))
    }

    /// The registry's SQL, end to end: a registry with nested names in several folders (one with a
    /// non-ASCII directory), added at distinct times (a directory with an older and a newer name),
    /// names removed and moved, a quarantined blob and a workflow; the resolver over the registry
    /// answers what the snapshot of the same registry shows.
    @Test func theRegistrysQueriesAnswerWhatItsSnapshotShows() throws {
        try TempDirectory.with { dir in
            let registry = try Registry(path: dir.path + "/models.db")
            let names = [
                ("checkpoints", "sdxl.safetensors"), ("loras", "style/detail.safetensors"), ("loras", "style/deep/more.safetensors"),
                ("loras", "flat.safetensors"), ("loras", "stylé/ü.safetensors"), ("loras", "stylé/ab/x.safetensors"), ("loras", "stylé/bb/y.safetensors"), ("loras", "style0.safetensors"), ("loras", "style.safetensors"),
                ("diffusion_models", "flux.safetensors"), ("text_encoders", "t5/t5xxl.safetensors"), ("ipadapter", "ip.bin"),
                ("loras", "style/later.safetensors"),
            ]
            for (index, (folder, path)) in names.enumerated() {
                let digest = T.digest("content \(index)")
                try registry.upsertBlob(BlobRecord(sha256: digest, size: Int64(index + 1), state: index == 2 ? .remote : .present, baseModel: index % 3 == 0 ? "SD 1.5" : nil))
                _ = try registry.addAlias(folder: folder, path: path, sha256: digest, replace: false)
                // Each name its own update time (milliseconds are stored), so a directory's
                // newest change is told apart from its oldest.
                Thread.sleep(forTimeInterval: 0.002)
            }
            _ = try registry.removeAlias(folder: "loras", path: "style0.safetensors")
            try registry.moveAlias(from: ("loras", "flat.safetensors"), to: ("loras", "moved/flat.safetensors"), replace: false)
            try registry.setState(T.digest("content 9"), .quarantined)
            try registry.saveWorkflow(
                name: "portrait", format: "api",
                entries: [WorkflowEntryRecord(folder: "loras", path: "style/detail.safetensors", sha256: T.digest("content 1"), size: 2, url: nil, displayName: nil, required: true, note: nil)],
                replace: false)
            let data = try registry.mountSnapshot()
            try Self.expectSameAnswers(data, Overlay(), source: registry)
            var overlay = Overlay()
            overlay.pending[AliasKey(folder: "loras", path: "style/new.safetensors")] = (size: 3, mtimeNs: NamespaceBuilder.ns(Date()), serial: 3)
            overlay.emptyDirectories[AliasKey(folder: "loras", path: "stylé/made")] = NamespaceBuilder.ns(Date())
            try Self.expectSameAnswers(data, overlay, source: registry)
        }
    }

    @Test func anEmptyRegistryMatchesTheSnapshot() throws {
        let data = MountData(generation: 0, entries: [], blobs: [], tombstones: [])
        try Self.expectSameAnswers(data, Overlay(), source: MemorySource(data: data))
    }
}
