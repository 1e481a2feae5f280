import Foundation
import Tensor
import Audio
import W2VBert

/// Hidden states of audio files (or series or tokens files, as the run's data.kind; a FASTA file named without
/// `#i` stands for all its records) from a checkpoint (`w2vbert embed`): no masking, no noise. One input: OUT.npy
/// holds [T, d]. Several: OUT.npy holds [N, T_max, d] zero-padded and OUT.lengths.npy the frame counts. Layer
/// speaker (hyper-lora): [files, speaker_dim].
/// Files up to `window` seconds run whole. Longer ones (one at a time, not `batched`) run in windows of
/// `window` seconds that overlap by 2·`context`: each window's states are kept for its middle frames only, so
/// every kept frame sees at least `context` seconds on each side (the file's own ends excepted) and memory
/// stays that of one window however long the file is.
public struct Embedding {
    /// Audio files (anything libsndfile reads; resampled to 16 kHz, downmixed).
    public var audio: [String]
    public var layer: W2VBertModel.EmbedLayer = .mlm
    /// All inputs as one zero-padded batch (padding must not change the states of real frames).
    public var batched = false
    /// adapter.speaker = table: the speaker label of the files (empty: none; one: every file; else one per file).
    public var speakers: [String] = []
    /// Where to also write the model's input features ([N, T0_max, F] zero-padded, with PATH.lengths.npy): CMVN'd
    /// fbank (audio), normalised values with NaN where missing (series), token ids (tokens).
    public var saveFeatures: String?
    /// Longest stretch of audio run at once, seconds (0: whole files, however long); see the type's comment.
    public var window: Double = 60
    /// Seconds of context on each side of a window's kept frames.
    public var context: Double = 10

    public init(audio: [String]) { self.audio = audio }

    /// CMVN'd fbank of every input, their T0, and all of them zero-padded to [N, T0_max, 80].
    struct Inputs {
        let features: [[Float]]
        let t0s: [Int]
        let padded: [Float]
        var maxT0: Int { t0s.max()! }
    }

    /// Computes the embeddings of `folder`'s model with `compute` and writes them to `out`. Returns the
    /// warnings (speaker labels the table does not know).
    public func run(_ folder: CheckpointFolder, compute: Compute, out: String) throws -> [String] {
        try folder.requirePretraining("embed")
        let config = folder.config
        if config.data.kind == .tokens && audio.contains(where: { SequenceFiles.splitRecord($0).record == nil }) {
            // A FASTA file named without #i stands for all its records, in order.
            var me = self
            me.audio = try audio.flatMap { path -> [String] in
                let named = SequenceFiles.splitRecord(path)
                guard named.record == nil, named.window == nil,
                    let n = try? SequenceFiles.tokenLengths(path: path, vocab: nil).count, n > 1
                else { return [path] }
                return (0..<n).map { "\(path)#\($0)" }
            }
            if me.audio != audio { return try me.run(folder, compute: compute, out: out) }
        }
        let inputs = try features(config, folder: folder)
        let windows = EmbeddingWindows(config, window: window, context: context)
        // No backward runs: the blocks share one activation region (`train.checkpoint_activations` blocks).
        var inference = config
        inference.train.checkpointActivations = .blocks
        let model = W2VBertModel(
            config: inference, compute: compute, maxBatch: batched ? audio.count : 1,
            maxFrames: batched || layer == .speaker ? inputs.maxT0 : min(inputs.maxT0, windows.frames))
        try folder.readParameters(model.layout, into: model.params.ptr)
        let (rows, warnings) = try speakerRows(folder)
        if layer == .speaker {
            guard config.adapter.isHyper else {
                throw CheckpointFolderError(
                    "\(folder.directory): --layer speaker needs a checkpoint trained with "
                        + "adapter.kind = hyper-lora")
            }
            let sd = config.adapter.speakerDim
            let vectors = speakerVectors(model, inputs, rows: rows)
            try Npy.write(NpyArray(shape: [audio.count, sd], data: vectors), to: out)
            return warnings
        }
        let outputs =
            batched
            ? batchedStates(model, inputs, rows: rows)
            : audio.indices.map { windowedState(model, inputs.features[$0], row: rows[$0], windows: windows) }
        try write(outputs, d: config.model.dim, to: out)
        return warnings
    }

    /// The model's input rows of the first input, as `embed` computes them (series normalised, token ids).
    public func inputRows(_ folder: CheckpointFolder) throws -> [Float] {
        var one = self
        one.audio = [audio[0]]
        one.saveFeatures = nil
        return try one.features(folder.config, folder: folder).features[0]
    }

