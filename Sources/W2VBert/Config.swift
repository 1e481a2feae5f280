// Configuration of a W2V-BERT run (SPEC §3–§14): six YAML sections, `model`, `quantizer`, `mask`, `loss`,
// `optimizer`, `train`, with SPEC's key names. A config is a preset (tiny, small, base, xl) plus YAML files
// plus `--set section.key=value` overrides; every key goes through one table (`Config.keys`), so loading,
// overriding, validation messages and serialisation agree. Unknown keys and impossible values are errors
// that name the key.
//
// `train.lr` and `train.warmup` are aliases of `optimizer.lr` and `optimizer.warmup` (one stored value;
// the resolved YAML writes it under `optimizer` only).

import Tensor
import Yams

public enum Frontend: String, Sendable, CaseIterable { case conv2d, stack }
public enum Position: String, Sendable, CaseIterable { case conv, shaw, rope, none }
public enum Replacement: String, Sendable, CaseIterable { case random, learned }
public enum Schedule: String, Sendable, CaseIterable { case transformer, polynomial }
/// Hypernetwork layers (issue 13): which named weights of every block one shared generator produces.
public enum Hypernetwork: String, Sendable, CaseIterable {
    case none, ffn, ffnConv = "ffn+conv"
}
public enum AdapterKind: String, Sendable, CaseIterable { case none, lora }
public enum Trainable: String, Sendable, CaseIterable { case all, adapters }
/// A Linear layer of every Conformer block that can carry a LoRA adapter (`ffn.*` adapts both FFNs).
public enum AdapterTarget: String, Sendable, CaseIterable {
    case attnQ = "attn.q", attnK = "attn.k", attnV = "attn.v", attnOut = "attn.out"
    case ffnFc1 = "ffn.fc1", ffnFc2 = "ffn.fc2", convPw1 = "conv.pw1", convPw2 = "conv.pw2"
}

/// LoRA adapters on the Conformer blocks' Linear layers (issue 13): y += (α/r)·B(A x), A [r, in], B [out, r].
public struct AdapterConfig: Sendable, Equatable {
    public var kind: AdapterKind = .none
    public var rank = 8                     // r
    public var alpha: Float = 16            // α (scale α/r)
    public var targets: [AdapterTarget] = [.attnQ, .attnV]
    public var scale: Float { alpha / Float(rank) }
    public func adapts(_ t: AdapterTarget) -> Bool { kind != .none && targets.contains(t) }
}

public struct ModelConfig: Sendable, Equatable {
    public var frontend: Frontend = .conv2d
    public var frontendChannels = 32        // C
    /// LayerNorm(d) after the front-end projection (SPEC §3). Off in the Hugging Face family (`*2` presets).
    public var frontendNorm = true
    public var dim = 144                    // d
    public var heads = 4                    // h
    public var ffnDim = 576                 // f
    public var convKernel = 15              // depthwise k
    public var causalConv = false
    public var contrastiveBlocks = 2        // N
    public var mlmBlocks = 2                // M
    /// Linear(d → d) after masking (SPEC §1). Off in the Hugging Face family (`*2` presets).
    public var contextProj = true
    /// Hypernetwork layers (issue 13): `ffn` generates every block's fc1/fc2 weights of both FFNs, `ffn+conv`
    /// also pw1/pw2, as W_l = base + Σ_k e_l[k]·coef[k] (+ B_l·A_l) from a learned layer embedding e_l.
    public var hypernetwork: Hypernetwork = .none
    public var hyperDim = 2                 // E, the layer embedding's size
    public var hyperRank = 0                // rank of the optional per-layer residual B_l·A_l (0: none)
    public var position: Position = .conv
    public var posConvKernel = 32           // P
    public var posConvGroups = 4            // Gp
    public var shawLeft = 64                // Lp
    public var shawRight = 8                // Rp
    public var finalDim = 64
    public var dropout: Float = 0
    public var layerDrop: Float = 0
}

