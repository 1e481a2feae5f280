import Audio
import Foundation
import TestSupport
import Training
import XCTest

/// The `series` and `tokens` kinds end to end with the built executable and real mpirun: `prepare --kind`,
/// 2 ranks stopped and resumed bit-identical to 1 rank × update_freq 2, `embed` of the run's kind with the
/// run's normalisation or vocabulary, a kind mismatch refused naming both, and bad files refused or skipped
/// with the file and line.
final class SequenceKindTests: XCTestCase {
    static let exe = w2vbertExecutable()
    let fm = FileManager.default

    func temp(_ tag: String) -> String { temporaryPath("w2v-seq", tag) }

    func run(_ args: [String], ranks: Int = 1, timeout: Double = 300) throws -> (status: Int32, output: String) {
        var full = [Self.exe] + args
        if ranks > 1 { full = ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"] + full }
        let r = try runCommand(
            full, environment: mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }, timeout: timeout)
        XCTAssertFalse(r.timedOut, "timed out: \(args)")
        return (r.status, r.output)
    }

    /// 40 series of 3 channels (sines at a per-file frequency plus noise), 60–150 steps, half .npy and half
    /// .csv (a few missing cells); the channels are on very different scales.
    func seriesCorpus(_ dir: String) throws {
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<40 {
            let t = 60 + (i * 37) % 91, f = 0.05 + 0.01 * Double(i % 7)
            var v = [Float]()
            for s in 0..<t {
                let x = Double(s)
                v += [
                    Float(sin(f * x)) + Float.random(in: -0.1...0.1, using: &rng),
                    Float(100 * cos(0.5 * f * x)), Float(0.01 * Double(i % 5) + 0.001 * x),
                ]
            }
            if i % 2 == 0 {
                try Npy.write(NpyArray(shape: [t, 3], data: v), to: "\(dir)/s\(i).npy")
            } else {
                var csv = "time,a,b,c\n"
                for s in 0..<t {
                    let a = s == 7 && i % 3 == 1 ? "" : "\(v[3 * s])"
                    csv += "\(s),\(a),\(v[3 * s + 1]),\(s == 9 ? "NaN" : "\(v[3 * s + 2])")\n"
                }
                try csv.write(toFile: "\(dir)/s\(i).csv", atomically: true, encoding: .utf8)
            }
        }
    }

    /// One FASTA file of 30 records (random bases with a repeated motif, 200–500 long) and 10 text files of
    /// "note" tokens.
    func tokensCorpus(_ dir: String) throws {
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var fasta = ""
        let bases = Array("ACGT")
        for i in 0..<30 {
            fasta += ">rec\(i) test record\n"
            var s = ""
            for j in 0..<(200 + (i * 53) % 301) { s.append(j % 12 < 6 ? bases[(i + j) % 4] : bases.randomElement()!) }
            stride(from: 0, to: s.count, by: 60).forEach { k in
                fasta += String(Array(s)[k..<min(k + 60, s.count)]) + "\n"
            }
        }
        try fasta.write(toFile: "\(dir)/loci.fa", atomically: true, encoding: .utf8)
        for i in 0..<10 {
            let notes = (0..<(150 + 20 * i)).map { ["C4", "E4", "G4", "C5", "A"][($0 * (i + 1)) % 5] }
            try (notes.joined(separator: " ") + "\n").write(
                toFile: "\(dir)/tune\(i).txt", atomically: true, encoding: .utf8)
        }
    }

    func parameters(_ runDir: String, step: Int) throws -> [String: [Float]] {
        try checkpointParameters(runDir, step: step)
    }

    /// 2 ranks for 4 steps, then resumed to 8, against 1 rank × update_freq 2 for 8 straight: bit-identical.
    func checkDataParallelAndResume(preset: String, manifest: String, extra: [String]) throws {
        let a = temp("two"), b = temp("one")
        let common =
            [
                "train", "--preset", preset, "--train", manifest, "--quiet", "--set", "compute.precision=fp32",
                "--set", "train.save_interval=4", "--set", "optimizer.warmup=4",
            ] + extra
        for (dir, steps, ranks, more) in [
            (a, 4, 2, [String]()), (a, 8, 2, []), (b, 8, 1, ["--set", "train.update_freq=2"]),
        ] {
            let r = try run(common + ["--run-dir", dir, "--max-steps", "\(steps)"] + more, ranks: ranks)
            XCTAssertEqual(r.status, 0, r.output)
        }
        let pa = try parameters(a, step: 8), pb = try parameters(b, step: 8)
        XCTAssertEqual(pa.keys.sorted(), pb.keys.sorted())
        for (k, v) in pb { XCTAssert(v == pa[k]!, "tensor \(k) is not bit-identical") }
    }

