import ArgumentParser
import CLinux

/// `tsr`: one copy of every model, every name it goes by.
@main
struct Tsr: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tsr",
        abstract: "tensors: a content-addressed store and registry for diffusion model files.",
        discussion: """
            The home (models.db, blobs/, tmp/, quarantine/) is --home, else $TSR_HOME, else
            $XDG_DATA_HOME/tensors, else ~/.local/share/tensors.
            """,
        version: BuildInfo.versionLine,
        subcommands: [
            ImportCommand.self, AddCommand.self, PullCommand.self, SearchCommand.self, ListCommand.self, InfoCommand.self, HashCommand.self, AliasCommand.self,
            StatsCommand.self, VerifyCommand.self, GCCommand.self, DBCommand.self, WorkflowCommand.self,
            MountCommand.self, UmountCommand.self, ServeCommand.self, StatusCommand.self, DoctorCommand.self, ComfyUICommand.self, DemoCommand.self,
        ])
}

/// What `tsr --version` prints: the version, and the commit when the build was told it
/// (scripts/package.sh passes it; a plain `swift build` does not know it).
enum BuildInfo {
    static let version = "0.1.0"
    static var commit: String { String(cString: tsr_build_commit()) }
    static var versionLine: String {
        commit.isEmpty ? "tsr \(version) (development build, commit not recorded)" : "tsr \(version) (commit \(commit))"
    }
}
