import XCTest
import Foundation
import Training
import Tensor
import TestSupport

/// Issue "Data-parallel pre-training over MPI": every acceptance check runs the real executable under
/// real mpirun (2 ranks on this machine), bounded by a timeout, on a small slice of the default corpus
/// (real Czech speech, prepared by launch/prepare-corpus.sh when missing).
final class DistributedTrainingTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let exe = w2vbertExecutable()
    /// Tiny preset, short crops and small micro-batches so a step takes well under a second.
    static let common = [
        "--preset", "tiny", "--quiet", "--set", "compute.precision=fp32",
        "--set", "train.max_frames=1200", "--set", "train.max_samples=48000", "--set", "train.log_interval=1",
        "--set", "train.save_interval=5", "--set", "train.valid_interval=1000", "--set", "dist.timeout=60",
        "--set", "optimizer.warmup=10"
    ]

    /// A manifest of the first 120 training utterances of the default corpus.
    static let slice: String = {
        let full = repo + "/data/fillets-cs/train.tsv"
        if !FileManager.default.fileExists(atPath: full) {
            let r = try! runCommand(
                ["bash", repo + "/launch/prepare-corpus.sh", repo + "/data/fillets-cs"],
                environment: ["W2VBERT_BIN": exe], timeout: 600)
            precondition(r.status == 0, "preparing the default corpus failed:\n\(r.output)")
        }
        let lines = try! String(contentsOfFile: full, encoding: .utf8).split(separator: "\n")
        let path = NSTemporaryDirectory() + "w2v-slice-\(getpid()).tsv"
        try! (lines.prefix(121).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    /// A fresh path under the temporary folder, removed (with its .log/.tsv siblings) after the test.
    func temp(_ tag: String) -> String {
        let path = NSTemporaryDirectory() + "w2v-\(tag)-\(UUID().uuidString.prefix(8))"
        addTeardownBlock {
            for p in [path, path + ".log", path + ".tsv"] { try? FileManager.default.removeItem(atPath: p) }
        }
        return path
    }

    @discardableResult
    func train(
        ranks: Int, runDir: String, steps: Int, extra: [String] = [], expect: Int32 = 0, timeout: Double = 300,
        manifest: String? = nil, file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        var args =
            [Self.exe, "train", "--train", manifest ?? Self.slice, "--run-dir", runDir, "--max-steps", "\(steps)"]
            + Self.common + extra
        if ranks > 1 { args = ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"] + args }
        let r = try runCommand(
            args, environment: mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }, timeout: timeout)
        XCTAssertFalse(r.timedOut, "timed out:\n\(r.output)", file: file, line: line)
        XCTAssertEqual(r.status, expect, r.output, file: file, line: line)
        return r.output
    }

    func parameters(_ runDir: String, step: Int) throws -> [String: [Float]] {
        try checkpointParameters(runDir, step: step)
    }

    /// max over tensors of max|a − b| / max(max|b|, 1e-3)  (relative to each tensor's scale).
    func maxRelativeDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> (Double, String) {
        var worst = 0.0, name = ""
        for (k, x) in b {
            guard let y = a[k], y.count == x.count else { return (.infinity, k) }
            let scale = max(Double(x.map { abs($0) }.max() ?? 0), 1e-3)
            let d = zip(x, y).map { Double(abs($0 - $1)) }.max() ?? 0
            if d / scale > worst {
                worst = d / scale
                name = k
            }
        }
        return (worst, name)
    }

    func testTwoRanksEqualOneRankWithAccumulation() throws {
        let a = temp("eq2"), b = temp("eq1")
        try train(ranks: 2, runDir: a, steps: 5)
        try train(ranks: 1, runDir: b, steps: 5, extra: ["--set", "train.update_freq=2"])
        let (d, name) = maxRelativeDifference(try parameters(a, step: 5), try parameters(b, step: 5))
        print("equivalence: 2 ranks vs 1 rank × update_freq 2 after 5 steps: max relative difference \(d) (\(name))")
        XCTAssertLessThan(d, 1e-5, "worst tensor \(name)")
        XCTAssertEqual(d, 0, "the accumulation order makes 2 ranks and update_freq 2 bit-identical")
    }

    func testExactResumeSameAndDifferentWorldSize() throws {
        let straight = temp("straight"), resumed = temp("resumed"), other = temp("other")
        try train(ranks: 2, runDir: straight, steps: 20)
        try train(ranks: 2, runDir: resumed, steps: 10)
        let out = try train(ranks: 2, runDir: resumed, steps: 20, extra: ["--set", "train.log_interval=1"])
        _ = out
        let p20 = try parameters(straight, step: 20)
        let r20 = try parameters(resumed, step: 20)
        XCTAssertEqual(p20.keys.sorted(), r20.keys.sorted())
        for (k, v) in p20 { XCTAssert(v == r20[k]!, "resumed tensor \(k) is not bit-identical") }
        // Resume the 2-rank run on 1 rank: update_freq becomes 2 and the global batch stays the same.
        try train(ranks: 2, runDir: other, steps: 10)
        let o = try train(ranks: 1, runDir: other, steps: 20, extra: ["--set", "train.log_interval=1"])
        _ = o
        let (d, name) = maxRelativeDifference(try parameters(other, step: 20), p20)
        print("resume 2 → 1 rank: max relative difference \(d) (\(name)) after 20 steps")
        XCTAssertLessThan(d, 1e-5, "worst tensor \(name)")
        let events = try String(contentsOfFile: other + "/metrics.jsonl", encoding: .utf8)
        XCTAssert(events.contains("\"update_freq\":2"), "the resumed run should record update_freq 2")
    }

    /// Activation checkpointing changes no arithmetic: 2 ranks with it, stopped at step 5 and resumed, end
    /// bit-identical to 1 rank × update_freq 2 without it, with dropout and layer drop.
    func testActivationCheckpointingTwoRanksAndResume() throws {
        let drops = ["--set", "model.dropout=0.1", "--set", "model.layer_drop=0.2"]
        let on = drops + ["--set", "train.checkpoint_activations=blocks"]
        let a = temp("ckpt2"), b = temp("ckpt1")
        try train(ranks: 2, runDir: a, steps: 5, extra: on)
        try train(ranks: 2, runDir: a, steps: 10, extra: on)
        try train(ranks: 1, runDir: b, steps: 10, extra: drops + ["--set", "train.update_freq=2"])
        let pa = try parameters(a, step: 10), pb = try parameters(b, step: 10)
        XCTAssertEqual(pa.keys.sorted(), pb.keys.sorted())
        for (k, v) in pb { XCTAssert(v == pa[k]!, "tensor \(k) is not bit-identical") }
    }

    /// compute.precision = auto is announced and the checkpoint records the precision it resolved to.
    func testAutoPrecisionIsAnnouncedAndRecordedResolved() throws {
        let run = temp("auto")
        let out = try train(ranks: 1, runDir: run, steps: 5, extra: ["--set", "compute.precision=auto"])
        let resolved = Compute.hasNativeBF16 ? "bf16" : "fp32"
        XCTAssert(out.contains("w2vbert: compute: \(resolved) (auto: the CPU has"), out)
        let state = try String(
            contentsOfFile: run + "/checkpoints/" + CheckpointManager.directoryName(step: 5) + "/trainer.json",
            encoding: .utf8)
        XCTAssert(state.contains("compute:\\n  precision: \(resolved)\\n"), "trainer.json records \(resolved)")
    }

    func testSIGTERMToOneRankCheckpointsAndExits75() throws {
        let run = temp("sigterm")
        let args =
            [
                "mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", Self.exe, "train", "--train", Self.slice,
                "--run-dir", run, "--max-steps", "100000"
            ] + Self.common
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(mpirunEnvironment) { $1 }.merging([
            "OPENBLAS_NUM_THREADS": "1"
        ]) { $1 }
        let log = run + ".log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = h
        p.standardError = h
        try p.run()
        // Wait for a few logged steps, then SIGTERM the rank-1 process only.
        let deadline = Date().addingTimeInterval(120)
        var steps = 0
        while Date() < deadline {
            steps =
                ((try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)) ?? "").components(
                    separatedBy: "\"kind\":\"train\""
                ).count - 1
            if steps >= 3 { break }
            usleep(200_000)
        }
        XCTAssertGreaterThanOrEqual(steps, 3)
        let pids = try runCommand(["pgrep", "-f", "--", "--run-dir \(run)"], timeout: 10).output
            .split(separator: "\n").compactMap { Int32($0) }.filter { $0 != p.processIdentifier }
        // The rank processes are the children of mpirun; signal the one with the highest pid (rank 1 starts second).
        let ranks = pids.filter { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").hasPrefix(Self.exe)
        }.sorted()
        XCTAssertEqual(ranks.count, 2, "rank pids \(pids)")
        kill(ranks.last!, SIGTERM)
        let t0 = Date()
        while p.isRunning && Date().timeIntervalSince(t0) < 60 { usleep(100_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertEqual(p.terminationStatus, 75, out)
        let events = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        XCTAssert(events.contains("\"event\":\"stop\"") && events.contains("\"signal\":15"), out + events)
        let m = CheckpointManager(runDirectory: run, keepLast: 5)
        let newest = try XCTUnwrap(m.list().first)
        XCTAssertGreaterThan(newest.step, steps - 1)
        // The run resumes from it.
        let again = try train(ranks: 2, runDir: run, steps: newest.step + 2, extra: ["--set", "train.log_interval=1"])
        _ = again
        XCTAssertEqual(m.list().first?.step, newest.step + 2)
    }

    func testTruncatedNewestCheckpointFallsBack() throws {
        let run = temp("trunc")
        try train(ranks: 2, runDir: run, steps: 10)
        let victim = run + "/checkpoints/step-00000010/optimizer.safetensors"
        let d = try Data(contentsOf: URL(fileURLWithPath: victim))
        try d.prefix(d.count - 100).write(to: URL(fileURLWithPath: victim))
        let out = try train(ranks: 2, runDir: run, steps: 12, extra: ["--set", "train.log_interval=1"])
        XCTAssert(out.contains("step-00000010 is unusable") && out.contains("falling back"), out)
        let events = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        XCTAssert(events.contains("\"event\":\"resume\""), events)
        // It went on from step 5, the previous checkpoint.
        let resumeLine = events.split(separator: "\n").first { $0.contains("\"event\":\"resume\"") }!
        XCTAssert(resumeLine.contains("\"step\":5"), String(resumeLine))
    }

    func testForcedDivergenceIsDetectedAndNamed() throws {
        let out = try train(
            ranks: 2, runDir: temp("diverge"), steps: 10,
            extra: ["--set", "dist.fingerprint_interval=1", "--test-diverge-rank", "1", "--test-diverge-step", "3"],
            expect: 77)
        XCTAssert(
            out.contains(
                "replica divergence at step 4: rank 1 differs from rank 0, first in tensor 'feature_encoder.conv1.weight'"
            ), out)
    }

    func testDivergenceResyncContinues() throws {
        let out = try train(
            ranks: 2, runDir: temp("resync"), steps: 6,
            extra: [
                "--set", "dist.fingerprint_interval=1", "--set", "dist.on_divergence=resync",
                "--test-diverge-rank", "1", "--test-diverge-step", "3"
            ])
        XCTAssert(out.contains("re-broadcasting rank 0's parameters"), out)
    }

    /// The other commands on a real run: validate, embed, inspect, compare; bad config and bad data.
    func testCommandsAndBadInput() throws {
        let run = temp("cli")
        try train(ranks: 1, runDir: run, steps: 2)
        var r = try runCommand(
            [Self.exe, "validate", "--run-dir", run, "--valid", Self.slice, "--set", "train.valid_batches=2"],
            timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("valid step 2 | loss"), r.output)
        let audio = try String(contentsOfFile: Self.slice, encoding: .utf8).split(separator: "\n")
        let root = String(audio[0]), first = root + "/" + String(audio[1].split(separator: "\t")[0])
        let out = run + "/states.npy"
        r = try runCommand(
            [Self.exe, "embed", "--checkpoint", run, first, "--out", out, "--layer", "contrastive"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        let npy = try Data(contentsOf: URL(fileURLWithPath: out))
        let header = String(decoding: npy.prefix(128), as: UTF8.self)
        XCTAssert(header.contains("'shape': (") && header.contains(", 144)"), header)
        r = try runCommand([Self.exe, "inspect", run], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("step-00000002  ok") && r.output.contains("2286832 parameters"), r.output)
        r = try runCommand([Self.exe, "config", "--preset", "base", "--set", "train.update_freq=4"], timeout: 60)
        XCTAssert(
            r.status == 0 && r.output.contains("update_freq: 4") && r.output.contains("# 104218368 parameters"),
            r.output)
        r = try runCommand([Self.exe, "compare", run, run], timeout: 60)
        XCTAssert(r.status == 0 && r.output.contains("bit-identical"), r.output)
        // A bad config is rejected before any work, naming the key.
        r = try runCommand(
            [
                Self.exe, "train", "--train", Self.slice, "--run-dir", temp("bad"), "--preset", "tiny", "--set",
                "model.heads=5"
            ], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)  // a bad configuration (README "Exit statuses")
        XCTAssert(r.output.contains("model.heads"), r.output)
        // A manifest naming a vanished file: reported, counted, training goes on …
        let lines = try String(contentsOfFile: Self.slice, encoding: .utf8).split(separator: "\n").map(String.init)
        let broken = temp("vanished") + ".tsv"
        try ([lines[0], "no/such/file.ogg\t48000"] + lines[1...]).joined(separator: "\n").appending("\n")
            .write(toFile: broken, atomically: true, encoding: .utf8)
        var args = [Self.exe, "train", "--train", broken, "--run-dir", temp("vanish")] + Self.common
        args += ["--set", "train.max_bad_fraction=0.5", "--max-steps", "40"]
        r = try runCommand(args, timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("no/such/file.ogg"), r.output)
        // … and past the allowed fraction the run stops with a message naming it.
        args =
            [Self.exe, "train", "--train", broken, "--run-dir", temp("vanish2")] + Self.common + [
                "--set", "train.max_bad_fraction=0", "--max-steps", "200"
            ]
        r = try runCommand(args, timeout: 120)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains("no/such/file.ogg"), r.output)
    }

    /// Codebook protocol: with a threshold that makes most codes "dead", rank 0 revives them every 2 steps,
    /// every rank applies the same plan, and the replica fingerprints (checked every step) stay equal.
    func testCodebookRevivalKeepsReplicasIdentical() throws {
        let run = temp("revive")
        try train(
            ranks: 2, runDir: run, steps: 6,
            extra: [
                "--set", "codebook.sync_interval=2", "--set", "codebook.dead_threshold=0.9", "--set",
                "dist.fingerprint_interval=1"
            ])
        let events = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        let revivals = events.split(separator: "\n").filter { $0.contains("\"event\":\"codebook_revival\"") }
        XCTAssertEqual(revivals.count, 3, events)
        XCTAssertFalse(events.contains("\"event\":\"divergence\""), events)
    }

    func testSkippedCollectiveTriggersWatchdog() throws {
        let t0 = Date()
        let out = try train(
            ranks: 2, runDir: temp("watchdog"), steps: 50,
            extra: ["--set", "dist.timeout=5", "--test-skip-collective", "20", "--test-skip-rank", "1"], expect: 78)
        XCTAssert(out.contains("collective #20") && out.contains("has not completed after"), out)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 120)
    }

    /// The main job in small: 2 ranks, tiny preset, the whole default corpus, 300 steps.
    func testTinyPresetOnDefaultCorpus300Steps() throws {
        _ = Self.slice  // makes sure the corpus is prepared
        let run = temp("main300")
        let args = [
            "mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", Self.exe, "train", "--preset", "tiny",
            "--train", Self.repo + "/data/fillets-cs/train.tsv", "--valid", Self.repo + "/data/fillets-cs/valid.tsv",
            "--run-dir", run, "--max-steps", "300", "--set", "train.max_frames=3000", "--set", "train.log_interval=10",
            "--set", "train.valid_interval=100", "--set", "train.save_interval=100"
        ]
        let t0 = Date()
        let r = try runCommand(
            args, environment: mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }, timeout: 900)
        XCTAssertEqual(r.status, 0, r.output)
        print("300 steps of tiny on 2 ranks: \(Int(Date().timeIntervalSince(t0))) s")
        let lines = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let recs = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let train = recs.filter { $0["kind"] as? String == "train" }
        let valid = recs.filter { $0["kind"] as? String == "valid" }
        XCTAssertEqual(train.count, 30)
        XCTAssertEqual(valid.count, 3)
        for k in [
            "step", "loss", "loss_contrastive", "loss_mlm", "loss_diversity", "accuracy_contrastive", "accuracy_mlm",
            "prob_perplexity", "code_perplexity", "temperature", "lr", "grad_norm", "audio_seconds_per_second"
        ] {
            XCTAssertNotNil(train.last?[k], "metrics.jsonl lacks \(k)")
        }
        func mean(_ rs: ArraySlice<[String: Any]>, _ k: String) -> Double {
            rs.map { $0[k] as! Double }.reduce(0, +) / Double(rs.count)
        }
        let first = mean(train.prefix(3), "loss"), last = mean(train.suffix(3), "loss")
        print(
            "loss \(first) → \(last); valid loss \(valid.map { $0["loss"] as! Double }); prob perplexity \(train.last!["prob_perplexity"]!)"
        )
        XCTAssertLessThan(last, first - 0.5, "training loss should fall")
        XCTAssertLessThan(
            valid.last!["loss"] as! Double, valid.first!["loss"] as! Double, "validation loss should fall")
        XCTAssertGreaterThan(train.map { $0["prob_perplexity"] as! Double }.min()!, 20, "codebook collapse")
        XCTAssertGreaterThan(valid.last!["code_perplexity"] as! Double, 5)
        XCTAssertEqual(CheckpointManager(runDirectory: run, keepLast: 5).list().map { $0.step }, [300, 200, 100])
        let tb = try FileManager.default.contentsOfDirectory(atPath: run + "/tensorboard").filter {
            $0.hasPrefix("events.out.tfevents.")
        }
        XCTAssertEqual(tb.count, 1)
        let scalars = try readTensorBoardScalars(path: run + "/tensorboard/" + tb[0])
        XCTAssertEqual(scalars.filter { $0.tag == "train/loss" }.count, 30)
        XCTAssertEqual(scalars.filter { $0.tag == "valid/loss" }.count, 3)
        let py = ProcessInfo.processInfo.environment["W2VBERT_TEST_PYTHON"] ?? ""  // a Python with these packages
        if FileManager.default.isExecutableFile(atPath: py) {
            let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
                "Fixtures"
            ).path
            let c = try runCommand(
                [py, fixtures + "/check_tensorboard.py", run + "/tensorboard", "train/loss", "valid/loss"], timeout: 120
            )
            XCTAssertEqual(c.status, 0, c.output)
        }
    }
}