    func testSeriesPrepareTrainTwoRanksResumeAndEmbed() throws {
        let data = temp("series"), m = temp("series-m")
        try seriesCorpus(data)
        let p = try run(
            ["prepare", data, "--kind", "series", "--columns", "a,b,c", "--out", m, "--valid-percent", "0", "--rate", "100"])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssert(p.output.contains("usable: 40 sequences"), p.output)
        let manifest = try Manifest.read(path: m + "/train.tsv")
        XCTAssertEqual(manifest.kind, .series)
        XCTAssertEqual(manifest.attributes["channels"], "3")
        XCTAssertEqual(manifest.attributes["columns"], "a,b,c")
        XCTAssertEqual(manifest.attributes["rate"], "100.0")
        let extra = ["--set", "train.max_frames=600", "--set", "train.max_samples=150"]
        try checkDataParallelAndResume(preset: "series-tiny", manifest: m + "/train.tsv", extra: extra)

        // The run's statistics normalise embed's input: channel b (scale 100) has mean ≈ 0 and std ≈ 70.
        let runDir = temp("series-run")
        let r = try run(
            [
                "train", "--preset", "series-tiny", "--train", m + "/train.tsv", "--run-dir", runDir, "--max-steps",
                "1",
                "--quiet",
            ] + extra)
        XCTAssertEqual(r.status, 0, r.output)
        let yaml = try String(contentsOfFile: runDir + "/config.yaml", encoding: .utf8)
        XCTAssert(yaml.contains("kind: series") && yaml.contains("channels: 3") && yaml.contains("rate: 100.0"), yaml)
        let feats = temp("feats.npy"), out = temp("emb.npy")
        let e = try run(["embed", "--checkpoint", runDir, data + "/s1.csv", "--out", out, "--save-features", feats])
        XCTAssertEqual(e.status, 0, e.output)
        let f = try Npy.read(path: feats), h = try Npy.read(path: out)
        XCTAssertEqual(f.shape, [1, 60 + 37, 3])
        XCTAssertEqual(h.shape, [(60 + 37) / 2, 144])
        XCTAssert(f.data[9 * 3 + 2].isNaN, "a missing value stays missing in the input")
        let b = stride(from: 1, to: f.data.count, by: 3).map { Double(f.data[$0]) }
        XCTAssertLessThan(b.map(abs).max()!, 3, "channel b normalised by the corpus statistics")
        XCTAssert(h.data.allSatisfy(\.isFinite))

        // A checkpoint of another kind or width is refused, naming both.
        let audio = try run(
            ["train", "--preset", "tiny", "--train", m + "/train.tsv", "--run-dir", temp("wrong"), "--max-steps", "1"])
        XCTAssertNotEqual(audio.status, 0)
        XCTAssert(audio.output.contains("a manifest of kind series, the run has data.kind = audio"), audio.output)
        let two = try run(
            [
                "train", "--preset", "series-tiny", "--train", m + "/train.tsv", "--run-dir", runDir, "--max-steps",
                "2",
                "--set", "data.channels=2",
            ] + extra)
        XCTAssertNotEqual(two.status, 0)
        XCTAssert(two.output.contains("3 channels, the run has data.channels = 2"), two.output)
    }

