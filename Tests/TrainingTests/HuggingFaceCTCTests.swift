import Audio
import Foundation
import Tensor
import TestSupport
import Training
import W2VBert
import XCTest

/// Hugging Face export of a CTC model (Wav2Vec2BertForCTC). The fixture `Fixtures/hf_ctc_micro` holds a micro CTC
/// run (d 32, 1 + 2 blocks, V 20; `w2vbert init-ctc` with the dictionary of the transcripts "Žluťoučký kůň úpěl."
/// and "Kůň a pes, 2 kočky!", weights perturbed), the JSON files of its export that transformers loaded
/// (Wav2Vec2BertForCTC, Wav2Vec2BertProcessor and the pipeline, no missing or unexpected weight) and, in
/// expected.safetensors, the logits transformers computed on a padded batch of two utterances with its
/// processor's greedy texts (Tests/W2VBertTests/twin/hf_ctc_check.py tells how it was made); no PyTorch is
/// needed here. launch/check-hf-ctc.sh runs the real check through transformers.
final class HuggingFaceCTCTests: XCTestCase {
    static let root = fixtures + "/hf_ctc_micro"
    static let run = root + "/run"
    let fm = FileManager.default

    func json(_ path: String) throws -> NSDictionary {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? NSDictionary, path)
    }

    /// Re-exporting the fixture run gives the committed JSON files and the checkpoint's tensors under
    /// transformers' names (the encoder under wav2vec2_bert., ctc_head as lm_head).
    func testExportMatchesTheFolderTransformersLoaded() throws {
        let out = tempDir("hfctc")
        let s = try HuggingFace.exportCheckpoint(Self.run, to: out)
        XCTAssertEqual(s.vocabularySize, 20)
        XCTAssertEqual(s.leftOut, [])
        let files = try fm.contentsOfDirectory(atPath: Self.root + "/export").sorted()
        XCTAssertEqual(
            files,
            [
                "config.json", "preprocessor_config.json", "special_tokens_map.json", "tokenizer_config.json",
                "vocab.json",
            ])
        for f in files { XCTAssertEqual(try json(out + "/" + f), try json(Self.root + "/export/" + f), f) }
        let vocab = try json(out + "/vocab.json")
        XCTAssertEqual(vocab["<pad>"] as? Int, 0)
        XCTAssertEqual(vocab["|"] as? Int, 1)
        XCTAssertEqual(vocab["ž"] as? Int, 19)
        XCTAssertEqual(vocab.count, 20)

        let folder = try CheckpointFolder(Self.run)
        let c = folder.config
        let ours = try SafeTensors.open(path: folder.directory + "/model.safetensors")
        let hf = try SafeTensors.open(path: out + "/model.safetensors")
        var names: [String] = []
        for e in ParameterLayout(config: c).entries {
            let n = try XCTUnwrap(HuggingFace.ctcName(e.name, shape: e.shape, config: c), e.name)
            XCTAssertEqual(hf.entries[n.name]?.shape, n.shape, n.name)
            XCTAssertEqual(try hf.array(n.name), try ours.array(e.name), n.name)
            names.append(n.name)
        }
        XCTAssertEqual(Set(hf.entries.keys), Set(names))
        XCTAssertEqual(hf.entries["lm_head.weight"]?.shape, [20, 32])
        XCTAssertEqual(hf.entries["lm_head.bias"]?.shape, [20])
        XCTAssertNotNil(hf.entries["wav2vec2_bert.masked_spec_embed"])
        XCTAssertNotNil(hf.entries["wav2vec2_bert.encoder.layers.2.conv_module.depthwise_conv.weight"])
        XCTAssert(names.allSatisfy { $0.hasPrefix("wav2vec2_bert.") || $0.hasPrefix("lm_head.") }, "\(names)")
    }

    /// CTCModel's logits on the fixture's padded batch are transformers' (≤ 1e-4 relative on the real frames)
    /// and their greedy texts are those of transformers' processor.
    func testLogitsAndTextsMatchTransformers() throws {
        let folder = try CheckpointFolder(Self.run)
        let c = folder.config
        let expected = try SafeTensors.open(path: Self.root + "/expected.safetensors")
        let feats = try expected.array("input.features"), ref = try expected.array("out.logits")
        let t0s = try expected.array("input.lengths").map { Int32($0) }
        let texts = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(expected.metadata["texts"]!.utf8)) as? [String])
        let b = t0s.count, t0 = feats.count / (b * Config.melBins), v = c.model.vocabSize
        let model = CTCModel(config: c, compute: .fp32(), maxBatch: b, maxFrames: t0)
        try folder.readParameters(model.layout, into: model.params.ptr)
        let vocabulary = try CTCVocabulary.read(path: Self.run + "/dict.ltr.txt")
        let (logits, frames) = feats.withUnsafeBufferPointer { fp in
            t0s.withUnsafeBufferPointer {
                model.logits(features: fp.baseAddress!, lengths: $0.baseAddress!, batch: b, frames: t0)
            }
        }
        let t = c.encoderLength(t0: t0)
        XCTAssertEqual(ref.count, b * t * v)
        XCTAssertEqual(frames, t0s.map { Int($0) / 2 })
        var worst = 0.0, scale = 0.0
        for u in 0..<b {
            for i in u * t * v..<(u * t + frames[u]) * v {
                worst = max(worst, Double(abs(logits[i] - ref[i])))
                scale = max(scale, Double(abs(ref[i])))
            }
            let text = CTCGreedyDecoding.text(logits: logits + u * t * v, frames: frames[u], vocabulary: vocabulary)
            XCTAssertEqual(text.split(separator: " "), texts[u].split(separator: " "), "utterance \(u)")
            XCTAssertFalse(text.isEmpty)
        }
        print("hf_ctc_micro: Wav2Vec2BertForCTC logits vs CTCModel, frames \(frames): max |Δ| \(worst) / \(scale)")
        XCTAssertGreaterThan(scale, 1)
        XCTAssertLessThan(worst / scale, 1e-4)
    }

    /// A CTC run is exported only with its dictionary of model.vocab_size entries: status 1 naming the file, before
    /// the output folder is made.
    func testExportNeedsTheDictionary() throws {
        let dir = tempDir("hfctc-bad")
        try fm.copyItem(atPath: Self.run, toPath: dir + "/run")
        try fm.removeItem(atPath: dir + "/run/dict.ltr.txt")
        let exe = DistributedTrainingTests.exe
        var r = try runCommand([exe, "export-hf", dir + "/run", "--out", dir + "/hf"], timeout: 60)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains(dir + "/run/dict.ltr.txt"), r.output)
        try "| 1\na 1\n".write(toFile: dir + "/run/dict.ltr.txt", atomically: true, encoding: .utf8)
        r = try runCommand([exe, "export-hf", dir + "/run", "--out", dir + "/hf"], timeout: 60)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains("dict.ltr.txt") && r.output.contains("model.vocab_size = 20"), r.output)
        XCTAssertFalse(fm.fileExists(atPath: dir + "/hf"))
        let c = try CheckpointFolder(Self.run).config
        let l = ParameterLayout(config: c)
        XCTAssertThrowsError(
            try HuggingFace.export(config: c, layout: l, to: dir + "/lib") { _ in UnsafePointer(bitPattern: 8)! }
        ) { XCTAssert("\($0)".contains("the dictionary has no entries"), "\($0)") }
    }

    /// transcribe --logits writes the logits the texts were decoded from, --save-features the model's input.
    func testTranscribeWritesItsLogitsAndFeatures() throws {
        let dir = tempDir("hfctc-tr")
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var audio: [String] = []
        for (i, seconds) in [0.7, 0.4].enumerated() {
            let n = Int(16000 * seconds)
            let x = (0..<n).map { j in Float(0.3 * sin(Double(j) * 0.03 * Double(i + 1)) * sin(Double(j) * 0.001)) }
            audio.append("\(dir)/\(i).wav")
            try AudioWriter.write(path: audio[i], samples: x, sampleRate: 16000, format: .wav16)
        }
        let r = try runCommand(
            [
                DistributedTrainingTests.exe, "transcribe", "--checkpoint", Self.run, "--logits", dir + "/l.npy",
                "--save-features", dir + "/f.npy",
            ] + audio, timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        let logits = try Npy.read(path: dir + "/l.npy"), lengths = try Npy.read(path: dir + "/l.lengths.npy")
        let feats = try Npy.read(path: dir + "/f.npy"), t0s = try Npy.read(path: dir + "/f.lengths.npy")
        XCTAssertEqual(t0s.data, [68, 38])
        XCTAssertEqual(lengths.data, [34, 19])
        XCTAssertEqual(logits.shape, [2, 34, 20])
        XCTAssertEqual(feats.shape, [2, 68, 80])
        let vocabulary = try CTCVocabulary.read(path: Self.run + "/dict.ltr.txt")
        let lines = r.output.split(separator: "\n").filter { $0.contains("\t") }
        XCTAssertEqual(lines.count, 2, r.output)
        for u in 0..<2 {
            let text = logits.data.withUnsafeBufferPointer {
                CTCGreedyDecoding.text(
                    logits: $0.baseAddress! + u * 34 * 20, frames: Int(lengths.data[u]), vocabulary: vocabulary)
            }
            XCTAssertEqual(String(lines[u]), audio[u] + "\t" + text)
        }
        XCTAssert(logits.data[(34 + 19) * 20..<2 * 34 * 20].allSatisfy { $0 == 0 }, "padding rows are zero")
    }

    /// The tensors of a safetensors file by name.
    func tensors(_ path: String) throws -> [String: [Float]] {
        let f = try SafeTensors.open(path: path)
        var out: [String: [Float]] = [:]
        for name in f.entries.keys { out[name] = try f.array(name) }
        return out
    }

    /// import-hf of the exported Wav2Vec2BertForCTC folder gives a CTC checkpoint whose export is the same folder
    /// and whose dictionary, written next to it, transcribes as the original run does.
    func testImportOfTheCTCExportRoundTrips() throws {
        let dir = tempDir("hfctc-imp")
        let exe = DistributedTrainingTests.exe
        var r = try runCommand([exe, "export-hf", Self.run, "--out", dir + "/hf"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        r = try runCommand([exe, "import-hf", dir + "/hf", "--out", dir + "/ck"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        let folder = try CheckpointFolder(dir + "/ck")
        XCTAssertEqual(folder.config.model.head, .ctc)
        XCTAssertEqual(folder.config.model.vocabSize, 20)
        let original = try CTCVocabulary.read(path: Self.run + "/dict.ltr.txt")
        let imported = try CTCVocabulary.read(path: dir + "/ck/dict.ltr.txt")
        XCTAssertEqual(imported.symbols, original.symbols)
        let ours = try tensors(dir + "/ck/model.safetensors")
        let run = try tensors(try CheckpointFolder(Self.run).directory + "/model.safetensors")
        XCTAssertEqual(ours, run)
        r = try runCommand([exe, "export-hf", dir + "/ck", "--out", dir + "/hf2"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        let files = try fm.contentsOfDirectory(atPath: dir + "/hf").sorted()
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: dir + "/hf2").sorted(), files)
        for f in files where f != "model.safetensors" {
            XCTAssertEqual(try json(dir + "/hf2/" + f), try json(dir + "/hf/" + f), f)
        }
        XCTAssertEqual(try tensors(dir + "/hf2/model.safetensors"), try tensors(dir + "/hf/model.safetensors"))

        let audio = dir + "/a.wav"
        let x = (0..<11200).map { j in Float(0.3 * sin(Double(j) * 0.03) * sin(Double(j) * 0.001)) }
        try AudioWriter.write(path: audio, samples: x, sampleRate: 16000, format: .wav16)
        let a = try runCommand([exe, "transcribe", "--checkpoint", Self.run, audio], timeout: 60)
        let b = try runCommand([exe, "transcribe", "--checkpoint", dir + "/ck", audio], timeout: 60)
        XCTAssertEqual(a.status, 0, a.output)
        XCTAssertEqual(b.status, 0, b.output)
        let lines = { (o: String) in o.split(separator: "\n").filter { $0.hasPrefix(audio + "\t") } }
        XCTAssertEqual(lines(a.output).count, 1, a.output)
        XCTAssertEqual(lines(b.output), lines(a.output))
    }

    /// A vocab.json that does not number `<pad>` 0, `|` 1 and the letters 1..V−1, or whose size is not
    /// config.json's vocab_size, is refused naming it (status 1), before the checkpoint folder is made.
    func testImportRefusesADamagedVocabulary() throws {
        let dir = tempDir("hfctc-badvocab")
        let exe = DistributedTrainingTests.exe
        let r = try runCommand([exe, "export-hf", Self.run, "--out", dir + "/hf"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        let vocab = try XCTUnwrap(try json(dir + "/hf/vocab.json") as? [String: Int])
        var swapped = vocab
        swapped["<pad>"] = 1
        swapped["|"] = 0
        var gap = vocab
        gap["ž"] = 25
        var short = vocab
        short["ž"] = nil
        let cases = [
            (swapped, "'<pad>' (the CTC blank) is not id 0"), (gap, "ids are not 0..19"),
            (short, "19 tokens, config.json's vocab_size is 20"),
        ]
        for (i, (damaged, why)) in cases.enumerated() {
            let data = try JSONSerialization.data(withJSONObject: damaged)
            try data.write(to: URL(fileURLWithPath: dir + "/hf/vocab.json"))
            let out = dir + "/ck\(i)"
            let bad = try runCommand([exe, "import-hf", dir + "/hf", "--out", out], timeout: 60)
            XCTAssertEqual(bad.status, 1, bad.output)
            XCTAssert(bad.output.contains(dir + "/hf/vocab.json: " + why), bad.output)
            XCTAssertFalse(fm.fileExists(atPath: out))
        }
    }

    /// A Wav2Vec2BertForCTC folder without our stored config (as transformers saves one) imports as a CTC model of
    /// config.json's vocab_size with lm_head as its CTC head.
    func testImportOfAForeignCTCFolder() throws {
        let dir = tempDir("hfctc-foreign")
        let r = try runCommand([DistributedTrainingTests.exe, "export-hf", Self.run, "--out", dir], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        let hf = try tensors(dir + "/model.safetensors")
        let names = hf.keys.sorted()
        let shapes = try SafeTensors.open(path: dir + "/model.safetensors").entries.mapValues { $0.shape }
        let entries = names.map { TensorEntry(name: $0, shape: shapes[$0]!) }
        try SafeTensors.write(path: dir + "/model.safetensors", entries: entries, metadata: ["format": "pt"]) { i in
            hf[names[i]]!.withUnsafeBufferPointer { $0.baseAddress! }
        }
        let s = try HuggingFace.importFolder(dir, to: dir + "/ck", base: nil, contrastiveBlocks: nil)
        XCTAssertEqual(s.config.model.head, .ctc)
        XCTAssertEqual(s.config.model.vocabSize, 20)
        XCTAssertEqual(s.config.model.dim, 32)
        let ck = try tensors(dir + "/ck/model.safetensors")
        XCTAssertEqual(ck["ctc_head.weight"], hf["lm_head.weight"])
        XCTAssertEqual(ck["ctc_head.bias"], hf["lm_head.bias"])
        let vocabulary = try CTCVocabulary.read(path: dir + "/ck/dict.ltr.txt")
        XCTAssertEqual(vocabulary, try HuggingFace.readVocabulary(try HuggingFace.open(dir)))
        XCTAssertEqual(vocabulary.size, 20)
    }
}
