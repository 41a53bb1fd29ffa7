import ArgumentParser
import Foundation
import TSRLibrary
import TSRStore

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Import a generated demo models tree and show what tensors made of it.",
        discussion: """
            Uses --home, else $TSR_HOME, else a separate demo home ($XDG_DATA_HOME/tensors-demo or \
            ~/.local/share/tensors-demo), so your own library is never touched.
            """)

    @Option(name: .long, help: "The home to import the demo into.")
    var home: String?

    func run() throws {
        var environment = ProcessInfo.processInfo.environment
        if home == nil, environment["TSR_HOME"] == nil {
            let data = environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((environment["HOME"] ?? "/root") + "/.local/share")
            environment["TSR_HOME"] = data + "/tensors-demo"
        }
        let resolved = StoreLayout.resolveHome(explicit: home, environment: environment, cwd: currentDirectory)
        try runReporting(json: false) {
            let library = try Library(home: resolved)
            let tree = NSTemporaryDirectory() + "tsr-demo-\(getpid())/models"
            defer { try? FileManager.default.removeItem(atPath: (tree as NSString).deletingLastPathComponent) }
            try DemoTree.write(to: tree)
            Out.line("$ tsr import \(tree) --move   (home: \(resolved))")
            var options = ImportOptions()
            options.mode = .move
            let summary = try Importer(library: library).run(root: tree, options: options)
            Out.line("Imported \(counted(summary.files, "file")): \(summary.imported) hashed, \(summary.unchanged) unchanged; unique blobs \(summary.uniqueBlobs), duplicates \(summary.duplicates), saved \(formatBytes(summary.bytesSaved)); \(summary.skipped) sidecar skipped")
            printIssues(summary.errors)
            Out.line("")
            Out.line("$ tsr stats")
            try StatsCommand.parse(["--home", resolved]).run()
            Out.line("")
            Out.line("$ tsr list")
            try ListCommand.parse(["--home", resolved]).run()
        }
    }
}