    func features(_ config: Config, folder: CheckpointFolder) throws -> Inputs {
        var feats: [[Float]] = []
        let fbank = KaldiFbank()
        let bins = config.inputWidth
        let vocab: TokenVocabulary? =
            config.data.kind == .tokens
            ? try TokenVocabulary.read(path: folder.runDirectory + "/" + SequenceSetup.vocabularyName) : nil
        if let vocab, vocab.count != config.data.vocabSize {
            throw CheckpointFolderError(
                "\(folder.runDirectory)/\(SequenceSetup.vocabularyName): \(vocab.count) tokens, the checkpoint has "
                    + "data.vocab_size = \(config.data.vocabSize)")
        }
        let format = SequenceSetup.format(config, vocabulary: vocab)
        for path in audio {
            var f: [Float]
            if format == .audio {
                f = fbank.compute(try AudioDecoder.load(path: path))
                applyCMVN(&f, frames: f.count / bins, bins: bins)
            } else {
                f = try format.rows(path)
            }
            let t0 = f.count / bins
            guard config.encoderLength(t0: t0) >= 1 else {
                throw AudioError(.tooShort, path: path, "\(t0) input frames")
            }
            feats.append(f)
        }
        let t0s = feats.map { $0.count / bins }
        let maxT0 = t0s.max()!
        var padded = [Float](repeating: 0, count: feats.count * maxT0 * bins)
        for (i, f) in feats.enumerated() {
            for j in 0..<f.count { padded[i * maxT0 * bins + j] = f[j] }
        }
        if let path = saveFeatures {
            try Npy.write(NpyArray(shape: [feats.count, maxT0, bins], data: padded), to: path)
            try Npy.write(NpyArray(shape: [feats.count], data: t0s.map(Float.init)), to: lengthsPath(path))
        }
        return Inputs(features: feats, t0s: t0s, padded: padded)
    }

    /// adapter.speaker = table: each file's row of the speaker table (−1: unknown), from `speakers` and the
    /// labels in the checkpoint's trainer.json. All −1 for other runs (where speaker labels are refused).
    func speakerRows(_ folder: CheckpointFolder) throws -> (rows: [Int32], warnings: [String]) {
        let config = folder.config
        guard config.adapter.isTable else {
            if !speakers.isEmpty {
                throw CheckpointFolderError(
                    "\(folder.directory): --speaker needs a checkpoint trained with "
                        + "adapter.speaker = table")
            }
            return ([Int32](repeating: -1, count: audio.count), [])
        }
        let state = try folder.trainerState()
        guard let labels = state.speakers, labels.count == config.adapter.speakers else {
            throw CheckpointFolderError(
                "\(folder.directory)/trainer.json: no speaker labels for the "
                    + "\(config.adapter.speakers) rows of speaker.table")
        }
        var index: [String: Int32] = [:]
        for (i, l) in labels.enumerated() { index[l] = Int32(i) }
        let warnings = Set(speakers).sorted().filter { index[$0] == nil && $0 != "-" }.map {
            "embed: speaker '\($0)' is not in the table (\(labels.count) labels): the unknown-speaker row"
        }
        let rows = audio.indices.map { i in
            speakers.isEmpty ? -1 : index[speakers[speakers.count == 1 ? 0 : i]] ?? -1
        }
        return (rows, warnings)
    }

    /// One speaker vector per file, [files, speaker_dim].
    func speakerVectors(_ model: W2VBertModel, _ inputs: Inputs, rows: [Int32]) -> [Float] {
        let sd = model.config.adapter.speakerDim
        var all: [Float] = []
        for (f, row) in zip(inputs.features, rows) {
            let t0 = f.count / model.config.inputWidth
            let v = embed(model, f, lengths: [Int32(t0)], frames: t0, layer: .speaker, rows: [row])
            all += UnsafeBufferPointer(start: v, count: sd)
        }
        return all
    }

    /// One padded batch [N, T_max, d]; each utterance keeps its encoderLength(T0) rows.
    func batchedStates(_ model: W2VBertModel, _ inputs: Inputs, rows: [Int32]) -> [[Float]] {
        let c = model.config
        let d = c.model.dim
        let tMax = c.encoderLength(t0: inputs.maxT0)
        let n = inputs.t0s.count
        let h = embed(
            model, inputs.padded, lengths: inputs.t0s.map { Int32($0) }, frames: inputs.maxT0,
            layer: layer, rows: rows)
        let all = Array(UnsafeBufferPointer(start: h, count: n * tMax * d))
        return inputs.t0s.enumerated().map { i, t0 in
            Array(all[(i * tMax * d)..<(i * tMax * d + c.encoderLength(t0: t0) * d)])
        }
    }