    func testTokensPrepareTrainTwoRanksResumeAndEmbed() throws {
        let data = temp("tokens"), m = temp("tokens-m")
        try tokensCorpus(data)
        let p = try run(["prepare", data, "--kind", "tokens", "--out", m, "--valid-percent", "0"])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssert(p.output.contains("usable: 40 sequences"), p.output)
        let manifest = try Manifest.read(path: m + "/train.tsv")
        XCTAssertEqual(manifest.kind, .tokens)
        XCTAssert(manifest.entries.contains { $0.path == "loci.fa#29" }, "one entry per FASTA record")
        XCTAssertEqual(try TokenVocabulary.read(path: m + "/vocab.txt").count, 8)  // A C G T C4 E4 G4 C5 (A in both)
        let extra = ["--set", "train.max_frames=1200", "--set", "train.max_samples=300"]
        try checkDataParallelAndResume(preset: "tokens-tiny", manifest: m + "/train.tsv", extra: extra)

        let runDir = temp("tokens-run")
        let r = try run(
            [
                "train", "--preset", "tokens-tiny", "--train", m + "/train.tsv", "--run-dir", runDir, "--max-steps",
                "1",
                "--quiet",
            ] + extra)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(fm.fileExists(atPath: runDir + "/vocab.txt"))
        // A FASTA file without #i: all its records, in order.
        let dir = temp("embed")
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let e = try run(
            [
                "embed", "--checkpoint", runDir, data + "/loci.fa", "--out", dir + "/h.npy", "--save-features",
                dir + "/ids.npy",
            ])
        XCTAssertEqual(e.status, 0, e.output)
        XCTAssertEqual(try Npy.read(path: dir + "/h.npy").shape, [30, 499 / 4, 144])
        XCTAssertEqual(try Npy.read(path: dir + "/ids.lengths.npy").data.prefix(2), [200, 253])
        XCTAssertEqual(try Npy.read(path: dir + "/h.lengths.npy").data.prefix(2), [50, 63])
        // `features` writes the same ids for one record.
        let f = try run(["features", "--checkpoint", runDir, data + "/loci.fa#1", "--out", dir + "/one.npy"])
        XCTAssertEqual(f.status, 0, f.output)
        let all = try Npy.read(path: dir + "/ids.npy"), one = try Npy.read(path: dir + "/one.npy")
        XCTAssertEqual(one.shape, [253, 1])
        XCTAssertEqual(one.data, Array(all.data[(all.shape[1])..<(all.shape[1] + 253)]))
        // A token outside the run's vocabulary: refused by embed, naming the file and line.
        try "C4 E4\nG4 Q9 C5\n".write(toFile: data + "/odd.txt", atomically: true, encoding: .utf8)
        let bad = try run(["embed", "--checkpoint", runDir, data + "/odd.txt", "--out", temp("bad.npy")])
        XCTAssertEqual(bad.status, 1, bad.output)
        XCTAssert(bad.output.contains("odd.txt: format: line 2: token 'Q9' is not in the vocabulary"), bad.output)
    }

    /// `prepare --window`: every record (and text file) cut into windows, one row each, which the loader and
    /// `features` read as the same tokens.
    func testTokenWindows() throws {
        let data = temp("win"), m = temp("win-m")
        try tokensCorpus(data)
        let p = try run(["prepare", data, "--kind", "tokens", "--out", m, "--window", "100", "--min-length", "50"])
        XCTAssertEqual(p.status, 0, p.output)
        let rows = try Manifest.read(path: m + "/train.tsv").entries + Manifest.read(path: m + "/valid.tsv").entries
        let paths = Set(rows.map(\.path))
        // Record 1 has 253 tokens: 0..<100, 100..<200, 200..<253; record 0 (200 tokens): two windows.
        for w in ["loci.fa#1@0+100", "loci.fa#1@100+100", "loci.fa#1@200+53", "loci.fa#0@100+100", "tune0.txt@100+50"] {
            XCTAssert(paths.contains(w), "\(w) in \(paths.sorted().prefix(8))")
        }
        XCTAssertFalse(paths.contains("loci.fa#0@200+0"))
        XCTAssert(rows.allSatisfy { $0.samples >= 50 && $0.samples <= 100 })
        let runDir = temp("win-run")
        let r = try run(
            ["train", "--preset", "tokens-tiny", "--train", m + "/train.tsv", "--run-dir", runDir, "--max-steps", "2",
             "--quiet", "--set", "train.max_frames=1200", "--set", "train.max_samples=100"])
        XCTAssertEqual(r.status, 0, r.output)
        let dir = temp("win-f")
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (path, out) in [("loci.fa#1", "all.npy"), ("loci.fa#1@200+53", "tail.npy")] {
            let f = try run(["features", "--checkpoint", runDir, data + "/" + path, "--out", dir + "/" + out])
            XCTAssertEqual(f.status, 0, f.output)
        }
        let all = try Npy.read(path: dir + "/all.npy"), tail = try Npy.read(path: dir + "/tail.npy")
        XCTAssertEqual(tail.data, Array(all.data[200..<253]))
    }

