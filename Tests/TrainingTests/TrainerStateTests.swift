import XCTest
import Foundation
import Training
import W2VBert

final class TrainerStateTests: XCTestCase {
    func state() -> TrainerState {
        var s = TrainerState()
        s.step = 12
        s.optimizerStep = 11
        s.epoch = 2
        s.microBatch = 40
        s.worldSize = 2
        s.updateFreq = 2
        s.seed = 7
        s.tau = 1.5
        s.lr = 1e-4
        s.consecutiveSkips = 1
        s.codeWindow = [0.1, 1.0 / 3, 2e-300]
        s.config = "model:\n  dim: 144\n"
        s.validLoss = 8.25
        return s
    }

    /// Every field survives encode → decode exactly (the code window's doubles bit for bit: resume is exact).
    func testRoundTrip() throws {
        let s = state()
        XCTAssertEqual(try TrainerState.decode(s.encoded(), path: "t.json"), s)
        var noValid = s
        noValid.validLoss = nil
        XCTAssertEqual(try TrainerState.decode(noValid.encoded(), path: "t.json"), noValid)
    }

    /// A file of version 1 (no format_version; what earlier versions wrote) still reads.
    func testReadsVersion1() throws {
        let v1 =
            #"{"step": 5, "optimizer_step": 5, "epoch": 0, "micro_batch": 10, "world_size": 2, "update_freq": 1, "seed": 1, "tau": 2.0, "lr": 1e-5, "consecutive_skips": 0, "code_window": [1, 2], "config": "x: 1", "version": "w2vbert-swift 0.1"}"#
        let s = try TrainerState.decode(Data(v1.utf8), path: "old.json")
        XCTAssertEqual(s.formatVersion, 1)
        XCTAssertEqual(s.step, 5)
        XCTAssertEqual(s.microBatch, 10)
        XCTAssertEqual(s.codeWindow, [1, 2])
        XCTAssertNil(s.validLoss)
    }

    /// A newer format, a missing field, a wrong type and a negative count are refused naming the file and field.
    func testRefusesNewerAndBrokenFiles() throws {
        var newer = try JSONSerialization.jsonObject(with: state().encoded()) as! [String: Any]
        newer["format_version"] = 99
        let cases: [(Data, [String])] = [
            (try JSONSerialization.data(withJSONObject: newer), ["format_version", "newer", "99"]),
            (Data(#"{"step": 1}"#.utf8), ["missing field", "world_size"]),
            (
                Data(#"{"step": "one", "world_size": 1, "update_freq": 1, "seed": 1, "config": ""}"#.utf8),
                ["step", "wrong type"]
            ),
            (Data(#"{"step": 1, "world_size": 0, "update_freq": 1, "seed": 1, "config": ""}"#.utf8), ["negative"]),
            (Data("not json".utf8), ["t.json"])
        ]
        for (data, words) in cases {
            XCTAssertThrowsError(try TrainerState.decode(data, path: "run/t.json")) { e in
                let m = "\(e)"
                XCTAssertTrue(m.hasPrefix("run/t.json: "), m)
                for w in words { XCTAssertTrue(m.contains(w), "'\(m)' should name \(w)") }
            }
        }
    }
}

final class ArchitectureCheckTests: XCTestCase {
    /// A checkpoint written before a key existed (the key absent from its YAML) has that key's default:
    /// accepted when the run uses the default, refused naming the key when it does not.
    func testMissingKeysTakeTheirDefaults() throws {
        let run = try Config.load(preset: "tiny").yaml
        let old = run.split(separator: "\n").filter { !$0.contains("context_proj") && !$0.contains("frontend_norm") }
            .joined(separator: "\n")
        XCTAssertNil(architectureDifference(expected: run, found: old))
        let other = try Config.load(preset: "tiny", overrides: ["model.context_proj=false"]).yaml
        let diff = try XCTUnwrap(architectureDifference(expected: other, found: old))
        XCTAssertTrue(diff.contains("model.context_proj"), diff)
    }
}
