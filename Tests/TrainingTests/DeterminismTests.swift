import XCTest
import Foundation
import Audio
import Training
import TestSupport

/// Determinism: 2 ranks and 1 rank × update_freq 2 give bit-identical parameters when every
/// process uses the same number of BLAS threads — on a corpus of stereo 22.05 kHz Ogg/Vorbis files of odd
/// lengths, with 1 and with 2 threads per process. (OpenBLAS partitions a GEMM by thread count, and the
/// partition changes the rounding: 1 rank with 2 threads vs 2 ranks with 1 thread each differ by round-off,
/// 1.5e-6 relative after 5 steps. The trainer's default thread count is 1 per rank under MPI and all cores
/// in a single process, so compare runs with OPENBLAS_NUM_THREADS set.)
final class DeterminismTests: XCTestCase {
    func testTwoRanksEqualOneRankWithAccumulationOnStereoOddLengthOgg() throws {
        let dir = NSTemporaryDirectory() + "w2v-stereo-\(UUID().uuidString.prefix(8))"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/audio", withIntermediateDirectories: true)
        // 48 files from the default corpus: resampled to 22.05 kHz, an odd number of frames each, two channels
        // that differ (so the downmix matters).
        let slice = try String(contentsOfFile: DistributedTrainingTests.slice, encoding: .utf8).split(separator: "\n")
        let root = String(slice[0])
        for (i, line) in slice.dropFirst().prefix(48).enumerated() {
            let mono = try AudioDecoder.load(path: root + "/" + String(line.split(separator: "\t")[0]))
            var x = try Resampler.resample(mono, from: 16_000, to: 22_050)
            let n = min(x.count, 22_050 * (1 + i % 3)) | 1  // odd
            x = Array(x.prefix(n))
            var stereo = [Float](repeating: 0, count: 2 * x.count)
            for j in 0..<x.count {
                stereo[2 * j] = x[j]
                stereo[2 * j + 1] = 0.5 * x[(j + 37) % x.count]
            }
            try AudioWriter.write(
                path: dir + "/audio/\(String(format: "%03d", i)).ogg", samples: stereo, sampleRate: 22_050,
                channels: 2, format: .oggVorbis)
        }
        let exe = DistributedTrainingTests.exe
        var r = try runCommand(
            [exe, "prepare", dir + "/audio", "--out", dir, "--extensions", "ogg", "--valid-percent", "0"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let common = [
            "train", "--train", dir + "/train.tsv", "--preset", "tiny", "--quiet", "--set", "compute.precision=fp32", "--max-steps", "5",
            "--set", "train.seed=7", "--set", "train.max_frames=1200", "--set", "train.max_samples=48000"
        ]
        for threads in ["1", "2"] {
            let env = mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": threads]) { $1 }
            let two = dir + "/two-\(threads)", one = dir + "/one-\(threads)"
            r = try runCommand(
                ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", exe] + common + ["--run-dir", two],
                environment: env, timeout: 300)
            XCTAssertEqual(r.status, 0, r.output)
            r = try runCommand(
                [exe] + common + ["--run-dir", one, "--set", "train.update_freq=2"], environment: env, timeout: 300)
            XCTAssertEqual(r.status, 0, r.output)
            r = try runCommand([exe, "compare", two, one, "--rtol", "0"], timeout: 60)
            print("stereo odd-length Ogg, \(threads) BLAS thread(s) per process: \(r.output)")
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssert(r.output.contains("bit-identical"), r.output)
        }
    }

    /// balance_steps deals the last run of the sorted lengths over the step's M micro-batches; with fewer
    /// than M utterances left, a micro-batch is empty. 5 one-second files, one per micro-batch (max_frames
    /// 150 < 2 × 98), M = 2: steps of 2, 2 and 1 + empty, then the next epoch. 2 ranks (one of them gets the
    /// empty micro-batch) and 1 rank × update_freq 2 (the empty one is its last) train bit-identically.
    func testEmptyMicroBatchOfTheLastRun() throws {
        let dir = NSTemporaryDirectory() + "w2v-empty-\(UUID().uuidString.prefix(8))"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/audio", withIntermediateDirectories: true)
        let slice = try String(contentsOfFile: DistributedTrainingTests.slice, encoding: .utf8).split(separator: "\n")
        for (i, line) in slice.dropFirst().prefix(5).enumerated() {
            var x = try AudioDecoder.load(path: String(slice[0]) + "/" + String(line.split(separator: "\t")[0]))
            while x.count < 16_000 { x += x }
            try AudioWriter.write(
                path: dir + "/audio/\(i).wav", samples: Array(x.prefix(16_000)), sampleRate: 16_000, channels: 1,
                format: .wav16)
        }
        let plan = try DataOrder(
            lengths: [Int](repeating: 16_000, count: 5),
            config: DataOrderConfig(seed: 7, maxSamples: 16_000, maxFrames: 150),
            encoderLength: { max(0, (($0 - 1) / 2 - 1) / 2) }
        ).plan(epoch: 0, microBatchesPerStep: 2)
        XCTAssertEqual(plan.batches.map(\.items.count).sorted(), [0, 1, 1, 1, 1, 1])
        let exe = DistributedTrainingTests.exe
        var r = try runCommand(
            [exe, "prepare", dir + "/audio", "--out", dir, "--extensions", "wav", "--valid-percent", "0"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let common = [
            "train", "--train", dir + "/train.tsv", "--preset", "tiny", "--quiet", "--set", "compute.precision=fp32", "--max-steps", "5",
            "--set", "train.seed=7", "--set", "train.max_frames=150", "--set", "train.max_samples=16000", "--set",
            "train.log_interval=1"
        ]
        let env = mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }
        let two = dir + "/two", one = dir + "/one"
        r = try runCommand(
            ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", exe] + common + ["--run-dir", two],
            environment: env, timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        r = try runCommand(
            [exe] + common + ["--run-dir", one, "--set", "train.update_freq=2"], environment: env, timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        for run in [two, one] {
            let steps = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
                .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.filter {
                    $0["kind"] as? String == "train"
                }
            XCTAssertEqual(steps.compactMap { $0["epoch"] as? Int }.last, 1, "\(run): crosses into epoch 1")
            for st in steps { XCTAssertTrue((st["loss"] as? Double)?.isFinite == true, "\(run): \(st)") }
        }
        r = try runCommand([exe, "compare", two, one, "--rtol", "0"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("bit-identical"), r.output)
    }
}