    /// One utterance on its own: [T, d].
    func oneState(_ model: W2VBertModel, _ f: [Float], row: Int32) -> [Float] {
        let c = model.config
        let t0 = f.count / c.inputWidth
        let h = embed(model, f, lengths: [Int32(t0)], frames: t0, layer: layer, rows: [row])
        return Array(UnsafeBufferPointer(start: h, count: c.encoderLength(t0: t0) * c.model.dim))
    }

    /// `model.embed` over Swift arrays; the result is valid until the model's next forward or embed.
    func embed(
        _ model: W2VBertModel, _ features: [Float], lengths: [Int32], frames: Int,
        layer: W2VBertModel.EmbedLayer, rows: [Int32]
    ) -> UnsafePointer<Float> {
        features.withUnsafeBufferPointer { fp in
            lengths.withUnsafeBufferPointer { lp in
                rows.withUnsafeBufferPointer { rp in
                    model.embed(
                        features: fp.baseAddress!, lengths: lp.baseAddress!, batch: lengths.count,
                        frames: frames, layer: layer, conditioning: rp.baseAddress)
                }
            }
        }
    }

    /// OUT.npy: [T, d] for one input; [N, T_max, d] zero-padded and OUT.lengths.npy for several.
    func write(_ outputs: [[Float]], d: Int, to out: String) throws {
        if outputs.count == 1 {
            try Npy.write(NpyArray(shape: [outputs[0].count / d, d], data: outputs[0]), to: out)
            return
        }
        let tMax = outputs.map { $0.count / d }.max()!
        var all = [Float](repeating: 0, count: outputs.count * tMax * d)
        for (i, o) in outputs.enumerated() {
            for j in 0..<o.count { all[i * tMax * d + j] = o[j] }
        }
        try Npy.write(NpyArray(shape: [outputs.count, tMax, d], data: all), to: out)
        try Npy.write(NpyArray(shape: [outputs.count], data: outputs.map { Float($0.count / d) }), to: lengthsPath(out))
    }

    /// PATH.npy → PATH.lengths.npy.
    func lengthsPath(_ path: String) -> String {
        (path.hasSuffix(".npy") ? String(path.dropLast(4)) : path) + ".lengths.npy"
    }

    /// One utterance [T, d] in windows (see the type's comment); whole when it fits one window.
    func windowedState(_ model: W2VBertModel, _ f: [Float], row: Int32, windows w: EmbeddingWindows) -> [Float] {
        let c = model.config, d = c.model.dim, bins = c.inputWidth
        let t0 = f.count / bins
        if t0 <= w.frames { return oneState(model, f, row: row) }
        let total = c.encoderLength(t0: t0)
        var out = [Float](repeating: 0, count: total * d)
        for (start, keep) in w.spans(t0: t0, total: total) {
            let part = Array(f[(start * bins)..<(min(t0, start + w.frames) * bins)])
            let h = oneState(model, part, row: row)
            // Window frame j is the file's frame start/r + j (start is a multiple of the subsampling r).
            let first = start / w.subsampling
            for g in keep { (0..<d).forEach { out[g * d + $0] = h[(g - first) * d + $0] } }
        }
        return out
    }
}

/// Window geometry in input frames (100 per second of audio; series steps and tokens count the same way):
/// `frames` per window, `contextFrames` of context each side, starts at
/// multiples of the front end's subsampling (so window frame j is the file's frame start/r + j exactly).
public struct EmbeddingWindows {
    public let frames, contextFrames, subsampling: Int

    public init(_ c: Config, window: Double, context: Double) {
        subsampling = c.model.frontend == .conv2d ? 4 : c.model.stackFrames
        let r = subsampling
        // At least 8·r frames per window and 2·r of context (the front end's edge frames), hop ≥ r.
        frames = window > 0 ? max(8 * r, Int(window * 100) / r * r) : Int.max
        contextFrames = window > 0 ? min(max(2 * r, Int(context * 100) / r * r), (frames - r) / 2 / r * r) : 0
    }

    /// Each window's first fbank frame and the file's encoder frames it keeps: consecutive, covering 0..<total.
    public func spans(t0: Int, total: Int) -> [(start: Int, keep: Range<Int>)] {
        let r = subsampling, hop = frames - 2 * contextFrames
        var out: [(Int, Range<Int>)] = []
        var start = 0, from = 0
        while from < total {
            let last = start + frames >= t0
            let to = last ? total : min(total, (start + contextFrames + hop) / r)
            out.append((start, from..<to))
            from = to
            start += hop
        }
        return out
    }
}
