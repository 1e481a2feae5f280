import XCTest
import Foundation
import Training
import W2VBert
import Tensor
import Audio
import TestSupport

/// Hyper-lora with adapter.speaker = table under real mpirun (helpers of DistributedTrainingTests,
/// checkHyperLoRAFrozenBase of LoRATrainingTests.swift).
extension DistributedTrainingTests {
    /// The test slice with the speaker column: the file name's CHAR field when it is m, v or x (the two fish
    /// and one more voice), every fifth row and every other voice unlabelled (unknown speaker); `newcomer`
    /// relabels the last row.
    func labelledSlice(newcomer: String? = nil) throws -> String {
        let lines = try String(contentsOfFile: Self.slice, encoding: .utf8).split(separator: "\n").map(String.init)
        var out = [lines[0]]
        for (i, l) in lines.dropFirst().enumerated() {
            let parts = ((l.split(separator: "\t")[0] as NSString).lastPathComponent).split(separator: "-")
            let known = parts.count >= 3 && ["m", "v", "x"].contains(parts[1])
            out.append(i % 5 == 4 || !known ? l : l + "\t" + parts[1])
        }
        if let newcomer {
            out[out.count - 1] =
                String(out[out.count - 1].split(separator: "\t")[0...1].joined(separator: "\t")) + "\t" + newcomer
        }
        let path = temp("spk") + ".tsv"
        try (out.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testHyperLoRATableEquivalenceResumeAndErrors() throws {
        let over = [
            "adapter.kind=hyper-lora", "adapter.speaker=table", "adapter.rank=2", "adapter.alpha=4",
            "adapter.speaker_dim=4",
            "adapter.layer_dim=2", "adapter.targets=attn.q,ffn.fc1,conv.pw2", "train.trainable=adapters",
            "optimizer.lr=0.01"
        ]
        let hl = over.flatMap { ["--set", $0] }
        let manifest = try labelledSlice()
        // speaker.table, the layer embedding and gen_a/gen_b of 4 sites: 2 ranks = update_freq 2, exact resume.
        let (a, p) = try checkHyperLoRAFrozenBase(over, adapters: 1 + 1 + 4 * 2, manifest: manifest)
        // The table: the sorted labels of the training manifest + the unknown row, in speakers.txt, config.yaml, trainer.json.
        XCTAssertEqual(try String(contentsOfFile: a + "/speakers.txt", encoding: .utf8), "m\nv\nx\n")
        XCTAssertEqual(p["speaker.table"]!.count, (3 + 1) * 4)
        XCTAssert(try String(contentsOfFile: a + "/config.yaml", encoding: .utf8).contains("  speakers: 3\n"))
        // The rows of m, v and unknown (every fifth utterance) trained: the speaker indices reached the model.
        var c = try Config.load(preset: "tiny", overrides: over)
        c.adapter.speakers = 3
        let l = ParameterLayout(config: c), init0 = FloatBuffer(count: l.count)
        l.initialize(init0.ptr, seed: c.train.seed)
        let t0 = Array(UnsafeBufferPointer(start: init0.ptr + l.entry("speaker.table").offset, count: 16))
        XCTAssertEqual(Array(t0[12..<16]), [0, 0, 0, 0], "the unknown row starts at zero")
        for row in [0, 1, 3] {
            XCTAssertNotEqual(
                Array(p["speaker.table"]![(row * 4)..<(row * 4 + 4)]), Array(t0[(row * 4)..<(row * 4 + 4)]),
                "row \(row)")
        }
        let ckpt = a + "/checkpoints/" + CheckpointManager.directoryName(step: 5)
        XCTAssertEqual(try TrainerState.read(path: ckpt + "/trainer.json").speakers, ["m", "v", "x"])

        // Resume with a manifest that gained a speaker: refused naming the manifest and speakers.txt, status 1.
        let gained = try labelledSlice(newcomer: "newcomer")
        var out = try train(ranks: 1, runDir: a, steps: 6, extra: hl, expect: 1, manifest: gained)
        XCTAssert(
            out.contains("\(gained): 1 speaker label(s) not in this run's table \(a)/speakers.txt (e.g. 'newcomer')"),
            out)
        // speakers.txt lost while the run has checkpoints: refused (not a silent fresh table).
        let labels = try String(contentsOfFile: a + "/speakers.txt", encoding: .utf8)
        try FileManager.default.removeItem(atPath: a + "/speakers.txt")
        out = try train(ranks: 1, runDir: a, steps: 6, extra: hl, expect: 1, manifest: manifest)
        XCTAssert(out.contains("\(a)/speakers.txt: missing"), out)
        try labels.write(toFile: a + "/speakers.txt", atomically: true, encoding: .utf8)
        // A training manifest without the column: refused naming it, status 1.
        out = try train(ranks: 1, runDir: temp("hlnocol"), steps: 1, extra: hl, expect: 1)
        XCTAssert(out.contains("\(Self.slice): adapter.speaker = table needs a speaker label per row"), out)

        // embed --speaker: per file (a label the table lacks takes the unknown row); --layer speaker gives the rows.
        let lines = try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n")
        let files = lines[1...3].map { String(lines[0]) + "/" + String($0.split(separator: "\t")[0]) }
        let npy = a + "/spk.npy"
        var rc = try runCommand(
            [
                Self.exe, "embed", "--checkpoint", ckpt, "--out", npy, "--layer", "speaker",
                "--speaker", "v", "--speaker", "nobody", "--speaker", "m"
            ] + files, timeout: 120)
        XCTAssertEqual(rc.status, 0, rc.output)
        XCTAssert(
            rc.output.contains("speaker 'nobody' is not in the table (3 labels): the unknown-speaker row"), rc.output)
        let s = try Npy.read(path: npy), table = p["speaker.table"]!
        XCTAssertEqual(s.shape, [3, 4])
        XCTAssertEqual(Array(s.data[0..<4]), Array(table[4..<8]))  // v: row 1
        XCTAssertEqual(Array(s.data[4..<8]), Array(table[12..<16]))  // unknown: row 3
        XCTAssertEqual(Array(s.data[8..<12]), Array(table[0..<4]))  // m: row 0
        // Hidden states: the speaker changes them; no --speaker = the unknown row = an unknown label.
        func states(_ speaker: [String]) throws -> [Float] {
            let r = try runCommand(
                [Self.exe, "embed", "--checkpoint", ckpt, "--out", npy, files[0]] + speaker, timeout: 120)
            XCTAssertEqual(r.status, 0, r.output)
            return try Npy.read(path: npy).data
        }
        let unknown = try states([]), m = try states(["--speaker", "m"])
        XCTAssertNotEqual(unknown, m)
        XCTAssertEqual(unknown, try states(["--speaker", "-"]))
        // --speaker given neither once nor once per file: a bad command line (2).
        rc = try runCommand(
            [Self.exe, "embed", "--checkpoint", ckpt, "--out", npy, "--speaker", "m", "--speaker", "v"] + files,
            timeout: 60)
        XCTAssertEqual(rc.status, 2, rc.output)
    }
}
