import ArgumentParser
import Foundation
import TSRLibrary
import TSRMount
import TSRStore

struct ComfyUICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comfyui", abstract: "Point ComfyUI at the library.", subcommands: [Setup.self])

    struct Setup: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "setup",
            abstract: "Mount the library at ComfyUI's models/, or add it to extra_model_paths.yaml.",
            discussion: """
                --mount mounts the library over COMFY_DIR/models (ComfyUI sees it as its own folder). \
                Otherwise a section of COMFY_DIR/extra_model_paths.yaml is written or updated, keeping \
                your other sections and comments: `tensors` for the whole library at the mount point, \
                or with --workflow NAME, `tensors_NAME` for that workflow's view, marked is_default so \
                ComfyUI searches it first. The file as it was is kept as extra_model_paths.yaml.tsr-backup;
                --undo puts it back. Restart ComfyUI to load the change.
                """)

        @Argument(help: "The ComfyUI directory (holding main.py and models/).") var comfyDirectory: String
        @Option(help: "The tsr mount point to use (default: the live mount of this home).") var mountpoint: String?
        @Option(help: "Add only this workflow's view, searched first.") var workflow: String?
        @Flag(help: "Mount the library at COMFY_DIR/models instead of editing the YAML file.") var mount = false
        @Flag(help: "With --mount: let other users read the mount (ComfyUI running as its own service user; non-root needs user_allow_other in /etc/fuse.conf).")
        var allowOther = false
        @Flag(help: "Restore extra_model_paths.yaml as it was before the last setup.") var undo = false
        @OptionGroup var homeOptions: HomeOptions

        func validate() throws {
            guard !(mount && (undo || workflow != nil || mountpoint != nil)) else {
                throw ValidationError("--mount mounts the whole library at COMFY_DIR/models; it takes no --workflow, --mountpoint or --undo")
            }
            guard mount || !allowOther else { throw ValidationError("--allow-other goes with --mount") }
        }

        func run() throws {
            let comfy = comfyDirectory.hasPrefix("/") ? comfyDirectory : currentDirectory + "/" + comfyDirectory
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: comfy, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("\(comfy) is not a directory")
            }
            let file = comfy + "/extra_model_paths.yaml"
            try runReporting(json: false) {
                if undo { return try restore(file: file) }
                if mount {
                    let models = comfy + "/models"
                    try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
                    // ComfyUI often runs as a service user of its own: only root sees a FUSE
                    // mount of root's (and only its owner one of another user's) unless allowed.
                    var owner = stat()
                    let foreign = stat(comfy, &owner) == 0 && owner.st_uid != getuid()
                    if foreign && !allowOther {
                        let user = getpwuid(owner.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(owner.st_uid)"
                        Out.line("note: \(comfy) belongs to \(user), not to you: if ComfyUI runs as \(user), it cannot read this mount; run again with --allow-other")
                    }
                    let command = try MountCommand.parse([models, "--home", homeOptions.resolved] + (allowOther ? ["--allow-other"] : []))
                    try command.run()
                    Out.line("ComfyUI's models/ is the tensors library now\(allowOther ? ", readable by every user" : "") (undo: tsr umount \(models))")
                    return
                }
                let home = homeOptions.resolved
                guard let point = mountpoint.map({ $0.hasPrefix("/") ? $0 : currentDirectory + "/" + $0 }) ?? LiveMount.all().first(where: { $0.home == home })?.mountpoint else {
                    throw Failure("no tsr mount of \(home) is running: mount it first (tsr mount DIR) or pass --mountpoint")
                }
                let name: String
                let lines: [String]
                let note = "managed by tensors (`tsr comfyui setup`); `tsr comfyui setup --undo` restores the file as it was"
                if let workflow {
                    let library = try homeOptions.open()
                    let (_, entries) = try library.registry.workflow(named: workflow)
                    let folders = Array(Set(entries.map(\.entry.folder))).sorted()
                    name = ExtraModelPaths.sectionName(forWorkflow: workflow)
                    lines = ExtraModelPaths.render(name, basePath: point + "/workflows/" + workflow, isDefault: true, folders: folders.map { ($0, $0 + "/") }, note: note)
                } else {
                    name = "tensors"
                    lines = ExtraModelPaths.render(name, basePath: point, isDefault: false, folders: ModelPath.folderKeys.map { ($0, $0 + "/") }, note: note)
                }
                let written = try ExtraModelPathsFile(comfyDirectory: comfy).write(section: name, lines: lines)
                Out.line("\(written == .created ? "wrote" : "updated") section \(name) of \(file) (base_path \(lines[2].dropFirst("    base_path: ".count))); restart ComfyUI to load it; undo: tsr comfyui setup \(comfyDirectory) --undo")
            }
        }

        private func restore(file: String) throws {
            switch try ExtraModelPathsFile(comfyDirectory: (file as NSString).deletingLastPathComponent).undo() {
            case .removed: Out.line("removed \(file) (it did not exist before)")
            case .restored: Out.line("restored \(file) as it was before `tsr comfyui setup`")
            }
        }
    }
}
