import Audio
import Foundation
import TestSupport
import XCTest

/// The built executable on trees with link loops and duplicates, and on a float WAV holding NaN and
/// infinity (files written by libsndfile): `prepare` lists each file once and counts what it left out;
/// the non-finite file is refused by `prepare --verify`, skipped and counted by training, and refused by
/// `features` and `embed` with exit status 1 naming the file.
final class PrepareCommandTests: XCTestCase {
    static let exe = w2vbertExecutable()
    let fm = FileManager.default

    func temp(_ tag: String) -> String { temporaryPath("w2v-prepcli", tag) }

    func run(_ args: [String], timeout: Double = 120) throws -> (status: Int32, output: String) {
        try runExecutable(Self.exe, args, timeout: timeout)
    }

    func tone(_ path: String, seconds: Double, freq: Double, format: AudioWriter.Format = .wav16) throws {
        try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let n = Int(16000 * seconds)
        let x = (0..<n).map { i in
            let t = Double(i) / 16000
            return Float(0.3 * sin(2 * .pi * freq * t) * (0.6 + 0.4 * sin(2 * .pi * 2.3 * t)))
        }
        try AudioWriter.write(path: path, samples: x, sampleRate: 16000, format: format)
    }

    /// Four WAV files, `a/loop -> ../a` and a hard link: four manifest rows, the loop and the second path
    /// named on their own lines, the summary counting them; the help says how duplicates are chosen.
    func testPrepareListsEachFileOnceAndCountsDuplicates() throws {
        let tree = temp("tree")
        for i in 0..<4 { try tone("\(tree)/a/x\(i).wav", seconds: 1 + 0.25 * Double(i), freq: 200 + 50 * Double(i)) }
        try fm.createSymbolicLink(atPath: "\(tree)/a/loop", withDestinationPath: "../a")
        try fm.createDirectory(atPath: "\(tree)/b", withIntermediateDirectories: true)
        try fm.linkItem(atPath: "\(tree)/a/x0.wav", toPath: "\(tree)/b/hard.wav")
        let out = temp("out")
        let r = try run(["prepare", tree, "--out", out, "--valid-percent", "0"])
        XCTAssertEqual(r.status, 0, r.output)
        let rows = try String(contentsOfFile: out + "/train.tsv", encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertEqual(rows, ["a/x0.wav\t16000", "a/x1.wav\t20000", "a/x2.wav\t24000", "a/x3.wav\t28000"])
        for line in [
            "prepare: 4 audio files under", "prepare: a/loop: folder loop back to a, not followed",
            "prepare: b/hard.wav: the same file as a/x0.wav, listed once",
            "  duplicates skipped: 1 file(s) and 1 folder(s) reached again by another path "
                + "(each listed or walked once)"
        ] {
            XCTAssert(r.output.contains(line), "expected '\(line)' in:\n\(r.output)")
        }
        let help = try run(["prepare", "--help"])
        let words = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for phrase in [
            "device and inode", "under the first of its paths in sorted order",
            "Reading headers does not look at the samples: only --verify decodes"
        ] {
            XCTAssert(words.contains(phrase), "expected '\(phrase)' in the help:\n\(help.output)")
        }
    }

    /// 3 s of float audio with 100 NaN and one +infinity among eight good files.
    func testNonFiniteWAVIsRefusedByVerifyTrainingFeaturesAndEmbed() throws {
        let dir = temp("nan")
        for i in 0..<8 { try tone("\(dir)/g\(i).wav", seconds: 1 + 0.125 * Double(i), freq: 150 + 20 * Double(i)) }
        var x = (0..<48_000).map { Float(0.3 * sin(Double($0) * 0.07)) }
        for k in 0..<100 { x[1000 + 300 * k] = .nan }
        x[40_000] = .infinity
        let nan = "\(dir)/nan.wav"
        try AudioWriter.write(path: nan, samples: x, sampleRate: 16000, format: .wavFloat)
        let reason = "decode: 101 non-finite samples (100 NaN, 1 infinite) in the audio"

        // Header-only prepare cannot see samples and keeps it; --verify reports and leaves it out.
        let headers = temp("headers")
        var r = try run(["prepare", dir, "--out", headers, "--valid-percent", "0"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(try String(contentsOfFile: headers + "/train.tsv", encoding: .utf8).contains("nan.wav\t48000"))
        let verified = temp("verified")
        r = try run(["prepare", dir, "--out", verified, "--valid-percent", "0", "--verify"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("  skipped: 1\n    nan.wav: \(reason)\n"), r.output)
        XCTAssertFalse(try String(contentsOfFile: verified + "/train.tsv", encoding: .utf8).contains("nan.wav"))

        // Training on the header-only manifest (a whole epoch): skipped and counted.
        let runDir = temp("run")
        r = try run(
            [
                "train", "--train", headers + "/train.tsv", "--run-dir", runDir, "--max-steps", "12",
                "--preset", "tiny", "--quiet", "--set", "compute.precision=fp32", "--set", "train.max_frames=1200",
                "--set", "train.max_samples=48000", "--set", "train.save_interval=12",
                "--set", "train.valid_interval=1000",
                "--set", "train.max_bad_fraction=0.2"
            ], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(
            r.output.components(separatedBy: "skipping \(nan): \(reason) (1 bad files so far").count, 2,
            r.output)

        // features and embed: status 1, one line naming the file and the count, no usage.
        for args in [
            ["features", nan, "--out", temp("f") + ".npy"],
            ["embed", "--checkpoint", runDir, nan, "--out", temp("e") + ".npy"]
        ] {
            r = try run(args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.output)")
            let errors = r.output.split(separator: "\n").filter { $0.contains("error") }
            XCTAssertEqual(errors, ["w2vbert: error: \(nan): \(reason)"], "\(args): \(r.output)")
            XCTAssertFalse(r.output.contains("Usage"), r.output)
        }
        r = try run(["embed", "--checkpoint", runDir, "\(dir)/g1.wav", "--out", temp("e") + ".npy"])
        XCTAssertEqual(r.status, 0, r.output)
    }
}
