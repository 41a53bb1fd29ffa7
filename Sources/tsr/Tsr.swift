import ArgumentParser
import CLinux
import Foundation

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
            MountCommand.self, UmountCommand.self, ServeCommand.self, StatusCommand.self, DoctorCommand.self, ComfyUICommand.self, DemoCommand.self, OutdatedCommand.self, UpdateCommand.self,
            CacheCommand.self, PinCommand.self, UnpinCommand.self,
        ])

    /// ArgumentParser's main, except that a bad argument found while a subcommand runs (a
    /// ValidationError from run(), after parsing) is reported with that subcommand's usage, as
    /// one found while parsing is, instead of the whole tool's `tsr <subcommand>`.
    static func main() {
        var command: ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        do {
            try command.run()
        } catch let error as ValidationError {
            let type = type(of: command)
            let path = (Self.commandPath(to: type, from: Self.self) ?? [Self.configuration.commandName ?? "tsr"]).joined(separator: " ")
            let usage = usageString(for: type).replacingOccurrences(of: "\n", with: "\n  ")
            FileHandle.standardError.write(Data("Error: \(error.description)\nUsage: \(usage)\n  See '\(path) --help' for more information.\n".utf8))
            exit(withError: ExitCode.validationFailure)
        } catch {
            exit(withError: error)
        }
    }

    /// The command names from `root` down to `type` ("tsr", "db", "scan"), nil when not below it.
    static func commandPath(to type: ParsableCommand.Type, from root: ParsableCommand.Type) -> [String]? {
        let name = root.configuration.commandName ?? String(describing: root)
        if root == type { return [name] }
        for child in root.configuration.subcommands {
            if let rest = commandPath(to: type, from: child) { return [name] + rest }
        }
        return nil
    }
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
