import Foundation
import Testing
import TSRRegistry
import TSRStore
@testable import TSRMount

/// The namespace is built and diffed without a kernel (docs/SEMANTICS.md §1–§4).
@Suite struct NamespaceTests {
    static func digest(_ text: String) -> Digest { try! SHA256Hasher.digest(Array(text.utf8)) }
    static let t0 = Date(timeIntervalSince1970: 1_760_000_000)

    static func entry(_ id: Int64, _ folder: String, _ path: String, _ content: String, base: String? = nil, at: Date = t0) -> MountEntry {
        MountEntry(id: id, folder: folder, path: path, sha256: digest(content), updatedAt: at, size: Int64(content.count), state: .present, baseModel: base, creator: nil)
    }

    static func data(_ entries: [MountEntry], tombstones: [MountTombstone] = [], generation: Int64 = 1) -> MountData {
        let blobs = Dictionary(entries.map { ($0.sha256, MountBlob(sha256: $0.sha256, size: $0.size, state: $0.state, createdAt: t0)) }, uniquingKeysWith: { a, _ in a })
        return MountData(generation: generation, entries: entries, blobs: Array(blobs.values), tombstones: tombstones)
    }

    static let sample = data([
        entry(1, "checkpoints", "sdxl.safetensors", "A", base: "SDXL 1.0"),
        entry(2, "loras", "style/detail.safetensors", "B", base: "SD 1.5"),
        entry(3, "loras", "detail-copy.safetensors", "B", base: "SD 1.5"),
        entry(4, "diffusion_models", "flux.safetensors", "C", base: "a/b"),
    ])

    @Test func directoryLinkCountsCountSubdirectoriesSoTreeWalkersDescend() {
        let ns = NamespaceBuilder.build(Self.sample)
        #expect(ns.node(at: "loras")?.directory?.subdirectories == 1, "loras/style")
        #expect(ns.node(at: "loras/style")?.directory?.subdirectories == 0)
        #expect(ns.node(at: "by-base")?.directory?.subdirectories == 3)
        #expect(ns.node(.root)?.directory?.subdirectories == ns.node(.root)?.directory?.names.count, "the root holds directories only")
    }

    @Test func workflowEntriesAppearUnderTheirWorkflowReadOnly() {
        var data = Self.sample
        data.workflowEntries = [
            MountWorkflowEntry(workflow: "portrait", folder: "loras", path: "style/detail.safetensors", sha256: Self.digest("B"), size: 1, state: .remote, updatedAt: Self.t0),
            MountWorkflowEntry(workflow: "a/b", folder: "vae", path: "v.safetensors", sha256: Self.digest("V"), size: 1, state: .remote, updatedAt: Self.t0),
        ]
        let ns = NamespaceBuilder.build(data)
        let file = ns.node(at: "workflows/portrait/loras/style/detail.safetensors")?.file
        #expect(file?.writable == false && file?.sha256 == Self.digest("B") && file?.state == .remote)
        #expect(ns.node(at: "workflows/a_b/vae/v.safetensors") != nil, "a / in a workflow name cannot make a path")
    }

    @Test func rootHasEveryFolderKeyMirrorsAndViews() {
        let ns = NamespaceBuilder.build(Self.sample)
        let root = ns.node(.root)?.directory?.names ?? []
        for key in ModelPath.folderKeys + ["unet", "clip", "by-base", "by-creator", "by-hash", "workflows"] {
            #expect(root.contains(key), "§1: \(key)")
        }
        #expect(root == root.sorted())
        #expect(ns.node(at: "unet/flux.safetensors")?.file?.sha256 == Self.digest("C"), "§1: unet mirrors diffusion_models")
        #expect(ns.node(at: "loras/style/detail.safetensors")?.file?.writable == true)
        #expect(ns.node(at: "loras/style")?.directory?.target == AliasKey(folder: "loras", path: "style"))
        #expect(ns.node(at: "by-base/SDXL 1.0/checkpoints/sdxl.safetensors")?.file?.writable == false)
        #expect(ns.node(at: "by-base/a_b/diffusion_models/flux.safetensors") != nil, "a / in a base model name cannot make a path")
        #expect(ns.node(at: "by-creator/unknown/loras/detail-copy.safetensors") != nil)
        #expect(ns.node(at: "by-hash/" + Self.digest("B").rawValue)?.file?.size == 1)
        #expect(ns.node(at: "by-base/SDXL 1.0")?.directory?.target == nil, "views are read-only")
    }

