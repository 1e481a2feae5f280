import ArgumentParser
import Foundation
import Tensor
import Audio
import W2VBert
import Training

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Hidden states of audio files from a checkpoint (whole utterance, no masking, no noise) as .npy.",
        discussion: "One input: OUT.npy holds [T, d]. Several: OUT.npy holds [N, T_max, d] zero-padded and OUT.lengths.npy the frame counts.")
    @Option(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint).") var checkpoint: String
    @Argument(help: "Audio files (anything libsndfile reads; resampled to 16 kHz, downmixed).") var audio: [String]
    @Option(help: "Output .npy file.") var out: String
    @Option(help: "contrastive (after the last contrastive block), mlm (after the last MLM block) or speaker (hyper-lora's speaker vector per file: [files, adapter.speaker_dim]).") var layer = "mlm"
    @Option(name: .customLong("set"), help: "Override one key, e.g. compute.precision=bf16 (repeatable).") var overrides: [String] = []
    @Flag(help: "Run all inputs as one zero-padded batch (padding must not change the states of real frames).") var batch = false
    @Option(help: "Also write the model's input features (CMVN'd fbank, [N, T0_max, 80] zero-padded) here, with PATH.lengths.npy.")
    var saveFeatures: String?
    @Option(name: .customLong("speaker"), help: "adapter.speaker = table runs: the speaker label of the files (once: every file; or once per file, in order); a label the table does not know, e.g. '-', takes the unknown-speaker row, as do files without --speaker.")
    var speakers: [String] = []

    func validate() throws {
        guard layer == "mlm" || layer == "contrastive" || layer == "speaker" else {
            throw ValidationError("--layer must be contrastive, mlm or speaker, not '\(layer)'")
        }
        guard !audio.isEmpty else { throw ValidationError("give at least one audio file") }
        guard speakers.count <= 1 || speakers.count == audio.count else {
            throw ValidationError("give --speaker once (every file) or once per file (\(audio.count)), not \(speakers.count) times")
        }
    }

    func run() throws {
        let (config, dir) = try runConfig(checkpoint, overrides: overrides)
        startCompute(config.compute, announce: true)
        let (feats, t0s, padded) = try features(config)
        let maxT0 = t0s.max()!
        let model = W2VBertModel(config: config, maxBatch: batch ? feats.count : 1, maxFrames: maxT0)
        let file = try validatedCheckpoint(dir, config: config)
        for e in model.layout.entries {
            do { try file.read(e.name, shape: e.shape, into: model.params.ptr + e.offset) } catch { throw RuntimeError("\(error)") }
        }
        let rows = try speakerRows(config, dir: dir)
        if layer == "speaker" { return try speakerVectors(model, feats, rows: rows, dir: dir) }
        let outputs = batch ? batchedStates(model, padded: padded, t0s: t0s, rows: rows)
                            : feats.indices.map { oneState(model, feats[$0], row: rows[$0]) }
        try write(outputs, d: config.model.dim)
        print("embed: \(audio.count) file(s), layer \(layer), d = \(config.model.dim) → \(out)")
    }

    /// CMVN'd fbank of every input, their T0, and all of them zero-padded to [N, T0_max, 80] (saved with --save-features).
    func features(_ config: Config) throws -> ([[Float]], [Int], [Float]) {
        var feats: [[Float]] = []
        let fbank = KaldiFbank()
        for path in audio {
            let samples: [Float]
            do { samples = try AudioDecoder.load(path: path) } catch { throw RuntimeError("\(error)") }
            var f = fbank.compute(samples)
            let t0 = f.count / Config.melBins
            guard config.encoderLength(t0: t0) >= 1 else { throw RuntimeError("\(path): too short (\(t0) fbank frames)") }
            applyCMVN(&f, frames: t0, bins: Config.melBins)
            feats.append(f)
        }
        let t0s = feats.map { $0.count / Config.melBins }, maxT0 = t0s.max()!
        var padded = [Float](repeating: 0, count: feats.count * maxT0 * Config.melBins)
        for (i, f) in feats.enumerated() { for j in 0..<f.count { padded[i * maxT0 * Config.melBins + j] = f[j] } }
        if let path = saveFeatures {
            let stem = path.hasSuffix(".npy") ? String(path.dropLast(4)) : path
            do {
                try Npy.write(NpyArray(shape: [feats.count, maxT0, Config.melBins], data: padded), to: path)
                try Npy.write(NpyArray(shape: [feats.count], data: t0s.map(Float.init)), to: stem + ".lengths.npy")
            } catch { throw RuntimeError("\(error)") }
        }
        return (feats, t0s, padded)
    }

    var embedLayer: W2VBertModel.EmbedLayer { layer == "mlm" ? .mlm : .contrastive }

    /// Issue 13, adapter.speaker = table: each file's row of the speaker table (−1: unknown), from --speaker and the
    /// labels in the checkpoint's trainer.json. All −1 for other runs (where --speaker is refused).
    func speakerRows(_ config: Config, dir: String) throws -> [Int32] {
        guard config.adapter.isTable else {
            if !speakers.isEmpty { throw RuntimeError("\(dir): --speaker needs a checkpoint trained with adapter.speaker = table") }
            return [Int32](repeating: -1, count: audio.count)
        }
        let state: TrainerState
        do { state = try TrainerState.read(path: dir + "/trainer.json") } catch { throw RuntimeError("\(error)") }
        guard let labels = state.speakers, labels.count == config.adapter.speakers else {
            throw RuntimeError("\(dir)/trainer.json: no speaker labels for the \(config.adapter.speakers) rows of speaker.table")
        }
        var index: [String: Int32] = [:]
        for (i, l) in labels.enumerated() { index[l] = Int32(i) }
        for l in Set(speakers) where index[l] == nil && l != "-" {
            FileHandle.standardError.write(Data("embed: speaker '\(l)' is not in the table (\(labels.count) labels): the unknown-speaker row\n".utf8))
        }
        return audio.indices.map { i in speakers.isEmpty ? -1 : index[speakers[speakers.count == 1 ? 0 : i]] ?? -1 }
    }

    /// Issue 13: one speaker vector per file, [files, speaker_dim].
    func speakerVectors(_ model: W2VBertModel, _ feats: [[Float]], rows: [Int32], dir: String) throws {
        guard model.config.adapter.isHyper else { throw RuntimeError("\(dir): --layer speaker needs a checkpoint trained with adapter.kind = hyper-lora") }
        let sd = model.config.adapter.speakerDim
        var all: [Float] = []
        for (f, row) in zip(feats, rows) {
            let len = [Int32(f.count / Config.melBins)], r = [row]
            f.withUnsafeBufferPointer { fp in
                len.withUnsafeBufferPointer { lp in
                    let v = r.withUnsafeBufferPointer {
                        model.embed(features: fp.baseAddress!, lengths: lp.baseAddress!, batch: 1, frames: Int(len[0]),
                                    layer: .speaker, conditioning: $0.baseAddress)
                    }
                    all += UnsafeBufferPointer(start: v, count: sd)
                }
            }
        }
        do { try Npy.write(NpyArray(shape: [feats.count, sd], data: all), to: out) } catch { throw RuntimeError("\(error)") }
        print("embed: \(audio.count) file(s), layer speaker, speaker_dim = \(sd) → \(out)")
    }

    /// One padded batch [N, T_max, d]; each utterance keeps its encoderLength(T0) rows.
    func batchedStates(_ model: W2VBertModel, padded: [Float], t0s: [Int], rows: [Int32]) -> [[Float]] {
        let c = model.config, d = c.model.dim, maxT0 = t0s.max()!, tMax = c.encoderLength(t0: maxT0)
        let lens = t0s.map { Int32($0) }
        let all: [Float] = padded.withUnsafeBufferPointer { fp in
            lens.withUnsafeBufferPointer { lp in
                let h = rows.withUnsafeBufferPointer {
                    model.embed(features: fp.baseAddress!, lengths: lp.baseAddress!, batch: t0s.count, frames: maxT0,
                                layer: embedLayer, conditioning: $0.baseAddress)
                }
                return Array(UnsafeBufferPointer(start: h, count: t0s.count * tMax * d))
            }
        }
        return t0s.enumerated().map { i, t0 in Array(all[(i * tMax * d)..<(i * tMax * d + c.encoderLength(t0: t0) * d)]) }
    }

    /// One utterance on its own: [T, d].
    func oneState(_ model: W2VBertModel, _ f: [Float], row: Int32) -> [Float] {
        let c = model.config, t0 = f.count / Config.melBins, t = c.encoderLength(t0: t0)
        let len = [Int32(t0)], r = [row]
        return f.withUnsafeBufferPointer { fp in
            len.withUnsafeBufferPointer { lp in
                let h = r.withUnsafeBufferPointer {
                    model.embed(features: fp.baseAddress!, lengths: lp.baseAddress!, batch: 1, frames: t0,
                                layer: embedLayer, conditioning: $0.baseAddress)
                }
                return Array(UnsafeBufferPointer(start: h, count: t * c.model.dim))
            }
        }
    }

    /// OUT.npy: [T, d] for one input; [N, T_max, d] zero-padded and OUT.lengths.npy for several.
    func write(_ outputs: [[Float]], d: Int) throws {
        do {
            if outputs.count == 1 {
                try Npy.write(NpyArray(shape: [outputs[0].count / d, d], data: outputs[0]), to: out)
            } else {
                let tMax = outputs.map { $0.count / d }.max()!
                var all = [Float](repeating: 0, count: outputs.count * tMax * d)
                for (i, o) in outputs.enumerated() { for j in 0..<o.count { all[i * tMax * d + j] = o[j] } }
                try Npy.write(NpyArray(shape: [outputs.count, tMax, d], data: all), to: out)
                let stem = out.hasSuffix(".npy") ? String(out.dropLast(4)) : out
                try Npy.write(NpyArray(shape: [outputs.count], data: outputs.map { Float($0.count / d) }), to: stem + ".lengths.npy")
            }
        } catch { throw RuntimeError("\(error)") }
    }
}
