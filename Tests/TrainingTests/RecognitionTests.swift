import Audio
import Foundation
import Tensor
import TestSupport
import Training
import W2VBert
import XCTest

/// `transcribe` and `evaluate` on the built executable, against the library's decoding: a CTC model with random
/// weights (head scaled up so the best path holds letters) saved with the checkpoint writer, its dictionary
/// beside the checkpoints, three tones as audio.
final class RecognitionTests: XCTestCase {
    static let exe = w2vbertExecutable()
    let fm = FileManager.default
    let references = ["abc ab", "ba", "cab a"]

    func temp(_ tag: String) -> String { temporaryPath("w2v-recog", tag) }

    func run(_ args: [String], timeout: Double = 120) throws -> (status: Int32, output: String) {
        try runExecutable(Self.exe, args, timeout: timeout)
    }

    /// RUN/checkpoints/step-00000003 of a micro CTC model, RUN/dict.ltr.txt, audio/{0,1,2}.wav, test.tsv/.wrd.
    func makeRun(_ dir: String) throws -> (run: String, audio: [String], manifest: String) {
        let vocabulary = CTCVocabulary.build(from: references)
        let c = try Config.load(
            preset: "tiny",
            overrides: [
                "model.frontend_channels=4", "model.dim=32", "model.heads=4", "model.ffn_dim=64",
                "model.contrastive_blocks=1", "model.mlm_blocks=1", "model.pos_conv_kernel=6",
                "model.pos_conv_groups=4", "model.head=ctc", "model.vocab_size=\(vocabulary.size)",
            ])
        let model = CTCModel(config: c, compute: .fp32(), maxBatch: 1, maxFrames: 100)
        let head = model.layout.entry("ctc_head.weight")
        for i in 0..<head.count { model.params.ptr[head.offset + i] *= 200 }
        let run = dir + "/run"
        var state = TrainerState()
        state.config = c.yaml
        let zeros = FloatBuffer(count: model.layout.count)
        try CheckpointManager(runDirectory: run, keepLast: 2).save(
            step: 3, tensors: CheckpointTensors(layout: model.layout, config: c), parameters: model.params.ptr,
            adamM: zeros.ptr, adamV: zeros.ptr, state: state)
        try vocabulary.write(to: run + "/dict.ltr.txt")
        var audio: [String] = []
        var rows = "\(dir)/audio\n"
        for (i, seconds) in [0.9, 1.6, 0.5].enumerated() {
            let path = "\(dir)/audio/\(i).wav"
            try fm.createDirectory(atPath: dir + "/audio", withIntermediateDirectories: true)
            let n = Int(16000 * seconds)
            let x = (0..<n).map { j in Float(0.3 * sin(Double(j) * 0.05 * Double(i + 1)) * sin(Double(j) * 0.0007)) }
            try AudioWriter.write(path: path, samples: x, sampleRate: 16000, format: .wav16)
            audio.append(path)
            rows += "\(i).wav\t\(n)\n"
        }
        try rows.write(toFile: dir + "/test.tsv", atomically: true, encoding: .utf8)
        try (references.joined(separator: "\n") + "\n").write(
            toFile: dir + "/test.wrd", atomically: true, encoding: .utf8)
        return (run, audio, dir + "/test.tsv")
    }

    func testTranscribeAndEvaluateAgreeWithTheLibrary() throws {
        let dir = temp("ok")
        let (runDir, audio, manifest) = try makeRun(dir)
        let recognizer = try Recognizer(try CheckpointFolder(runDir), compute: .fp32())
        let texts = try audio.map { try recognizer.transcribe(path: $0) }
        XCTAssertTrue(texts.contains { !$0.isEmpty }, "the scaled head emits letters: \(texts)")
        let expected = zip(audio, texts).map { "\($0)\t\($1)" }
        var r = try run(["transcribe", "--checkpoint", runDir] + audio + ["--out", dir + "/out.tsv"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output.split(separator: "\n").map(String.init).filter { $0.contains("\t") }, expected)
        XCTAssertEqual(
            try String(contentsOfFile: dir + "/out.tsv", encoding: .utf8), expected.joined(separator: "\n") + "\n")
        // The step folder itself works as --checkpoint (the dictionary is found in its run folder).
        r = try run(["transcribe", "--checkpoint", runDir + "/checkpoints/step-00000003", audio[1]])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains(expected[1]), r.output)

        var chars = ErrorRate(), words = ErrorRate()
        for (ref, hyp) in zip(references, texts) {
            chars.add(.characters(reference: ref, hypothesis: hyp))
            words.add(.words(reference: ref, hypothesis: hyp))
        }
        r = try run(["evaluate", "--checkpoint", runDir, "--manifest", manifest, "--details"])
        XCTAssertEqual(r.status, 0, r.output)
        let lines = r.output.split(separator: "\n").map(String.init)
        let json = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as! [String: Any]
        XCTAssertEqual(json["files"] as? Int, 3)
        XCTAssertEqual(json["chars"] as? Int, chars.referenceLength)
        XCTAssertEqual(json["words"] as? Int, words.referenceLength)
        XCTAssertEqual(json["char_edits"] as? Int, chars.edits)
        XCTAssertEqual(json["word_edits"] as? Int, words.edits)
        XCTAssertEqual(json["cer"] as! Double, chars.rate!, accuracy: 1e-6)
        XCTAssertEqual(json["wer"] as! Double, words.rate!, accuracy: 1e-6)
        for (i, path) in audio.enumerated() {
            XCTAssertTrue(
                lines.contains { $0.hasPrefix(path + "\t") && $0.hasSuffix("\t\(references[i])\t\(texts[i])") },
                "details of \(path): \(r.output)")
        }
    }

