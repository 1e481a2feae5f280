import Foundation
import TestSupport
import XCTest

final class PrepareUnderMPITests: XCTestCase {
    /// `w2vbert prepare` under real mpirun (2 and 3 ranks, each checking a share, rank 0 writing) and with
    /// --jobs 3 writes byte-identical manifests to one process, and lists the same skipped files.
    func testPrepareManifestsIdenticalForRanksAndJobs() throws {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("w2v-prep-mpi-\(UUID().uuidString)")
        addTeardownBlock { try? fm.removeItem(at: root) }
        let audio = root.appendingPathComponent("audio")
        try fm.createDirectory(at: audio, withIntermediateDirectories: true)
        // A few folders of the default corpus (real Ogg at 22.05/44.1 kHz), plus a file that is not audio.
        let corpus = "/usr/share/games/fillets-ng/sound"
        let levels = try fm.contentsOfDirectory(atPath: corpus).sorted().filter {
            fm.fileExists(atPath: "\(corpus)/\($0)/cs")
        }
        XCTAssertGreaterThan(levels.count, 5, "the default corpus is missing: bash launch/setup.sh")
        for l in levels.prefix(6) {
            try fm.createSymbolicLink(
                atPath: audio.appendingPathComponent(l).path, withDestinationPath: "\(corpus)/\(l)/cs")
        }
        try "not audio".write(to: audio.appendingPathComponent("broken.ogg"), atomically: true, encoding: .utf8)
        let exe = w2vbertExecutable()
        func prepare(
            _ name: String, _ launcher: [String], _ extra: [String] = []
        ) throws -> (train: Data, valid: Data, output: String) {
            let out = root.appendingPathComponent(name).path
            let r = try runCommand(
                launcher + [exe, "prepare", audio.path, "--out", out, "--valid-percent", "10"] + extra,
                environment: mpirunEnvironment, timeout: 120)
            XCTAssertFalse(r.timedOut, r.output)
            XCTAssertEqual(r.status, 0, r.output)
            return (
                try Data(contentsOf: URL(fileURLWithPath: out + "/train.tsv")),
                try Data(contentsOf: URL(fileURLWithPath: out + "/valid.tsv")), r.output
            )
        }
        let one = try prepare("one", [])
        XCTAssertTrue(one.output.contains("broken.ogg: unreadable"), one.output)
        XCTAssertGreaterThan(one.train.count, 1000)
        let skippedLines = { (s: String) in s.split(separator: "\n").filter { $0.hasPrefix("    ") } }
        for (name, launcher, extra) in [
            ("jobs3", [String](), ["--jobs", "3"]),
            ("np2", ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none"], []),
            ("np3", ["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none"], ["--jobs", "2"])
        ] {
            let other = try prepare(name, launcher, extra)
            XCTAssertEqual(other.train, one.train, name)
            XCTAssertEqual(other.valid, one.valid, name)
            XCTAssertEqual(skippedLines(other.output), skippedLines(one.output), name)
        }
    }
}
