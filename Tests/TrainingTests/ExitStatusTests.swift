import XCTest
import Foundation
import Training
import TestSupport

/// The exit-status contract (README "Exit statuses", implemented once in Sources/w2vbert/CLI.swift),
/// checked on the built executable for every subcommand:
///   0 done · 1 runtime input/I-O error, one line naming the file, no usage · 2 bad command line or config, with
///   the usage · train also 75/76/77/78 (75, 77, 78: DistributedTrainingTests; 76 here).
final class ExitStatusTests: XCTestCase {
    static let exe = DistributedTrainingTests.exe
    static let subcommands: [[String]] = [
        ["train"], ["config"], ["validate"], ["embed"], ["export-hf"], ["import-hf"], ["inspect"], ["compare"],
        ["prepare"], ["features"], ["bench", "model"], ["bench", "finetune"], ["bench", "kernels"], ["bench", "data"], ["bench", "dist"],
        ["bench", "scaling"], ["check", "mpi"], ["check", "dist"], ["transcribe"], ["evaluate"]
    ]

    func run(_ args: [String], timeout: Double = 120) throws -> (status: Int32, output: String) {
        try runExecutable(Self.exe, args, timeout: timeout)
    }

    func temp(_ tag: String) -> String { temporaryPath("w2v-exit", tag) }