    /// Bad input: status 1 naming the file (audio, .wrd, dictionary, a pre-training checkpoint); 2 for usage.
    func testBadInput() throws {
        let dir = temp("bad")
        let (runDir, audio, manifest) = try makeRun(dir)
        try "not audio".write(toFile: dir + "/junk.wav", atomically: true, encoding: .utf8)
        var r = try run(["transcribe", "--checkpoint", runDir, audio[0], dir + "/junk.wav"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("junk.wav"), r.output)
        r = try run(["transcribe", "--checkpoint", runDir])
        XCTAssertEqual(r.status, 2, r.output)
        r = try run(["evaluate", "--checkpoint", runDir])
        XCTAssertEqual(r.status, 2, r.output)
        // A .wrd with a line too few.
        try "abc ab\nba\n".write(toFile: dir + "/test.wrd", atomically: true, encoding: .utf8)
        r = try run(["evaluate", "--checkpoint", runDir, "--manifest", manifest])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("test.wrd") && r.output.contains("2 lines"), r.output)
        try fm.removeItem(atPath: dir + "/test.wrd")
        r = try run(["evaluate", "--checkpoint", runDir, "--manifest", manifest])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("test.wrd"), r.output)
        // A dictionary of another size than the head; then none.
        try "a 1\nb 1\n".write(toFile: runDir + "/dict.ltr.txt", atomically: true, encoding: .utf8)
        r = try run(["transcribe", "--checkpoint", runDir, audio[0]])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("dict.ltr.txt") && r.output.contains("model.vocab_size"), r.output)
        try fm.removeItem(atPath: runDir + "/dict.ltr.txt")
        r = try run(["transcribe", "--checkpoint", runDir, audio[0]])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("dict.ltr.txt"), r.output)
        // A pre-training checkpoint.
        let pre = try Config.load(preset: "tiny", overrides: ["model.dim=32", "model.heads=4", "model.ffn_dim=64"])
        let layout = ParameterLayout(config: pre)
        let params = FloatBuffer(count: layout.count)
        var state = TrainerState()
        state.config = pre.yaml
        try CheckpointManager(runDirectory: dir + "/pre", keepLast: 1).save(
            step: 1, tensors: CheckpointTensors(layout: layout, config: pre), parameters: params.ptr,
            adamM: params.ptr, adamV: params.ptr, state: state)
        r = try run(["transcribe", "--checkpoint", dir + "/pre", audio[0]])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("trainer.json") && r.output.contains("model.head"), r.output)
    }

    /// The pre-training commands refuse a CTC model: its checkpoint with status 1 naming trainer.json (embed,
    /// validate), a CTC config on the command line with status 2 (train, bench model, import-hf). export-hf
    /// converts CTC models of the Hugging Face family only: this one (conv2d front end) is refused with status 1
    /// naming model.frontend. `config --keys` lists the head keys.
    func testPretrainingCommandsRefuseACTCModel() throws {
        let dir = temp("pre")
        let (runDir, audio, manifest) = try makeRun(dir)
        for args in [
            ["embed", "--checkpoint", runDir, "--out", dir + "/e.npy", audio[0]],
            ["validate", "--run-dir", runDir, "--valid", manifest],
        ] {
            let r = try run(args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains("model.head"), "\(args): \(r.output)")
        }
        let export = try run(["export-hf", runDir, "--out", dir + "/hf"])
        XCTAssertEqual(export.status, 1, export.output)
        XCTAssertTrue(export.output.contains("config key 'model.frontend' is conv2d"), export.output)
        let keys = try run(["config", "--keys"])
        for k in ["model.head", "model.vocab_size", "model.final_dropout", "finetune.mask_channel_span"] {
            XCTAssertTrue(keys.output.split(separator: "\n").contains(Substring(k)), "config --keys lists \(k)")
        }
        let ctc = ["--set", "model.head=ctc", "--set", "model.vocab_size=5"]
        for args in [
            ["train", "--train", manifest, "--run-dir", dir + "/t"] + ctc,
            ["bench", "model", "--preset", "tiny"] + ctc,
            ["import-hf", dir, "--out", dir + "/imp"] + ctc,
        ] {
            let r = try run(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains("model.head is ctc"), "\(args): \(r.output)")
        }
    }

    /// `bench finetune` times CTC steps of a preset and writes the Wav2Vec2BertForCTC config of the same model.
    func testBenchFinetunePrintsARecordAndTheHFConfig() throws {
        let dir = temp("bench-ft")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try run([
            "bench", "finetune", "--preset", "tiny2", "--batch", "2", "--seconds", "2", "--steps", "1", "--vocab", "7",
            "--threads", "1", "--hf-config", dir + "/config.json",
        ])
        XCTAssertEqual(r.status, 0, r.output)
        let last = try XCTUnwrap(r.output.split(separator: "\n").last)
        let record = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        XCTAssertEqual(record["head"] as? String, "ctc")
        XCTAssertEqual(record["vocab_size"] as? Int, 7)
        XCTAssertEqual(record["letters_per_utterance"] as? Int, 28)
        let loss = try XCTUnwrap(record["last_loss"] as? Double)
        XCTAssert(loss.isFinite && loss > 0, "\(loss)")
        let config = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json")))
                as? [String: Any])
        XCTAssertEqual(config["architectures"] as? [String], ["Wav2Vec2BertForCTC"])
        XCTAssertEqual(config["vocab_size"] as? Int, 7)
        XCTAssertEqual(config["hidden_size"] as? Int, 144)
        let bad = try run(["bench", "finetune", "--preset", "tiny2", "--vocab", "1"])
        XCTAssertEqual(bad.status, 2, bad.output)
    }

    /// `finetune --init-from` a CTC model (a run, and its Hugging Face Wav2Vec2BertForCTC export): without --dict
    /// the run takes the source's dictionary and its head (fine-tuning continues); a --dict that differs from the
    /// source's (same size, another order) gets a fresh head.
    func testFinetuneFromACTCModelKeepsItsDictionaryAndHead() throws {
        let dir = temp("ft-from-ctc")
        let (_, _, manifest) = try makeRun(dir)
        let micro = [
            "model.dim=32", "model.heads=4", "model.ffn_dim=64", "model.contrastive_blocks=1", "model.mlm_blocks=1",
        ].flatMap { ["--set", $0] }
        let common = ["--preset", "tiny2", "--train", manifest, "--max-steps", "1", "--set", "optimizer.lr=1e-9"] + micro
        var r = try run(["finetune", "--run-dir", dir + "/a"] + common)
        XCTAssertEqual(r.status, 0, r.output)
        r = try run(["export-hf", dir + "/a", "--out", dir + "/hf"])
        XCTAssertEqual(r.status, 0, r.output)
        let source = try CTCVocabulary.read(path: dir + "/a/dict.ltr.txt")
        for from in [dir + "/a", dir + "/hf"] {
            let out = dir + "/from-" + (from as NSString).lastPathComponent
            r = try run(["finetune", "--run-dir", out, "--init-from", from] + common)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertFalse(r.output.contains("fresh"), r.output)
            XCTAssertEqual(try CTCVocabulary.read(path: out + "/dict.ltr.txt").symbols, source.symbols)
            r = try run(["compare", out, dir + "/a", "--rtol", "1e-4"])
            XCTAssertEqual(r.status, 0, "one step at lr 1e-9 from the source: \(r.output)")
        }
        let reordered = CTCVocabulary(symbols: source.symbols.reversed(), counts: source.counts)
        try reordered.write(to: dir + "/reordered.txt")
        r = try run(
            ["finetune", "--run-dir", dir + "/c", "--init-from", dir + "/hf", "--dict", dir + "/reordered.txt"] + common
                + ["--set", "train.seed=5"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("the CTC head starts fresh"), r.output)
        r = try run(["compare", dir + "/c", dir + "/a", "--rtol", "1e-4"])
        XCTAssertEqual(r.status, 1, "a fresh head (another seed) differs from the source's: \(r.output)")
    }
}
