import ArgumentParser
import TSRLibrary
import TSRStore

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Re-hash stored blobs; a mismatch is quarantined and reported (exit 1).")

    @Argument(help: "SHA-256s to verify (default: every stored blob).")
    var hashes: [String] = []

    @OptionGroup var homeOptions: HomeOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        for text in hashes where !(8...64).contains(text.count) || !text.allSatisfy(\.isHexDigit) {
            throw ValidationError("\(text) is not a SHA-256 (64 hex digits, or a unique prefix of at least 8)")
        }
        try runReporting(json: output.json) {
            let library = try homeOptions.open()
            let digests = try hashes.map { text throws -> Digest in
                guard let digest = try library.digest(named: text) else { throw ValidationError("\(text) is not a SHA-256") }
                return digest
            }
            let reports = try withProgress("verifying", enabled: !output.json) { progress in
                try Maintenance(library: library).verify(digests, progress: progress)
            }
            let bad = reports.filter { !$0.isOK }
            if output.json {
                try Out.json(reports)
            } else {
                for report in bad {
                    switch report.status {
                    case .corrupt:
                        Out.line("CORRUPT \(report.sha256): bytes hash to \(report.actual ?? "?"); moved to \(report.quarantinedAt ?? "quarantine")")
                    case .missing:
                        Out.line("MISSING \(report.sha256): the blob file is gone; its entry is now marked not downloaded")
                    case .unknown:
                        Out.line("UNKNOWN \(report.sha256): not in the registry")
                    case .ok:
                        break
                    }
                }
                Out.line("verified \(reports.count) blob\(reports.count == 1 ? "" : "s"): \(reports.count - bad.count) ok, \(bad.count) with problems")
            }
            if !bad.isEmpty { throw ExitCode(1) }
        }
    }
}