    /// LoRA with a frozen base and activation checkpointing on both kinds: the adapters train, the base (the
    /// front end included) keeps its initial bits.
    func testAdaptersAndActivationCheckpointingOnBothKinds() throws {
        let series = temp("lora-series"), tokens = temp("lora-tokens")
        try seriesCorpus(series)
        try tokensCorpus(tokens)
        for (data, kind, extra) in [
            (series, "series", ["--set", "train.max_frames=600", "--set", "train.max_samples=150"]),
            (tokens, "tokens", ["--set", "train.max_frames=1200", "--set", "train.max_samples=300"]),
        ] {
            let m = temp("lora-\(kind)-m"), runDir = temp("lora-\(kind)-run")
            XCTAssertEqual(
                try run(
                    ["prepare", data, "--kind", kind, "--out", m, "--columns", "a,b,c"].filter {
                        kind == "series" || ($0 != "--columns" && $0 != "a,b,c")
                    }
                ).status, 0)
            let args =
                [
                    "train", "--preset", "\(kind)-tiny", "--train", m + "/train.tsv", "--run-dir", runDir, "--quiet",
                    "--set", "adapter.kind=lora", "--set", "train.trainable=adapters",
                    "--set", "train.checkpoint_activations=blocks", "--set", "optimizer.warmup=1",
                ] + extra
            for steps in [0, 3] {
                let r = try run(args + ["--max-steps", "\(steps)"])
                XCTAssertEqual(r.status, 0, r.output)
            }
            let p0 = try parameters(runDir, step: 0), p3 = try parameters(runDir, step: 3)
            for (name, v) in p0 {
                let adapter = name.contains(".lora_")
                XCTAssertEqual(v == p3[name]!, !adapter, "\(kind): \(name) \(adapter ? "did not train" : "changed")")
            }
            XCTAssert(p0.keys.contains { $0.contains(".lora_") }, "\(kind): adapters in the checkpoint")
        }
    }

    /// Bad files: skipped and listed by prepare with the file and line (ragged CSV row, a non-numeric cell, a
    /// file with other channels, a FASTA record without sequence, a token outside --vocab).
    func testBadSequenceFilesAreSkippedWithFileAndLine() throws {
        let data = temp("bad-series"), m = temp("bad-series-m")
        try seriesCorpus(data)
        try "a,b,c\n1,2,3\n4,5\n".write(toFile: data + "/ragged.csv", atomically: true, encoding: .utf8)
        try "a,b,c\n1,2,3\n4,x5,6\n".write(toFile: data + "/word.csv", atomically: true, encoding: .utf8)
        try Npy.write(NpyArray(shape: [80, 2], data: [Float](repeating: 1, count: 160)), to: data + "/two.npy")
        let p = try run(["prepare", data, "--kind", "series", "--columns", "a,b,c", "--out", m, "--valid-percent", "0"])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssert(p.output.contains("skipped: 3"), p.output)
        XCTAssert(p.output.contains("ragged.csv: format: line 3: 2 fields, the header has 3"), p.output)
        XCTAssert(p.output.contains("word.csv: format: line 3, column 'b': 'x5' is not a finite number"), p.output)
        // The first file in sorted order (s0.npy, 3 channels) sets the corpus' channel count.
        XCTAssert(p.output.contains("two.npy: format: 2 channels, the corpus has 3"), p.output)

        // A file that changes after prepare is skipped and counted by the loader, naming the file and line.
        let good = temp("late-series"), gm = temp("late-series-m")
        try seriesCorpus(good)
        XCTAssertEqual(
            try run(["prepare", good, "--kind", "series", "--columns", "a,b,c", "--out", gm, "--valid-percent", "0"])
                .status, 0)
        try "time,a,b,c\n0,1,2,3\n1,4,five,6\n".write(toFile: good + "/s1.csv", atomically: true, encoding: .utf8)
        let t = try run(
            ["train", "--preset", "series-tiny", "--train", gm + "/train.tsv", "--run-dir", temp("late-run"),
             "--max-steps", "12", "--quiet", "--set", "train.max_frames=600", "--set", "train.max_samples=150",
             "--set", "train.max_bad_fraction=0.1"])
        XCTAssertEqual(t.status, 0, t.output)
        XCTAssert(t.output.contains("s1.csv: format: line 3, column 'b': 'five' is not a finite number"), t.output)
        XCTAssert(t.output.contains("(1 bad files so far"), t.output)

        let tok = temp("bad-tokens"), tm = temp("bad-tokens-m")
        try tokensCorpus(tok)
        try ">ok\nACGT\n>empty one\n>next\nACGA\n".write(toFile: tok + "/gap.fa", atomically: true, encoding: .utf8)
        let noVocab = try run(["prepare", tok, "--kind", "tokens", "--out", tm, "--min-length", "1"])
        XCTAssert(noVocab.output.contains("gap.fa: format: line 3: record 'empty one' has no sequence"), noVocab.output)
        try "A\nC\nG\nT\n".write(toFile: tok + "/dna.vocab", atomically: true, encoding: .utf8)
        let v = try run(["prepare", tok, "--kind", "tokens", "--out", tm, "--vocab", tok + "/dna.vocab"])
        XCTAssertEqual(v.status, 0, v.output)
        XCTAssert(v.output.contains("tune0.txt: format: line 1: token 'C4' is not in the vocabulary"), v.output)
        XCTAssert(v.output.contains("usable: 30 sequences"), v.output)
    }
}