public struct QuantizerConfig: Sendable, Equatable {
    public var groups = 1                   // G
    public var entries = 128                // V
    public var dim = 128                    // D
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
    public var numNegatives = 100           // K
    public var kappa: Float = 0.1
    public var contrastiveWeight: Float = 1
    public var mlmWeight: Float = 1
    public var diversityWeight: Float = 0.2 // α
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
    public static func == (a: Self, b: Self) -> Bool {
        a.lr == b.lr && a.warmup == b.warmup && a.schedule == b.schedule && a.betas == b.betas && a.eps == b.eps
            && a.weightDecay == b.weightDecay && a.clipNorm == b.clipNorm && a.maxSteps == b.maxSteps
    }
}

public struct TrainConfig: Sendable, Equatable {
    public var updateFreq = 1
    public var maxFrames = 16_000           // padded fbank frames per micro-batch (B·T0max)
    public var maxSamples = 250_000         // random crop of longer utterances, 16 kHz samples (15.6 s)
    public var seed: UInt64 = 1
    public var logInterval = 10
    public var saveInterval = 1000
    public var validInterval = 1000
    public var keepLast = 5
    public var maxConsecutiveSkips = 5      // non-finite steps in a row before the run aborts (exit 76)
    public var maxBadFraction: Double = 0.01 // unreadable files (of a rank's share) before the run aborts
    public var validBatches = 0             // validation micro-batches per rank (0 = the whole valid set)
    public var trainable: Trainable = .all  // adapters: the base model is frozen (issue 13)
}

/// Data-parallel settings (ARCHITECTURE "Data-parallel step", "Rank 0: quantizer-codebook protocol").
public struct DistConfig: Sendable, Equatable {
    public enum OnDivergence: String, Sendable, CaseIterable { case abort, resync }
    public var timeout: Double = 600        // seconds before the collective watchdog aborts the job
    public var fingerprintInterval = 100    // steps between replica fingerprints (0 = never)
    public var onDivergence: OnDivergence = .abort
}

public struct CodebookConfig: Sendable, Equatable {
    public var syncInterval = 100           // steps per hard-count window (0 = no revival)
    public var deadThreshold: Double = 0.01 // a code is dead below this share of uniform use over the window
    public var revive = true
}

/// How a rank computes (issue 10). Not part of the model: checkpoints are interchangeable between
/// precisions and thread counts.
public struct ComputeConfig: Sendable, Equatable {
    /// fp32: every matrix product in f32. bf16: matrix products take bf16 operands with f32 accumulation;
    /// everything else (weights, gradients, optimizer state, norms, softmax, losses, all-reduces) stays f32.
    public var precision: Precision = .fp32
    /// Threads inside a rank (0 = the CPUs this rank may run on; 1 under mpirun with a rank per core).
    public var threads = 0
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let message: String
    public init(_ key: String, _ message: String) { self.key = key; self.message = message }
    public var description: String { "config key '\(key)': \(message)" }
}

public struct Config: Sendable, Equatable {
    public var model = ModelConfig()
    public var quantizer = QuantizerConfig()
    public var mask = MaskConfig()
    public var loss = LossConfig()
    public var optimizer = OptimizerConfig()
    public var train = TrainConfig()
    public var dist = DistConfig()
    public var codebook = CodebookConfig()
    public var adapter = AdapterConfig()
    public var compute = ComputeConfig()

    public init() {}

    /// The base model is frozen (train.trainable = adapters): only adapter tensors get gradients,
    /// optimizer state and all-reduce.
    public var baseFrozen: Bool { train.trainable == .adapters }

    // MARK: Derived sizes

