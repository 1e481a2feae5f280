// Configuration of a W2V-BERT run: twelve YAML sections, `data`, `model`, `quantizer`, `mask`, `loss`,
// `optimizer`, `train`, `dist`, `codebook`, `adapter`, `finetune` and `compute`. A config is a preset (tiny,
// small, base, xl, the Hugging Face family, series-tiny, tokens-tiny) plus YAML files plus
// `--set section.key=value` overrides; every key goes through one table (`Config.keys`), so loading,
// overriding, validation messages and serialisation agree. Unknown keys and impossible values are errors that
// name the key.
//
// `train.lr` and `train.warmup` are aliases of `optimizer.lr` and `optimizer.warmup` (one stored value;
// the resolved YAML writes it under `optimizer` only).

import Tensor
import Yams

/// The front end: `conv2d` and `stack` read feature rows (audio's fbank, a series' channels), `embed` token ids.
public enum Frontend: String, Sendable, CaseIterable { case conv2d, stack, embed }
public enum Position: String, Sendable, CaseIterable { case conv, shaw, rope, none }
public enum Replacement: String, Sendable, CaseIterable { case random, learned }
/// What sits on the encoder: the pre-training heads (quantizer, contrastive and MLM heads) or a CTC head
/// (a Linear layer to model.vocab_size letters, for fine-tuning and recognition).
public enum Head: String, Sendable, CaseIterable { case pretrain, ctc }
/// Learning-rate schedules: `transformer` (inverse square root after warm-up), `polynomial` (linear warm-up then
/// linear decay to 0), `tri_stage` (fine-tuning: warm-up from init_lr_scale·lr, hold, exponential decay to
/// final_lr_scale·lr, stage lengths optimizer.tri_stage_ratios of max_steps).
public enum Schedule: String, Sendable, CaseIterable {
    case transformer, polynomial
    case triStage = "tri_stage"
}
/// Hypernetwork layers: which named weights of every block one shared generator produces.
public enum Hypernetwork: String, Sendable, CaseIterable {
    case none, ffn, ffnConv = "ffn+conv"
}
/// adapter.kind: `none` or the `adapterKind` of a registered model option (ModelOptions.all), e.g. `lora`.
public struct AdapterKind: RawRepresentable, Sendable, Hashable, CaseIterable {
    public let rawValue: String
    public init?(rawValue: String) {
        guard rawValue == AdapterKind.none.rawValue || ModelOptions.adapterKinds.contains(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    /// A kind the option registry names (each option's file declares its own constant).
    init(registered name: String) { rawValue = name }
    public static let none = AdapterKind(registered: "none")
    public static var allCases: [AdapterKind] { [.none] + ModelOptions.adapterKinds.map(AdapterKind.init(registered:)) }
}
/// Where hyper-lora's speaker vector comes from: `signal`, a pooled encoder of the utterance, or
/// `table`, a learned row per speaker label of the training manifest (plus one row for unknown speakers).
public enum AdapterSpeaker: String, Sendable, CaseIterable { case signal, table }
public enum Trainable: String, Sendable, CaseIterable { case all, adapters }
/// A Linear layer of every Conformer block that can carry a LoRA adapter (`ffn.*` adapts both FFNs).
public enum AdapterTarget: String, Sendable, CaseIterable {
    case attnQ = "attn.q", attnK = "attn.k", attnV = "attn.v", attnOut = "attn.out"
    case ffnFc1 = "ffn.fc1", ffnFc2 = "ffn.fc2", convPw1 = "conv.pw1", convPw2 = "conv.pw2"
}

/// Adapters on the Conformer blocks' Linear layers, e.g. LoRA: y += (α/r)·B(A x), A [r, in], B [out, r].
public struct AdapterConfig: Sendable, Equatable {
    public var kind: AdapterKind = .none
    public var rank = 8  // r
    public var alpha: Float = 16  // α (scale α/r)
    public var targets: [AdapterTarget] = [.attnQ, .attnV]
    /// hyper-lora: speaker vector s [speakerDim] and layer embedding e_l [layerDim].
    public var speaker: AdapterSpeaker = .signal
    /// adapter.speaker = table: N, the training manifest's distinct speaker labels (`train` sets it; the table
    /// has N + 1 rows, the last for unknown speakers).
    public var speakers = 0
    public var speakerDim = 8
    public var layerDim = 4
    public var scale: Float { alpha / Float(rank) }
    public var isHyper: Bool { kind == .hyperLora }
    /// hyper-lora with the speaker vector from the learned table (adapter.speaker = table).
    public var isTable: Bool { kind == .hyperLora && speaker == .table }
    public func adapts(_ t: AdapterTarget) -> Bool { kind != .none && targets.contains(t) }
}

public struct ModelConfig: Sendable, Equatable {
    public var frontend: Frontend = .conv2d
    public var frontendChannels = 32  // C (conv2d), the embedding size e (embed)
    /// k: input frames per encoder frame of the stack and embed front ends.
    public var stackFrames = 2
    /// LayerNorm(d) after the front-end projection. Off in the Hugging Face family (`*2` presets).
    public var frontendNorm = true
    /// LayerNorm(k·F) of the stack front end's stacked frame before the projection. Off in series-tiny: over
    /// a few values of a narrow series (k·C = 2 for one channel) it would keep little more than their order.
    public var stackNorm = true
    public var dim = 144  // d
    public var heads = 4  // h
    public var ffnDim = 576  // f
    public var convKernel = 15  // depthwise k
    public var causalConv = false
    public var contrastiveBlocks = 2  // N
    public var mlmBlocks = 2  // M
    /// Linear(d → d) after masking. Off in the Hugging Face family (`*2` presets).
    public var contextProj = true
    /// Hypernetwork layers: `ffn` generates every block's fc1/fc2 weights of both FFNs, `ffn+conv`
    /// also pw1/pw2, as W_l = base + Σ_k e_l[k]·coef[k] (+ B_l·A_l) from a learned layer embedding e_l.
    public var hypernetwork: Hypernetwork = .none
    public var hyperDim = 2  // E, the layer embedding's size
    public var hyperRank = 0  // rank of the optional per-layer residual B_l·A_l (0: none)
    public var position: Position = .conv
    public var posConvKernel = 32  // P
    public var posConvGroups = 4  // Gp
    public var shawLeft = 64  // Lp
    public var shawRight = 8  // Rp
    public var finalDim = 64
    public var dropout: Float = 0
    public var layerDrop: Float = 0
    public var head: Head = .pretrain
    /// V of the CTC head: the dictionary's size, blank (0) included. Required (> 1) with head ctc.
    public var vocabSize = 0
    /// Dropout on the encoder output before the CTC head.
    public var finalDropout: Float = 0
}

public struct QuantizerConfig: Sendable, Equatable {
    public var groups = 1  // G
    public var entries = 128  // V
    public var dim = 128  // D
    public var tauStart: Float = 2.0
    public var tauEnd: Float = 0.5
    public var tauDecay: Double = 0.999
    public var detachTargets = false
}

public struct MaskConfig: Sendable, Equatable {
    public var prob: Float = 0.65
    public var span = 10
    public var minSpans = 2
    public var replacement: Replacement = .random
    public var randomStd: Float = 0.1
}

public struct LossConfig: Sendable, Equatable {
    public var numNegatives = 100  // K
    public var kappa: Float = 0.1
    public var contrastiveWeight: Float = 1
    public var mlmWeight: Float = 1
    public var diversityWeight: Float = 0.2  // α
}

public struct OptimizerConfig: Sendable, Equatable {
    public var lr: Float = 1e-3
    public var warmup = 300
    public var schedule: Schedule = .transformer
    public var betas: (Float, Float) = (0.9, 0.98)
    public var eps: Float = 1e-6
    public var weightDecay: Float = 0.01
    public var clipNorm: Float = 1.0
    public var maxSteps = 20_000
    /// tri_stage: the warm-up, hold and decay shares of max_steps (summing to 1).
    public var triStageRatios: [Double] = [0.1, 0.4, 0.5]
    /// tri_stage: the rate starts at init_lr_scale·lr and ends at final_lr_scale·lr.
    public var initLrScale: Float = 0.01
    public var finalLrScale: Float = 0.05
    public static func == (a: Self, b: Self) -> Bool {
        a.lr == b.lr && a.warmup == b.warmup && a.schedule == b.schedule && a.betas == b.betas && a.eps == b.eps
            && a.weightDecay == b.weightDecay && a.clipNorm == b.clipNorm && a.maxSteps == b.maxSteps
            && a.triStageRatios == b.triStageRatios && a.initLrScale == b.initLrScale
            && a.finalLrScale == b.finalLrScale
    }
}

public struct TrainConfig: Sendable, Equatable {
    public var updateFreq = 1
    public var maxFrames = 16_000  // padded fbank frames per micro-batch (B·T0max)
    public var maxSamples = 250_000  // random crop of longer utterances, 16 kHz samples (15.6 s)
    public var balanceSteps = true  // a step's micro-batches cost about the same (docs/decisions.md)
    public var seed: UInt64 = 1
    public var logInterval = 10
    public var saveInterval = 1000
    public var validInterval = 1000
    public var keepLast = 5
    public var maxConsecutiveSkips = 5  // non-finite steps in a row before the run aborts (exit 76)
    public var maxBadFraction: Double = 0.01  // unreadable files (of a rank's share) before the run aborts
    public var validBatches = 0  // validation micro-batches per rank (0 = the whole valid set)
    public var trainable: Trainable = .all  // adapters: the base model is frozen
    /// blocks: forward keeps only each Conformer block's output, backward recomputes the block's activations
    /// (same arithmetic: gradients bit-identical); memory of one block's activations instead of every block's.
    public var checkpointActivations: ActivationCheckpointing = .none
}

/// `train.checkpoint_activations`: what the Conformer blocks keep between forward and backward.
public enum ActivationCheckpointing: String, Sendable, CaseIterable { case none, blocks }

/// Data-parallel settings (ARCHITECTURE "Data-parallel step", "Rank 0: quantizer-codebook protocol").
public struct DistConfig: Sendable, Equatable {
    public enum OnDivergence: String, Sendable, CaseIterable { case abort, resync }
    public var timeout: Double = 600  // seconds before the collective watchdog aborts the job
    public var fingerprintInterval = 100  // steps between replica fingerprints (0 = never)
    public var onDivergence: OnDivergence = .abort
}

public struct CodebookConfig: Sendable, Equatable {
    public var syncInterval = 100  // steps per hard-count window (0 = no revival)
    public var deadThreshold: Double = 0.01  // a code is dead below this share of uniform use over the window
    public var revive = true
}

/// CTC fine-tuning (model.head = ctc): masking of the encoder input during training, as wav2vec 2.0's
/// fine-tuning. Time masking replaces spans of encoder frames by the mask embedding (the pre-training
/// replacement), at least two spans per utterance when the probability is > 0; channel masking zeroes spans
/// of the encoder input's channels for every frame of an utterance.
public struct FinetuneConfig: Sendable, Equatable {
    public var maskTimeProb: Float = 0.5
    public var maskTimeSpan = 10
    public var maskChannelProb: Float = 0
    public var maskChannelSpan = 64
    /// The feature encoder (front end) is not trained: its gradients are never computed, it has no optimizer
    /// state and no update.
    public var freezeFrontend = true
    /// The whole encoder is frozen for this many optimizer updates: only the CTC head trains.
    public var freezeUpdates = 0
}

/// How a rank computes. Not part of the model: checkpoints are interchangeable between
/// precisions and thread counts.
public struct ComputeConfig: Sendable, Equatable {
    /// fp32: every matrix product in f32. bf16: matrix products take bf16 operands with f32 accumulation;
    /// everything else (weights, gradients, optimizer state, norms, softmax, losses, all-reduces) stays f32.
    /// auto: bf16 when the CPU has native bf16 (avx512_bf16 or AMX), else fp32 (`PrecisionSetting.resolved`).
    public var precision: PrecisionSetting = .auto
    /// Threads inside a rank (0 = the CPUs this rank may run on; 1 under mpirun with a rank per core).
    public var threads = 0
}

/// `compute.precision`: a precision, or `auto` (bf16 where the CPU multiplies bf16 natively, fp32 elsewhere).
public enum PrecisionSetting: String, Sendable, CaseIterable {
    case auto, fp32, bf16
    public init(_ p: Precision) { self = p == .bf16 ? .bf16 : .fp32 }
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let message: String
    public init(_ key: String, _ message: String) {
        self.key = key
        self.message = message
    }
    public var description: String { "config key '\(key)': \(message)" }
}

public struct Config: Sendable, Equatable {
    public var data = DataConfig()
    public var model = ModelConfig()
    public var quantizer = QuantizerConfig()
    public var mask = MaskConfig()
    public var loss = LossConfig()
    public var optimizer = OptimizerConfig()
    public var train = TrainConfig()
    public var dist = DistConfig()
    public var codebook = CodebookConfig()
    public var adapter = AdapterConfig()
    public var finetune = FinetuneConfig()
    public var compute = ComputeConfig()

    public init() {}

    /// The base model is frozen (train.trainable = adapters): only adapter tensors get gradients,
    /// optimizer state and all-reduce.
    public var baseFrozen: Bool { train.trainable == .adapters }

    // MARK: Derived sizes

    /// Frames after the feature encoder for T0 input frames (fbank frames, series steps, tokens).
    public func encoderLength(t0: Int) -> Int {
        switch model.frontend {
        case .conv2d: return t0 < 7 ? 0 : ((t0 - 1) / 2 - 1) / 2
        case .stack, .embed: return t0 / model.stackFrames
        }
    }
    /// Values per input frame: 80 fbank bins (audio), data.channels (series), 1 token id (tokens).
    public var inputWidth: Int {
        switch data.kind {
        case .audio: return Config.melBins
        case .series: return data.channels
        case .tokens: return 1
        }
    }
    /// Log-mel bins of a fbank frame.
    public static let melBins = 80
    /// Frequency bins after the first stride-2 convolution: ⌊(80−3)/2⌋ + 1 = 39.
    public static let convFreq1 = (melBins - 3) / 2 + 1
    /// Frequency bins after the two stride-2 convolutions: ⌊(⌊(80−1)/2⌋ − 1)/2⌋ = 19.
    public static let convFreq = ((melBins - 1) / 2 - 1) / 2
    /// Values per encoder frame of the stack (k input frames side by side) and embed (k embeddings) front ends.
    public var stackedWidth: Int {
        model.stackFrames * (model.frontend == .embed ? model.frontendChannels : inputWidth)
    }
    /// The projection's input width.
    public var encoderInputDim: Int {
        model.frontend == .conv2d ? model.frontendChannels * Config.convFreq : stackedWidth
    }
    public var headDim: Int { model.dim / model.heads }

    /// τ for the optimizer update `step` (0-based).
    public func tau(step: Int) -> Float {
        Float(max(Double(quantizer.tauStart) * pow(quantizer.tauDecay, Double(step)), Double(quantizer.tauEnd)))
    }

    /// Learning rate for the optimizer update `step` (0-based); the schedule is evaluated at u = step + 1,
    /// so the first update does not get a zero rate.
    public func learningRate(step: Int) -> Float {
        let u = Double(step + 1), w = Double(max(optimizer.warmup, 1)), peak = Double(optimizer.lr)
        switch optimizer.schedule {
        case .transformer:
            return Float(peak * min(u / w, (w / u).squareRoot()))
        case .polynomial:
            if u <= w { return Float(peak * u / w) }
            let total = Double(optimizer.maxSteps)
            return Float(peak * max(0, (total - u) / max(total - w, 1)))
        case .triStage:
            return triStageRate(step: step)
        }
    }

    // MARK: Validation

    public func validate() throws {
        func check(_ ok: Bool, _ key: String, _ msg: String) throws { if !ok { throw ConfigError(key, msg) } }
        let m = model, q = quantizer
        try check(m.frontendChannels >= 1, "model.frontend_channels", "must be ≥ 1")
        try validateData()
        try check(m.dim >= 1, "model.dim", "must be ≥ 1")
        try check(m.heads >= 1, "model.heads", "must be ≥ 1")
        try check(m.dim % m.heads == 0, "model.heads", "heads (\(m.heads)) must divide model.dim (\(m.dim))")
        try check(
            m.position != .rope || (m.dim / m.heads) % 2 == 0, "model.heads",
            "rope needs an even head dim, got model.dim/model.heads = \(m.dim / m.heads)")
        try check(m.ffnDim >= 1, "model.ffn_dim", "must be ≥ 1")
        try check(m.convKernel >= 1, "model.conv_kernel", "must be ≥ 1")
        try check(m.contrastiveBlocks >= 1, "model.contrastive_blocks", "must be ≥ 1")
        try check(m.mlmBlocks >= 0, "model.mlm_blocks", "must be ≥ 0")
        if m.position == .conv {
            try check(m.posConvKernel >= 1, "model.pos_conv_kernel", "must be ≥ 1")
            try check(
                m.posConvGroups >= 1 && m.dim % m.posConvGroups == 0, "model.pos_conv_groups",
                "must be ≥ 1 and divide model.dim (\(m.dim))")
        }
        try check(m.shawLeft >= 0, "model.shaw_left", "must be ≥ 0")
        try check(m.shawRight >= 0, "model.shaw_right", "must be ≥ 0")
        try check(m.finalDim >= 1, "model.final_dim", "must be ≥ 1")
        try check(m.dropout >= 0 && m.dropout < 1, "model.dropout", "must be in [0, 1)")
        try check(m.layerDrop >= 0 && m.layerDrop < 1, "model.layer_drop", "must be in [0, 1)")
        try check(q.groups >= 1, "quantizer.groups", "must be ≥ 1")
        try check(q.entries >= 2, "quantizer.entries", "must be ≥ 2")
        try check(
            q.dim >= 1 && q.dim % q.groups == 0, "quantizer.dim",
            "must be ≥ 1 and divisible by quantizer.groups (\(q.groups))")
        try check(q.tauEnd > 0, "quantizer.tau_end", "must be > 0")
        try check(q.tauStart >= q.tauEnd, "quantizer.tau_start", "must be ≥ quantizer.tau_end")
        try check(q.tauDecay > 0 && q.tauDecay <= 1, "quantizer.tau_decay", "must be in (0, 1]")
        try check(mask.prob > 0 && mask.prob <= 1, "mask.prob", "must be in (0, 1]")
        try check(mask.span >= 1, "mask.span", "must be ≥ 1")
        try check(mask.minSpans >= 1, "mask.min_spans", "must be ≥ 1")
        try check(mask.randomStd >= 0, "mask.random_std", "must be ≥ 0")
        try check(loss.numNegatives >= 1, "loss.num_negatives", "must be ≥ 1")
        try check(loss.kappa > 0, "loss.kappa", "must be > 0")
        try check(loss.contrastiveWeight >= 0, "loss.contrastive_weight", "must be ≥ 0")
        try check(loss.mlmWeight >= 0, "loss.mlm_weight", "must be ≥ 0")
        try check(loss.diversityWeight >= 0, "loss.diversity_weight", "must be ≥ 0")
        try check(optimizer.lr > 0, "optimizer.lr", "must be > 0")
        try check(optimizer.warmup >= 0, "optimizer.warmup", "must be ≥ 0")
        try check(
            optimizer.betas.0 >= 0 && optimizer.betas.0 < 1 && optimizer.betas.1 >= 0 && optimizer.betas.1 < 1,
            "optimizer.betas", "each must be in [0, 1)")
        try check(optimizer.eps > 0, "optimizer.eps", "must be > 0")
        try check(optimizer.weightDecay >= 0, "optimizer.weight_decay", "must be ≥ 0")
        try check(optimizer.clipNorm >= 0, "optimizer.clip_norm", "must be ≥ 0 (0 disables clipping)")
        try check(
            optimizer.maxSteps >= 0, "optimizer.max_steps", "must be ≥ 0 (0: train writes the initial weights only)")
        try check(train.maxConsecutiveSkips >= 1, "train.max_consecutive_skips", "must be ≥ 1")
        try check(train.maxBadFraction >= 0 && train.maxBadFraction <= 1, "train.max_bad_fraction", "must be in [0, 1]")
        try check(train.validBatches >= 0, "train.valid_batches", "must be ≥ 0")
        try check(dist.timeout > 0, "dist.timeout", "must be > 0 seconds")
        try check(dist.fingerprintInterval >= 0, "dist.fingerprint_interval", "must be ≥ 0")
        try check(codebook.syncInterval >= 0, "codebook.sync_interval", "must be ≥ 0")
        try check(
            codebook.deadThreshold >= 0 && codebook.deadThreshold < 1, "codebook.dead_threshold",
            "must be in [0, 1)")
        if m.hypernetwork != .none {
            try check(m.hyperDim >= 1, "model.hyper_dim", "must be ≥ 1")
            try check(m.hyperRank >= 0, "model.hyper_rank", "must be ≥ 0")
            try check(
                adapter.kind == .none, "model.hypernetwork",
                "cannot be combined with adapter.kind = \(adapter.kind.rawValue)")
        }
        try validateTrain()
        try validateAdapters()
        try validateHead()
        try check(
            compute.threads >= 0 && compute.threads <= 256, "compute.threads",
            "must be in [0, 256] (0 = the CPUs this rank may use)")
    }
}

extension Config {
    /// The train section's sizes and intervals.
    func validateTrain() throws {
        func check(_ ok: Bool, _ key: String, _ msg: String) throws { if !ok { throw ConfigError(key, msg) } }
        try check(train.updateFreq >= 1, "train.update_freq", "must be ≥ 1")
        try check(train.maxFrames >= 7, "train.max_frames", "must be ≥ 7")
        try check(train.logInterval >= 1, "train.log_interval", "must be ≥ 1")
        try check(train.saveInterval >= 1, "train.save_interval", "must be ≥ 1")
        try check(train.validInterval >= 1, "train.valid_interval", "must be ≥ 1")
        try check(train.keepLast >= 1, "train.keep_last", "must be ≥ 1")
    }
}

extension Config {
    /// The adapter section and train.trainable.
    func validateAdapters() throws {
        func check(_ ok: Bool, _ key: String, _ msg: String) throws { if !ok { throw ConfigError(key, msg) } }
        if adapter.kind != .none {
            try check(adapter.rank >= 1, "adapter.rank", "must be ≥ 1")
            try check(adapter.alpha > 0, "adapter.alpha", "must be > 0")
            try check(
                !adapter.targets.isEmpty, "adapter.targets",
                "must name at least one Linear layer with adapter.kind = \(adapter.kind.rawValue)")
        }
        if adapter.isHyper {
            try check(adapter.speakerDim >= 1, "adapter.speaker_dim", "must be ≥ 1")
            try check(adapter.layerDim >= 1, "adapter.layer_dim", "must be ≥ 1")
            try check(
                adapter.speakers >= 0 && adapter.speakers <= 1_000_000, "adapter.speakers",
                "must be in [0, 1000000]")
        }
        try check(
            train.trainable == .all || adapter.kind != .none, "train.trainable",
            "'adapters' needs adapters (set adapter.kind, e.g. lora)")
    }
}

extension Config {
    /// model.head, model.vocab_size, model.final_dropout and the finetune section.
    func validateHead() throws {
        func check(_ ok: Bool, _ key: String, _ msg: String) throws { if !ok { throw ConfigError(key, msg) } }
        try validateFinetune()  // the schedules and the finetune section's freezing keys
        try check(model.finalDropout >= 0 && model.finalDropout < 1, "model.final_dropout", "must be in [0, 1)")
        try check(model.vocabSize >= 0, "model.vocab_size", "must be ≥ 0")
        let f = finetune
        try check(f.maskTimeProb >= 0 && f.maskTimeProb <= 1, "finetune.mask_time_prob", "must be in [0, 1]")
        try check(f.maskTimeSpan >= 1, "finetune.mask_time_span", "must be ≥ 1")
        try check(f.maskChannelProb >= 0 && f.maskChannelProb <= 1, "finetune.mask_channel_prob", "must be in [0, 1]")
        try check(f.maskChannelSpan >= 1, "finetune.mask_channel_span", "must be ≥ 1")
        guard model.head == .ctc else { return }
        try check(
            model.vocabSize > 1, "model.vocab_size",
            "must be > 1 with model.head ctc (the dictionary's size, blank included), got \(model.vocabSize)")
        try check(
            adapter.kind == .none, "model.head",
            "ctc cannot be combined with adapter.kind = \(adapter.kind.rawValue)")
        try check(
            model.hypernetwork == .none, "model.head",
            "ctc cannot be combined with model.hypernetwork = \(model.hypernetwork.rawValue)")
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        let trimmed: Set<Character> = [" ", "\t", "\n", "\r", "\"", "'"]
        while let f = s.first, trimmed.contains(f) { s = s.dropFirst() }
        while let l = s.last, trimmed.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
