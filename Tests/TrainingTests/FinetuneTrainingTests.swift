import XCTest
import Foundation
import Training
import TestSupport

/// `w2vbert finetune` under real mpirun on labelled files of the default corpus: data parallelism equals
/// accumulation bit for bit, resume is exact, the encoder is frozen during finetune.freeze_updates, bad
/// transcripts stop the run before training with the file and line.
final class FinetuneTrainingTests: XCTestCase {
    static let repo = DistributedTrainingTests.repo
    static let exe = DistributedTrainingTests.exe
    static let common = [
        "--preset", "tiny", "--quiet", "--set", "compute.precision=fp32",
        "--set", "train.max_frames=1600", "--set", "train.max_samples=64000", "--set", "train.log_interval=1",
        "--set", "train.save_interval=1", "--set", "train.valid_interval=1000", "--set", "dist.timeout=60",
        "--set", "optimizer.schedule=tri_stage", "--set", "optimizer.lr=0.002",
    ]

    /// The first `rows` training utterances of the default corpus with their transcripts (after
    /// DistributedTrainingTests.slice has prepared the corpus when missing).
    func labelledSlice(rows: Int = 60, edit: (inout [String]) -> Void = { _ in }) throws -> String {
        _ = DistributedTrainingTests.slice
        let tsv = try String(contentsOfFile: Self.repo + "/data/fillets-cs/train.tsv", encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false)
        var wrd = try String(contentsOfFile: Self.repo + "/data/fillets-cs/train.wrd", encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).prefix(rows).map(String.init)
        edit(&wrd)
        let dir = NSTemporaryDirectory() + "w2v-ft-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try (tsv.prefix(rows + 1).joined(separator: "\n") + "\n").write(
            toFile: dir + "/slice.tsv", atomically: true, encoding: .utf8)
        try (wrd.joined(separator: "\n") + "\n").write(toFile: dir + "/slice.wrd", atomically: true, encoding: .utf8)
        return dir
    }

    @discardableResult
    func finetune(
        ranks: Int, dir: String, run: String, steps: Int, extra: [String] = [], expect: Int32 = 0,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        var args =
            [
                Self.exe, "finetune", "--train", dir + "/slice.tsv", "--run-dir", dir + "/" + run, "--max-steps",
                "\(steps)",
            ] + Self.common + extra
        if ranks > 1 { args = ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"] + args }
        let r = try runCommand(
            args, environment: mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }, timeout: 300)
        XCTAssertFalse(r.timedOut, "timed out:\n\(r.output)", file: file, line: line)
        XCTAssertEqual(r.status, expect, r.output, file: file, line: line)
        return r.output
    }

    func checkpointFile(_ dir: String, _ run: String, step: Int, _ name: String) -> Data? {
        FileManager.default.contents(
            atPath: "\(dir)/\(run)/checkpoints/\(CheckpointManager.directoryName(step: step))/\(name)")
    }

    func tensors(_ dir: String, _ run: String, step: Int, _ name: String) throws -> [String: [Float]] {
        let f = try SafeTensors.open(
            path: "\(dir)/\(run)/checkpoints/\(CheckpointManager.directoryName(step: step))/\(name)")
        var out: [String: [Float]] = [:]
        for k in f.entries.keys { out[k] = try f.array(k) }
        return out
    }

    func assertSameCheckpoint(_ dir: String, _ a: String, _ b: String, step: Int, line: UInt = #line) {
        for f in ["model.safetensors", "optimizer.safetensors"] {
            let x = checkpointFile(dir, a, step: step, f), y = checkpointFile(dir, b, step: step, f)
            XCTAssertNotNil(x, "\(a) step \(step) \(f)", line: line)
            XCTAssertTrue(x == y, "\(a) and \(b) differ in \(f) at step \(step)", line: line)
        }
    }

    func testTwoRanksEqualOneRankWithUpdateFreqTwo() throws {
        let dir = try labelledSlice()
        let two = try finetune(ranks: 2, dir: dir, run: "two", steps: 3)
        try finetune(ranks: 1, dir: dir, run: "one", steps: 3, extra: ["--set", "train.update_freq=2"])
        assertSameCheckpoint(dir, "two", "one", step: 3)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/two/dict.ltr.txt"), two)
    }

    func testExactResume() throws {
        let dir = try labelledSlice()
        try finetune(ranks: 2, dir: dir, run: "whole", steps: 4)
        try finetune(ranks: 2, dir: dir, run: "parts", steps: 4, extra: ["--test-stop-after-step", "2"], expect: 75)
        XCTAssertNil(checkpointFile(dir, "parts", step: 3, "model.safetensors"))
        try finetune(ranks: 2, dir: dir, run: "parts", steps: 4)
        assertSameCheckpoint(dir, "whole", "parts", step: 4)
    }

    func testEncoderFrozenDuringFreezeUpdatesAndFrontEndAlways() throws {
        let dir = try labelledSlice()
        try finetune(ranks: 1, dir: dir, run: "frozen", steps: 3, extra: ["--set", "finetune.freeze_updates=2"])
        let p1 = try tensors(dir, "frozen", step: 1, "model.safetensors")
        let p2 = try tensors(dir, "frozen", step: 2, "model.safetensors")
        let p3 = try tensors(dir, "frozen", step: 3, "model.safetensors")
        let o2 = try tensors(dir, "frozen", step: 2, "optimizer.safetensors")
        let o3 = try tensors(dir, "frozen", step: 3, "optimizer.safetensors")
        let head = p1.keys.filter { $0.hasPrefix("ctc_head.") }
        let frontend = p1.keys.filter { $0.hasPrefix("feature_encoder.") }
        let encoder = p1.keys.filter { !$0.hasPrefix("ctc_head.") && !$0.hasPrefix("feature_encoder.") }
        XCTAssertEqual(head.count, 2)
        XCTAssertFalse(frontend.isEmpty)
        XCTAssertFalse(encoder.isEmpty)
        for k in head { XCTAssertTrue(p1[k] != p2[k], "the head trains during the freeze: \(k)") }
        for k in encoder {
            XCTAssertTrue(p1[k] == p2[k], "encoder tensor \(k) moved during the freeze")
            XCTAssertTrue(o2["exp_avg." + k]!.allSatisfy { $0 == 0 }, "moment of \(k) during the freeze")
            XCTAssertTrue(o2["exp_avg_sq." + k]!.allSatisfy { $0 == 0 }, "moment of \(k) during the freeze")
        }
        XCTAssertTrue(encoder.contains { p2[$0] != p3[$0] }, "the encoder trains after the freeze")
        for k in frontend {
            XCTAssertTrue(p1[k] == p3[k], "front end tensor \(k) moved")
            XCTAssertNil(o3["exp_avg." + k], "front end tensor \(k) has optimizer state")
        }
    }

    func testBadTranscriptsStopBeforeTrainingWithFileAndLine() throws {
        let short = try labelledSlice { $0.removeLast() }
        let a = try finetune(ranks: 1, dir: short, run: "r", steps: 1, expect: 1)
        XCTAssertTrue(a.contains(short + "/slice.wrd: has 59 lines, but the manifest " + short + "/slice.tsv"), a)
        let long = try labelledSlice { $0[7] = String(repeating: "ab", count: 400) }
        let b = try finetune(ranks: 2, dir: long, run: "r", steps: 1, expect: 1)
        XCTAssertTrue(b.contains(long + "/slice.wrd:8: the transcript needs at least 800 frames"), b)
        let odd = try labelledSlice()
        try "| 1\na 1\n".write(toFile: odd + "/dict.txt", atomically: true, encoding: .utf8)
        let c = try finetune(ranks: 1, dir: odd, run: "r", steps: 1, extra: ["--dict", odd + "/dict.txt"], expect: 1)
        XCTAssertTrue(c.contains(odd + "/slice.wrd:1: character"), c)
        XCTAssertFalse(FileManager.default.fileExists(atPath: odd + "/r/checkpoints"), c)
    }

    /// --init-from a pre-training run: the encoder starts as the source (and stays so while frozen), the
    /// pre-training heads are skipped, the CTC head starts fresh; another architecture is refused naming the tensor.
    func testInitFromPretrainingRun() throws {
        let dir = try labelledSlice()
        let pre = dir + "/pre"
        let r = try runCommand(
            [Self.exe, "train", "--train", dir + "/slice.tsv", "--run-dir", pre, "--max-steps", "1"] + Self.common,
            environment: mpirunEnvironment, timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        try finetune(
            ranks: 1, dir: dir, run: "ft", steps: 1,
            extra: ["--init-from", pre, "--set", "finetune.freeze_updates=1", "--no-resume"])
        let source = try tensors(dir, "pre", step: 1, "model.safetensors")
        let tuned = try tensors(dir, "ft", step: 1, "model.safetensors")
        XCTAssertEqual(Set(tuned.keys.filter { !$0.hasPrefix("ctc_head.") }), Set(source.keys).intersection(tuned.keys))
        for (k, v) in tuned where !k.hasPrefix("ctc_head.") {
            XCTAssertTrue(source[k] == v, "\(k) is not the source's")
        }
        let bad = try finetune(
            ranks: 1, dir: dir, run: "ft-small", steps: 1, extra: ["--init-from", pre, "--set", "model.dim=128"],
            expect: 1)
        XCTAssertTrue(bad.contains("has shape"), bad)
    }
}