    /// Frames after the feature encoder for T0 fbank frames (SPEC §3, §14.2).
    public func encoderLength(t0: Int) -> Int {
        switch model.frontend {
        case .conv2d: return t0 < 7 ? 0 : ((t0 - 1) / 2 - 1) / 2
        case .stack: return t0 / 2
        }
    }
    /// Log-mel bins of a fbank frame (SPEC §2).
    public static let melBins = 80
    /// Frequency bins after the first stride-2 convolution: ⌊(80−3)/2⌋ + 1 = 39.
    public static let convFreq1 = (melBins - 3) / 2 + 1
    /// Frequency bins after the two stride-2 convolutions: ⌊(⌊(80−1)/2⌋ − 1)/2⌋ = 19.
    public static let convFreq = ((melBins - 1) / 2 - 1) / 2
    /// Values per frame of the stack front end (two frames side by side).
    public static let stackedBins = 2 * melBins
    public var encoderInputDim: Int { model.frontend == .conv2d ? model.frontendChannels * Config.convFreq : Config.stackedBins }
    public var headDim: Int { model.dim / model.heads }

    /// τ for the optimizer update `step` (0-based; SPEC §7, §14.12).
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
        }
    }

    // MARK: Presets (SPEC §12, §14.13, §14.16)

    public static let presetNames = ["tiny", "small", "base", "xl", "tiny2", "small2", "base2", "w2v-bert-2.0"]

    /// The Hugging Face family (`Wav2Vec2BertModel` one to one; README "From pre-training to fine-tuning"):
    /// stack front end without the LayerNorm(d), no context projection, Shaw relative keys (64 left,
    /// 8 right), causal depthwise convolution, learned mask embedding (HF's `masked_spec_embed`).
    static func huggingFaceFamily(_ c: inout Config) {
        c.model.frontend = .stack; c.model.frontendNorm = false; c.model.contextProj = false
        c.model.position = .shaw; c.model.shawLeft = 64; c.model.shawRight = 8; c.model.causalConv = true
        c.mask.replacement = .learned
    }

    public static func preset(_ name: String) throws -> Config {
        var c = Config()
        func set(_ C: Int, _ d: Int, _ h: Int, _ f: Int, _ k: Int, _ n: Int, _ m: Int, _ v: Int, _ dq: Int, _ fin: Int) {
            c.model.frontendChannels = C; c.model.dim = d; c.model.heads = h; c.model.ffnDim = f
            c.model.convKernel = k; c.model.contrastiveBlocks = n; c.model.mlmBlocks = m
            c.quantizer.groups = 1; c.quantizer.entries = v; c.quantizer.dim = dq; c.model.finalDim = fin
        }
        if name.hasSuffix("2") || name == "w2v-bert-2.0" {
            // tiny2, small2, base2: the sizes and training settings of tiny, small, base in the HF family.
            // w2v-bert-2.0: transformers' Wav2Vec2BertConfig defaults (d 1024, 24 layers, 16 heads, f 4096,
            // k 31) split as fairseq2's w2v-BERT 600m: 8 contrastive + 16 MLM blocks, quantizer 1 × 1024,
            // D 1024, final 768, τ (2.0, 0.1, 0.999995); xl's optimiser settings.
            if name == "w2v-bert-2.0" {
                c = try preset("xl")
                set(c.model.frontendChannels, 1024, 16, 4096, 31, 8, 16, 1024, 1024, 768)
                c.loss.diversityWeight = 0.2
            } else {
                let base = String(name.dropLast())
                guard ["tiny", "small", "base"].contains(base) else {
                    throw ConfigError("preset", "unknown preset '\(name)' (expected one of \(presetNames.joined(separator: ", ")))")
                }
                c = try preset(base)
            }
            huggingFaceFamily(&c)
            try c.validate()
            return c
        }
        switch name {
        case "tiny":
            set(32, 144, 4, 576, 15, 2, 2, 128, 128, 64)
            c.model.posConvKernel = 32; c.model.posConvGroups = 4
            c.quantizer.tauStart = 2.0; c.quantizer.tauEnd = 0.5; c.quantizer.tauDecay = 0.999
            c.optimizer.clipNorm = 1.0; c.optimizer.lr = 1e-3; c.optimizer.warmup = 300; c.optimizer.maxSteps = 20_000
        case "small", "base", "xl":
            switch name {
            case "small":
                set(64, 256, 4, 1024, 15, 4, 4, 320, 256, 128)
                c.optimizer.lr = 1e-3; c.optimizer.warmup = 1000; c.optimizer.maxSteps = 100_000
            case "base":
                set(256, 512, 8, 2048, 31, 8, 8, 1024, 512, 256)
                c.optimizer.lr = 5e-4; c.optimizer.warmup = 10_000; c.optimizer.maxSteps = 400_000
            default:
                set(512, 1024, 8, 4096, 5, 12, 12, 1024, 1024, 768)
                c.optimizer.lr = 2e-3; c.optimizer.warmup = 25_000; c.optimizer.maxSteps = 400_000
                c.loss.diversityWeight = 0.1
            }
            c.model.posConvKernel = 128; c.model.posConvGroups = 16
            c.quantizer.tauStart = 2.0; c.quantizer.tauEnd = 0.1; c.quantizer.tauDecay = 0.999995
            c.optimizer.clipNorm = 10
        default:
            throw ConfigError("preset", "unknown preset '\(name)' (expected one of \(presetNames.joined(separator: ", ")))")
        }
        try c.validate()
        return c
    }

    // MARK: The key table

    struct Key {
        let name: String
        let get: (Config) -> String
        let set: (inout Config, String) throws -> Void
        let serialised: Bool
    }

    static func parseInt(_ key: String, _ s: String) throws -> Int {
        guard let v = Int(s.trimmingSpaces) else { throw ConfigError(key, "expected an integer, got '\(s)'") }
        return v
    }
    static func parseFloat(_ key: String, _ s: String) throws -> Float {
        guard let v = Float(s.trimmingSpaces), v.isFinite else { throw ConfigError(key, "expected a number, got '\(s)'") }
        return v
    }
    static func parseDouble(_ key: String, _ s: String) throws -> Double {
        guard let v = Double(s.trimmingSpaces), v.isFinite else { throw ConfigError(key, "expected a number, got '\(s)'") }
        return v
    }
    static func parseBool(_ key: String, _ s: String) throws -> Bool {
        switch s.trimmingSpaces.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ConfigError(key, "expected true or false, got '\(s)'")
        }
    }
    static func parseEnum<E: RawRepresentable & CaseIterable>(_ key: String, _ s: String) throws -> E where E.RawValue == String {
        guard let v = E(rawValue: s.trimmingSpaces) else {
            throw ConfigError(key, "expected one of \(E.allCases.map(\.rawValue).joined(separator: "|")), got '\(s)'")
        }
        return v
    }
    static func fmt(_ x: Float) -> String { "\(x)" }

    static func int(_ name: String, _ kp: WritableKeyPath<Config, Int>, serialised: Bool = true) -> Key {
        Key(name: name, get: { "\($0[keyPath: kp])" }, set: { $0[keyPath: kp] = try parseInt(name, $1) }, serialised: serialised)
    }
    static func float(_ name: String, _ kp: WritableKeyPath<Config, Float>, serialised: Bool = true) -> Key {
        Key(name: name, get: { fmt($0[keyPath: kp]) }, set: { $0[keyPath: kp] = try parseFloat(name, $1) }, serialised: serialised)
    }
    static func bool(_ name: String, _ kp: WritableKeyPath<Config, Bool>) -> Key {
        Key(name: name, get: { "\($0[keyPath: kp])" }, set: { $0[keyPath: kp] = try parseBool(name, $1) }, serialised: true)
    }
    static func choice<E: RawRepresentable & CaseIterable>(_ name: String, _ kp: WritableKeyPath<Config, E>) -> Key where E.RawValue == String {
        Key(name: name, get: { $0[keyPath: kp].rawValue }, set: { $0[keyPath: kp] = try parseEnum(name, $1) }, serialised: true)
    }

    // Immutable after initialisation; the closures capture only key paths.
    nonisolated(unsafe) static let keys: [Key] = [
        choice("model.frontend", \.model.frontend),
        int("model.frontend_channels", \.model.frontendChannels),
        bool("model.frontend_norm", \.model.frontendNorm),
        int("model.dim", \.model.dim),
        int("model.heads", \.model.heads),
        int("model.ffn_dim", \.model.ffnDim),
        int("model.conv_kernel", \.model.convKernel),
        bool("model.causal_conv", \.model.causalConv),
        int("model.contrastive_blocks", \.model.contrastiveBlocks),
        int("model.mlm_blocks", \.model.mlmBlocks),
        bool("model.context_proj", \.model.contextProj),
        choice("model.position", \.model.position),
        choice("model.hypernetwork", \.model.hypernetwork),
        int("model.hyper_dim", \.model.hyperDim),
        int("model.hyper_rank", \.model.hyperRank),
        int("model.pos_conv_kernel", \.model.posConvKernel),
        int("model.pos_conv_groups", \.model.posConvGroups),
        int("model.shaw_left", \.model.shawLeft),
        int("model.shaw_right", \.model.shawRight),
        int("model.final_dim", \.model.finalDim),
        float("model.dropout", \.model.dropout),
        float("model.layer_drop", \.model.layerDrop),

        int("quantizer.groups", \.quantizer.groups),
        int("quantizer.entries", \.quantizer.entries),
        int("quantizer.dim", \.quantizer.dim),
        float("quantizer.tau_start", \.quantizer.tauStart),
        float("quantizer.tau_end", \.quantizer.tauEnd),
        Key(name: "quantizer.tau_decay", get: { "\($0.quantizer.tauDecay)" },
            set: { $0.quantizer.tauDecay = try parseDouble("quantizer.tau_decay", $1) }, serialised: true),
        bool("quantizer.detach_targets", \.quantizer.detachTargets),

        float("mask.prob", \.mask.prob),
        int("mask.span", \.mask.span),
        int("mask.min_spans", \.mask.minSpans),
        choice("mask.replacement", \.mask.replacement),
        float("mask.random_std", \.mask.randomStd),

        int("loss.num_negatives", \.loss.numNegatives),
        float("loss.kappa", \.loss.kappa),
        float("loss.contrastive_weight", \.loss.contrastiveWeight),
        float("loss.mlm_weight", \.loss.mlmWeight),
        float("loss.diversity_weight", \.loss.diversityWeight),

        float("optimizer.lr", \.optimizer.lr),
        int("optimizer.warmup", \.optimizer.warmup),
        choice("optimizer.schedule", \.optimizer.schedule),
        Key(name: "optimizer.betas", get: { "[\(fmt($0.optimizer.betas.0)), \(fmt($0.optimizer.betas.1))]" },
            set: { c, s in
                let parts = s.filter { $0 != "[" && $0 != "]" }.split(separator: ",").map { String($0) }
                guard parts.count == 2 else { throw ConfigError("optimizer.betas", "expected two numbers [b1, b2], got '\(s)'") }
                c.optimizer.betas = (try parseFloat("optimizer.betas", parts[0]), try parseFloat("optimizer.betas", parts[1]))
            }, serialised: true),
        float("optimizer.eps", \.optimizer.eps),
        float("optimizer.weight_decay", \.optimizer.weightDecay),
        float("optimizer.clip_norm", \.optimizer.clipNorm),
        int("optimizer.max_steps", \.optimizer.maxSteps),

        int("train.update_freq", \.train.updateFreq),
        int("train.max_frames", \.train.maxFrames),
        int("train.max_samples", \.train.maxSamples),
        Key(name: "train.seed", get: { "\($0.train.seed)" }, set: { c, s in
            guard let v = UInt64(s.trimmingSpaces) else { throw ConfigError("train.seed", "expected a non-negative integer, got '\(s)'") }
            c.train.seed = v
        }, serialised: true),
        float("train.lr", \.optimizer.lr, serialised: false),
        int("train.warmup", \.optimizer.warmup, serialised: false),
        int("train.log_interval", \.train.logInterval),
        int("train.save_interval", \.train.saveInterval),
        int("train.valid_interval", \.train.validInterval),
        int("train.keep_last", \.train.keepLast),
        int("train.max_consecutive_skips", \.train.maxConsecutiveSkips),
        Key(name: "train.max_bad_fraction", get: { "\($0.train.maxBadFraction)" },
            set: { $0.train.maxBadFraction = try parseDouble("train.max_bad_fraction", $1) }, serialised: true),
        int("train.valid_batches", \.train.validBatches),
        choice("train.trainable", \.train.trainable),

        Key(name: "dist.timeout", get: { "\($0.dist.timeout)" },
            set: { $0.dist.timeout = try parseDouble("dist.timeout", $1) }, serialised: true),
        int("dist.fingerprint_interval", \.dist.fingerprintInterval),
        choice("dist.on_divergence", \.dist.onDivergence),

        int("codebook.sync_interval", \.codebook.syncInterval),
        Key(name: "codebook.dead_threshold", get: { "\($0.codebook.deadThreshold)" },
            set: { $0.codebook.deadThreshold = try parseDouble("codebook.dead_threshold", $1) }, serialised: true),
        bool("codebook.revive", \.codebook.revive),

        choice("adapter.kind", \.adapter.kind),
        int("adapter.rank", \.adapter.rank),
        float("adapter.alpha", \.adapter.alpha),
        Key(name: "adapter.targets", get: { "[" + $0.adapter.targets.map(\.rawValue).joined(separator: ", ") + "]" }, set: { c, s in
            let parts = s.filter { $0 != "[" && $0 != "]" }.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
            var out: [AdapterTarget] = []
            for p in parts {
                guard let t = AdapterTarget(rawValue: p) else {
                    throw ConfigError("adapter.targets", "unknown target '\(p)' (expected any of \(AdapterTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                if !out.contains(t) { out.append(t) }
            }
            c.adapter.targets = out
        }, serialised: true),

        choice("compute.precision", \.compute.precision),
        int("compute.threads", \.compute.threads),
    ]

    public static var keyNames: [String] { keys.map(\.name) }

    /// The value of `section.key` as a string (as it would be written in YAML).
    public func value(of key: String) throws -> String {
        guard let k = Config.keys.first(where: { $0.name == key }) else { throw Config.unknownKey(key) }
        return k.get(self)
    }

    static func unknownKey(_ key: String) -> ConfigError {
        let section = key.split(separator: ".").first.map(String.init) ?? key
        let known = Config.keys.filter { $0.name.hasPrefix(section + ".") }.map(\.name)
        return ConfigError(key, known.isEmpty ? "unknown section (expected model, quantizer, mask, loss, optimizer, train, dist, codebook, adapter, compute)"
                                              : "unknown key (known in '\(section)': \(known.joined(separator: ", ")))")
    }

    /// Sets one key from its string form, without validating the whole config.
    public mutating func set(_ key: String, _ value: String) throws {
        guard let k = Config.keys.first(where: { $0.name == key }) else { throw Config.unknownKey(key) }
        try k.set(&self, value)
    }

    /// Applies "section.key=value" overrides (the CLI's `--set`), then validates.
    public mutating func apply(overrides: [String]) throws {
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else { throw ConfigError(o, "override must look like section.key=value") }
            try set(String(o[..<eq]).trimmingSpaces, String(o[o.index(after: eq)...]))
        }
        try validate()
    }

    /// Applies a YAML document (sections of keys; an optional top-level `preset:` starts from that preset).
    public mutating func apply(yaml text: String) throws {
        // The node tree, walked here: Yams' `load` traps on a mapping key that is not a scalar (found by
        // fuzzing, issue 11), and only scalars and lists of scalars are config values anyway.
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw ConfigError("yaml", "cannot parse: \(error)") }
        guard let root else { return }
        guard case .mapping(let top) = root else { throw ConfigError("yaml", "top level must be a mapping of sections") }
        func name(_ n: Node, in context: String) throws -> String {
            guard case .scalar(let s) = n else { throw ConfigError(context, "keys must be plain names") }
            return s.string
        }
        var sections: [(name: String, body: Node)] = []
        for (k, v) in top { sections.append((try name(k, in: "yaml"), v)) }
        if let p = sections.last(where: { $0.name == "preset" }) {
            guard case .scalar(let s) = p.body else { throw ConfigError("preset", "must be a preset name") }
            self = try Config.preset(s.string)
        }
        // Sorted by name (stable: a repeated key's last value wins).
        for (section, body) in sections.enumerated().sorted(by: { ($0.element.name, $0.offset) < ($1.element.name, $1.offset) }).map({ $0.element })
        where section != "preset" {
            guard case .mapping(let map) = body else {
                throw ConfigError(section, Config.keys.contains { $0.name.hasPrefix(section + ".") }
                                  ? "section must be a mapping of keys" : "unknown section")
            }
            var keys: [(name: String, value: Node)] = []
            for (k, v) in map { keys.append((try name(k, in: section), v)) }
            for (k, v) in keys.enumerated().sorted(by: { ($0.element.name, $0.offset) < ($1.element.name, $1.offset) }).map({ $0.element }) {
                let value: String
                switch v {
                case .scalar(let s): value = s.string
                case .sequence(let seq):
                    value = try seq.map { item -> String in
                        guard case .scalar(let s) = item else { throw ConfigError("\(section).\(k)", "list items must be plain values") }
                        return s.string
                    }.joined(separator: ",")
                default: throw ConfigError("\(section).\(k)", "value must be a plain value or a list")
                }
                try set("\(section).\(k)", value)
            }
        }
        try validate()
    }

    /// A preset, then YAML documents in order, then overrides; validated.
    public static func load(preset: String = "tiny", yaml: [String] = [], overrides: [String] = []) throws -> Config {
        var c = try Config.preset(preset)
        for y in yaml { try c.apply(yaml: y) }
        try c.apply(overrides: overrides)
        return c
    }

    /// The resolved config as YAML (every key; reading it back gives the same config).
    public var yaml: String {
        var out = "# w2vbert resolved config (train.lr and train.warmup are aliases of optimizer.lr / optimizer.warmup)\n"
        var section = ""
        for k in Config.keys where k.serialised {
            let parts = k.name.split(separator: ".", maxSplits: 1).map(String.init)
            if parts[0] != section { section = parts[0]; out += "\(section):\n" }
            out += "  \(parts[1]): \(k.get(self))\n"
        }
        return out
    }

    // MARK: Validation

    public func validate() throws {
        func check(_ ok: Bool, _ key: String, _ msg: String) throws { if !ok { throw ConfigError(key, msg) } }
        let m = model, q = quantizer
        try check(m.frontendChannels >= 1, "model.frontend_channels", "must be ≥ 1")
        try check(m.dim >= 1, "model.dim", "must be ≥ 1")
        try check(m.heads >= 1, "model.heads", "must be ≥ 1")
        try check(m.dim % m.heads == 0, "model.heads", "heads (\(m.heads)) must divide model.dim (\(m.dim))")
        try check(m.position != .rope || (m.dim / m.heads) % 2 == 0, "model.heads",
                  "rope needs an even head dim, got model.dim/model.heads = \(m.dim / m.heads)")
        try check(m.ffnDim >= 1, "model.ffn_dim", "must be ≥ 1")
        try check(m.convKernel >= 1, "model.conv_kernel", "must be ≥ 1")
        try check(m.contrastiveBlocks >= 1, "model.contrastive_blocks", "must be ≥ 1")
        try check(m.mlmBlocks >= 0, "model.mlm_blocks", "must be ≥ 0")
        if m.position == .conv {
            try check(m.posConvKernel >= 1, "model.pos_conv_kernel", "must be ≥ 1")
            try check(m.posConvGroups >= 1 && m.dim % m.posConvGroups == 0, "model.pos_conv_groups",
                      "must be ≥ 1 and divide model.dim (\(m.dim))")
        }
        try check(m.shawLeft >= 0, "model.shaw_left", "must be ≥ 0")
        try check(m.shawRight >= 0, "model.shaw_right", "must be ≥ 0")
        try check(m.finalDim >= 1, "model.final_dim", "must be ≥ 1")
        try check(m.dropout >= 0 && m.dropout < 1, "model.dropout", "must be in [0, 1)")
        try check(m.layerDrop >= 0 && m.layerDrop < 1, "model.layer_drop", "must be in [0, 1)")
        try check(q.groups >= 1, "quantizer.groups", "must be ≥ 1")
        try check(q.entries >= 2, "quantizer.entries", "must be ≥ 2")
        try check(q.dim >= 1 && q.dim % q.groups == 0, "quantizer.dim", "must be ≥ 1 and divisible by quantizer.groups (\(q.groups))")
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
        try check(optimizer.betas.0 >= 0 && optimizer.betas.0 < 1 && optimizer.betas.1 >= 0 && optimizer.betas.1 < 1,
                  "optimizer.betas", "each must be in [0, 1)")
        try check(optimizer.eps > 0, "optimizer.eps", "must be > 0")
        try check(optimizer.weightDecay >= 0, "optimizer.weight_decay", "must be ≥ 0")
        try check(optimizer.clipNorm >= 0, "optimizer.clip_norm", "must be ≥ 0 (0 disables clipping)")
        try check(optimizer.maxSteps >= 1, "optimizer.max_steps", "must be ≥ 1")
        try check(optimizer.schedule != .polynomial || optimizer.maxSteps > optimizer.warmup, "optimizer.max_steps",
                  "must exceed optimizer.warmup for the polynomial schedule")
        try check(train.updateFreq >= 1, "train.update_freq", "must be ≥ 1")
        try check(train.maxFrames >= 7, "train.max_frames", "must be ≥ 7")
        try check(train.maxSamples >= 400, "train.max_samples", "must be ≥ 400 (one 25 ms fbank frame at 16 kHz)")
        try check(train.maxConsecutiveSkips >= 1, "train.max_consecutive_skips", "must be ≥ 1")
        try check(train.maxBadFraction >= 0 && train.maxBadFraction <= 1, "train.max_bad_fraction", "must be in [0, 1]")
        try check(train.validBatches >= 0, "train.valid_batches", "must be ≥ 0")
        try check(dist.timeout > 0, "dist.timeout", "must be > 0 seconds")
        try check(dist.fingerprintInterval >= 0, "dist.fingerprint_interval", "must be ≥ 0")
        try check(codebook.syncInterval >= 0, "codebook.sync_interval", "must be ≥ 0")
        try check(codebook.deadThreshold >= 0 && codebook.deadThreshold < 1, "codebook.dead_threshold", "must be in [0, 1)")
        try check(train.logInterval >= 1, "train.log_interval", "must be ≥ 1")
        try check(train.saveInterval >= 1, "train.save_interval", "must be ≥ 1")
        try check(train.validInterval >= 1, "train.valid_interval", "must be ≥ 1")
        try check(train.keepLast >= 1, "train.keep_last", "must be ≥ 1")
        if m.hypernetwork != .none {
            try check(m.hyperDim >= 1, "model.hyper_dim", "must be ≥ 1")
            try check(m.hyperRank >= 0, "model.hyper_rank", "must be ≥ 0")
            try check(adapter.kind == .none, "model.hypernetwork", "cannot be combined with adapter.kind = \(adapter.kind.rawValue)")
        }
        if adapter.kind != .none {
            try check(adapter.rank >= 1, "adapter.rank", "must be ≥ 1")
            try check(adapter.alpha > 0, "adapter.alpha", "must be > 0")
            try check(!adapter.targets.isEmpty, "adapter.targets", "must name at least one Linear layer with adapter.kind = \(adapter.kind.rawValue)")
        }
        try check(train.trainable == .all || adapter.kind != .none, "train.trainable",
                  "'adapters' needs adapters (set adapter.kind, e.g. lora)")
        try check(compute.threads >= 0 && compute.threads <= 256, "compute.threads", "must be in [0, 256] (0 = the CPUs this rank may use)")
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" || f == "\"" || f == "'" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" || l == "\"" || l == "'" { s = s.dropLast() }
        return String(s)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