    /// Status 2 with the usage, for an unknown option and for a missing required argument, on every subcommand;
    /// `--help` is 0 on every subcommand.
    func testCommandLineErrorsAre2WithUsageAndHelpIs0() throws {
        for sub in Self.subcommands {
            let name = sub.joined(separator: " ")
            var r = try run(sub + ["--no-such-option"])
            XCTAssertEqual(r.status, 2, "\(name): \(r.output)")
            XCTAssert(r.output.contains("Usage: w2vbert \(name)"), "\(name): \(r.output)")
            r = try run(sub + ["--help"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.output)")
            XCTAssert(r.output.contains("USAGE: w2vbert \(name)"), "\(name): \(r.output)")
        }
        // The old flat names are gone: an unknown subcommand is a usage error.
        for old in ["bench-kernels", "bench-data", "bench-dist", "mpi-check", "dist-check"] {
            let r = try run([old])
            XCTAssertEqual(r.status, 2, "\(old): \(r.output)")
        }
        for args in [
            ["train", "--preset", "tiny"], ["validate"], ["embed", "x.wav"], ["inspect"], ["compare", "a"],
            ["prepare"], ["features"], ["no-such-command"],
            ["train", "--max-steps=-1", "--train", "t", "--run-dir", "r"],
            ["embed", "--checkpoint", "c", "--out", "o.npy", "--layer", "middle", "a.wav"]
        ] {
            let r = try run(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssert(r.output.contains("Usage: w2vbert"), "\(args): \(r.output)")
        }
    }

    /// Configuration errors (unknown preset, bad --set value, unreadable --config) are 2 with the usage,
    /// and are reported before any input file is looked at.
    func testConfigurationErrorsAre2BeforeInputFiles() throws {
        let yaml = temp("bad") + ".yaml"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: yaml) }
        try "model:\n  dim: [oops\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let inputs = ["--train", "/nonexistent.tsv", "--run-dir", temp("r")]
        let cases: [([String], String)] = [
            (["train", "--preset", "huge"] + inputs, "unknown preset 'huge'"),
            (["train", "--preset", "tiny", "--set", "model.heads=5"] + inputs, "model.heads"),
            (["train", "--preset", "tiny", "--set", "no_such.key=1"] + inputs, "no_such.key"),
            (["train", "--config", "/nonexistent.yaml"] + inputs, "/nonexistent.yaml"),
            (["train", "--config", yaml] + inputs, yaml),
            (["train", "--preset", "tiny", "--config", yaml] + inputs, "not both"),
            (["config", "--preset", "huge"], "unknown preset 'huge'"),
            (["import-hf", "/nonexistent-hf", "--out", temp("ck"), "--preset", "huge"], "unknown preset 'huge'"),
            (["config", "--set", "optimizer.lr=fast"], "optimizer.lr"),
            (["bench", "model", "--preset", "huge"], "unknown preset 'huge'"),
            (["bench", "dist", "--preset", "huge"], "unknown preset 'huge'"),
            (["bench", "kernels", "--preset", "huge"], "unknown preset 'huge'"),
            (["bench", "scaling", "--preset", "huge"], "unknown preset 'huge'")
        ]
        for (args, needle) in cases {
            let r = try run(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssert(r.output.contains(needle), "\(args): expected '\(needle)' in \(r.output)")
            XCTAssert(r.output.contains("Usage: w2vbert"), "\(args): \(r.output)")
        }
    }

    /// Runtime input errors are 1 with exactly one line naming the file, and no usage.
    func testInputErrorsAre1WithOneLineNamingTheFile() throws {
        let emptyDir = temp("empty")
        try FileManager.default.createDirectory(atPath: emptyDir, withIntermediateDirectories: true)
        let junk = temp("junk") + ".wav"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: junk) }
        try Data("this is not audio".utf8).write(to: URL(fileURLWithPath: junk))
        let cases: [([String], String)] = [
            (["train", "--preset", "tiny", "--train", "/nonexistent.tsv", "--run-dir", temp("r")], "/nonexistent.tsv"),
            (["train", "--preset", "tiny", "--train", junk, "--run-dir", temp("r")], junk),
            (["validate", "--run-dir", "/nonexistent-run", "--valid", "/nonexistent.tsv"], "/nonexistent-run"),
            (["validate", "--run-dir", emptyDir, "--valid", "/nonexistent.tsv"], emptyDir),
            (["embed", "--checkpoint", "/nonexistent-run", "--out", temp("o") + ".npy", "a.wav"], "/nonexistent-run"),
            (["inspect", "/nonexistent-run"], "/nonexistent-run"),
            (["export-hf", "/nonexistent-run", "--out", temp("hf")], "/nonexistent-run"),
            (["import-hf", "/nonexistent-hf", "--out", temp("ck")], "/nonexistent-hf"),
            (["compare", "/nonexistent-a", "/nonexistent-b"], "/nonexistent-a"),
            (["prepare", "/nonexistent-audio", "--out", temp("p")], "/nonexistent-audio"),
            (["prepare", emptyDir, "--out", temp("p")], emptyDir),
            (["features", junk, "--out", temp("f") + ".npy"], junk),
            (["bench", "data", "--manifest", "/nonexistent.tsv", "--seconds", "1"], "/nonexistent.tsv")
        ]
        for (args, needle) in cases {
            let r = try run(args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.output)")
            let errors = r.output.split(separator: "\n").filter { $0.contains("error") }
            XCTAssertEqual(errors.count, 1, "\(args): one error line expected: \(r.output)")
            XCTAssert(errors.first?.hasPrefix("w2vbert: ") ?? false, "\(args): \(r.output)")
            XCTAssert(r.output.contains(needle), "\(args): expected '\(needle)' in \(r.output)")
            XCTAssertFalse(r.output.contains("Usage"), "\(args): \(r.output)")
        }
    }

    /// 76: a learning rate that blows the parameters up gives non-finite steps; past
    /// train.max_consecutive_skips in a row the run stops with 76 and says so.
    func testNonFiniteStepsExit76() throws {
        let run = temp("nonfinite")
        let args =
            ["train", "--train", DistributedTrainingTests.slice, "--run-dir", run, "--max-steps", "30"]
            + DistributedTrainingTests.common
            + ["--set", "optimizer.lr=1e30", "--set", "optimizer.warmup=1", "--set", "train.max_consecutive_skips=2"]
        let r = try self.run(args, timeout: 300)
        XCTAssertEqual(r.status, 76, r.output)
        XCTAssert(r.output.contains("consecutive non-finite steps"), r.output)
    }
}