    @Test func inodesAreStableAcrossBuildsAndFollowContent() {
        let a = NamespaceBuilder.build(Self.sample)
        let b = NamespaceBuilder.build(Self.sample)
        #expect(a.nodes.keys.sorted() == b.nodes.keys.sorted(), "§2: same registry, same inodes")
        for path in ["loras", "loras/style", "loras/style/detail.safetensors", "by-hash"] {
            #expect(a.node(at: path)?.inode == b.node(at: path)?.inode)
        }
        let changed = NamespaceBuilder.build(Self.data([Self.entry(2, "loras", "style/detail.safetensors", "Z")]))
        #expect(changed.node(at: "loras/style/detail.safetensors")?.inode != a.node(at: "loras/style/detail.safetensors")?.inode, "new content, new inode")
        #expect(changed.node(at: "loras/style")?.inode == a.node(at: "loras/style")?.inode, "directories keep theirs")
        let inodes = Set(a.nodes.keys)
        #expect(inodes.count == a.nodes.count && !inodes.contains(Inode(0)))
    }

    @Test func directoryMtimesAreTheNewestChangeBelowThem() {
        let later = Self.t0.addingTimeInterval(100)
        let ns = NamespaceBuilder.build(Self.data([
            Self.entry(1, "loras", "a.safetensors", "A"),
            Self.entry(2, "loras", "sub/b.safetensors", "B", at: later),
        ]))
        let ns0 = NamespaceBuilder.ns(Self.t0), ns1 = NamespaceBuilder.ns(later)
        #expect(ns.node(at: "loras/sub")?.directory?.mtimeNs == ns1)
        #expect(ns.node(at: "loras")?.directory?.mtimeNs == ns1, "§4: a change below moves every ancestor")
        #expect(ns.node(at: "loras/a.safetensors")?.file?.mtimeNs == ns0)
        #expect(ns.node(at: "vae")?.directory?.mtimeNs == NamespaceBuilder.baselineNs, "§4: untouched folders have a fixed mtime")
        let removedAt = Self.t0.addingTimeInterval(200)
        let afterRemoval = NamespaceBuilder.build(Self.data(
            [Self.entry(1, "loras", "a.safetensors", "A")],
            tombstones: [MountTombstone(folder: "loras", path: "sub/b.safetensors", deletedAt: removedAt)]))
        #expect(afterRemoval.node(at: "loras/sub") == nil)
        #expect(afterRemoval.node(at: "loras")?.directory?.mtimeNs == NamespaceBuilder.ns(removedAt), "§4: a removal moves it too")
    }

    @Test func overlayShowsFilesBeingWrittenAndEmptyDirectories() {
        var overlay = Overlay()
        overlay.pending[AliasKey(folder: "loras", path: "new/x.safetensors")] = (0, NamespaceBuilder.ns(Self.t0) + 5, 1)
        overlay.pending[AliasKey(folder: "checkpoints", path: "sdxl.safetensors")] = (0, NamespaceBuilder.ns(Self.t0) + 9, 2)
        overlay.emptyDirectories[AliasKey(folder: "vae", path: "made/here")] = NamespaceBuilder.ns(Self.t0) + 7
        overlay.emptyDirectories[AliasKey(folder: "ipadapter", path: "")] = NamespaceBuilder.ns(Self.t0)
        let ns = NamespaceBuilder.build(Self.sample, overlay: overlay)
        #expect(ns.node(at: "loras/new/x.safetensors")?.file?.pending == true)
        #expect(ns.node(at: "checkpoints/sdxl.safetensors")?.file?.pending == true, "a write over an existing name shows as being written")
        #expect(ns.node(at: "vae/made/here")?.directory?.names == [])
        #expect(ns.node(at: "vae")?.directory?.mtimeNs == NamespaceBuilder.ns(Self.t0) + 7)
        #expect(ns.node(at: "ipadapter")?.directory?.target == AliasKey(folder: "ipadapter", path: ""))
    }
}
