// The key table: every config key once, with its parser and serialiser, so loading YAML, `--set`
// overrides, `config --keys`, error messages and the resolved YAML agree.

import Yams

extension Config {
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
        guard let v = Float(s.trimmingSpaces), v.isFinite else {
            throw ConfigError(key, "expected a number, got '\(s)'")
        }
        return v
    }
    static func parseDouble(_ key: String, _ s: String) throws -> Double {
        guard let v = Double(s.trimmingSpaces), v.isFinite else {
            throw ConfigError(key, "expected a number, got '\(s)'")
        }
        return v
    }
    static func parseBool(_ key: String, _ s: String) throws -> Bool {
        switch s.trimmingSpaces.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ConfigError(key, "expected true or false, got '\(s)'")
        }
    }
    static func parseEnum<E: RawRepresentable & CaseIterable>(_ key: String, _ s: String) throws -> E
    where E.RawValue == String {
        guard let v = E(rawValue: s.trimmingSpaces) else {
            throw ConfigError(key, "expected one of \(E.allCases.map(\.rawValue).joined(separator: "|")), got '\(s)'")
        }
        return v
    }
    static func fmt(_ x: Float) -> String { "\(x)" }

    static func int(_ name: String, _ kp: WritableKeyPath<Config, Int>, serialised: Bool = true) -> Key {
        Key(
            name: name, get: { "\($0[keyPath: kp])" }, set: { $0[keyPath: kp] = try parseInt(name, $1) },
            serialised: serialised)
    }
    static func float(_ name: String, _ kp: WritableKeyPath<Config, Float>, serialised: Bool = true) -> Key {
        Key(
            name: name, get: { fmt($0[keyPath: kp]) }, set: { $0[keyPath: kp] = try parseFloat(name, $1) },
            serialised: serialised)
    }
    static func bool(_ name: String, _ kp: WritableKeyPath<Config, Bool>) -> Key {
        Key(
            name: name, get: { "\($0[keyPath: kp])" }, set: { $0[keyPath: kp] = try parseBool(name, $1) },
            serialised: true)
    }
    /// A list of numbers, written `[a, b, …]` (each Float's shortest exact form, so it reads back bit for bit).
    static func floats(_ name: String, _ kp: WritableKeyPath<Config, [Float]>) -> Key {
        Key(
            name: name, get: { "[" + $0[keyPath: kp].map { "\($0)" }.joined(separator: ", ") + "]" },
            set: { c, s in
                let parts = s.filter { $0 != "[" && $0 != "]" }.split(separator: ",").map(String.init)
                    .filter { !$0.trimmingSpaces.isEmpty }
                c[keyPath: kp] = try parts.map { try parseFloat(name, $0) }
            }, serialised: true)
    }
    static func choice<E: RawRepresentable & CaseIterable>(_ name: String, _ kp: WritableKeyPath<Config, E>) -> Key
    where E.RawValue == String {
        Key(
            name: name, get: { $0[keyPath: kp].rawValue }, set: { $0[keyPath: kp] = try parseEnum(name, $1) },
            serialised: true)
    }

    // Immutable after initialisation; the closures capture only key paths.
    nonisolated(unsafe) static let keys: [Key] = [
        choice("data.kind", \.data.kind),
        int("data.channels", \.data.channels),
        int("data.vocab_size", \.data.vocabSize),
        Key(
            name: "data.rate", get: { "\($0.data.rate)" }, set: { $0.data.rate = try parseDouble("data.rate", $1) },
            serialised: true),
        Key(
            name: "data.columns", get: { "[" + $0.data.columns.joined(separator: ", ") + "]" },
            set: { c, s in
                c.data.columns = s.filter { $0 != "[" && $0 != "]" }.split(separator: ",")
                    .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            }, serialised: true),
        floats("data.mean", \.data.mean),
        floats("data.std", \.data.std),
        choice("model.frontend", \.model.frontend),
        int("model.frontend_channels", \.model.frontendChannels),
        int("model.stack_frames", \.model.stackFrames),
        bool("model.frontend_norm", \.model.frontendNorm),
        bool("model.stack_norm", \.model.stackNorm),
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
        choice("model.head", \.model.head),
        int("model.vocab_size", \.model.vocabSize),
        float("model.final_dropout", \.model.finalDropout),

        int("quantizer.groups", \.quantizer.groups),
        int("quantizer.entries", \.quantizer.entries),
        int("quantizer.dim", \.quantizer.dim),
        float("quantizer.tau_start", \.quantizer.tauStart),
        float("quantizer.tau_end", \.quantizer.tauEnd),
        Key(
            name: "quantizer.tau_decay", get: { "\($0.quantizer.tauDecay)" },
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
        Key(
            name: "optimizer.betas", get: { "[\(fmt($0.optimizer.betas.0)), \(fmt($0.optimizer.betas.1))]" },
            set: { c, s in
                let parts = s.filter { $0 != "[" && $0 != "]" }.split(separator: ",").map { String($0) }
                guard parts.count == 2 else {
                    throw ConfigError("optimizer.betas", "expected two numbers [b1, b2], got '\(s)'")
                }
                c.optimizer.betas = (
                    try parseFloat("optimizer.betas", parts[0]), try parseFloat("optimizer.betas", parts[1])
                )
            }, serialised: true),
        float("optimizer.eps", \.optimizer.eps),
        float("optimizer.weight_decay", \.optimizer.weightDecay),
        float("optimizer.clip_norm", \.optimizer.clipNorm),
        int("optimizer.max_steps", \.optimizer.maxSteps),
        Key(
            name: "optimizer.tri_stage_ratios",
            get: { "[" + $0.optimizer.triStageRatios.map { "\($0)" }.joined(separator: ", ") + "]" },
            set: { c, s in
                let parts = s.filter { $0 != "[" && $0 != "]" }.split(separator: ",").map { String($0) }
                guard parts.count == 3 else {
                    throw ConfigError(
                        "optimizer.tri_stage_ratios", "expected three numbers [warm-up, hold, decay], got '\(s)'")
                }
                c.optimizer.triStageRatios = try parts.map { try parseDouble("optimizer.tri_stage_ratios", $0) }
            }, serialised: true),
        float("optimizer.init_lr_scale", \.optimizer.initLrScale),
        float("optimizer.final_lr_scale", \.optimizer.finalLrScale),

        int("train.update_freq", \.train.updateFreq),
        int("train.max_frames", \.train.maxFrames),
        int("train.max_samples", \.train.maxSamples),
        bool("train.balance_steps", \.train.balanceSteps),
        Key(
            name: "train.seed", get: { "\($0.train.seed)" },
            set: { c, s in
                guard let v = UInt64(s.trimmingSpaces) else {
                    throw ConfigError("train.seed", "expected a non-negative integer, got '\(s)'")
                }
                c.train.seed = v
            }, serialised: true),
        float("train.lr", \.optimizer.lr, serialised: false),
        int("train.warmup", \.optimizer.warmup, serialised: false),
        int("train.log_interval", \.train.logInterval),
        int("train.save_interval", \.train.saveInterval),
        int("train.valid_interval", \.train.validInterval),
        int("train.keep_last", \.train.keepLast),
        int("train.max_consecutive_skips", \.train.maxConsecutiveSkips),
        Key(
            name: "train.max_bad_fraction", get: { "\($0.train.maxBadFraction)" },
            set: { $0.train.maxBadFraction = try parseDouble("train.max_bad_fraction", $1) }, serialised: true),
        int("train.valid_batches", \.train.validBatches),
        choice("train.trainable", \.train.trainable),
        choice("train.checkpoint_activations", \.train.checkpointActivations),

        Key(
            name: "dist.timeout", get: { "\($0.dist.timeout)" },
            set: { $0.dist.timeout = try parseDouble("dist.timeout", $1) }, serialised: true),
        int("dist.fingerprint_interval", \.dist.fingerprintInterval),
        choice("dist.on_divergence", \.dist.onDivergence),

        int("codebook.sync_interval", \.codebook.syncInterval),
        Key(
            name: "codebook.dead_threshold", get: { "\($0.codebook.deadThreshold)" },
            set: { $0.codebook.deadThreshold = try parseDouble("codebook.dead_threshold", $1) }, serialised: true),
        bool("codebook.revive", \.codebook.revive),

        choice("adapter.kind", \.adapter.kind),
        int("adapter.rank", \.adapter.rank),
        float("adapter.alpha", \.adapter.alpha),
        choice("adapter.speaker", \.adapter.speaker),
        int("adapter.speakers", \.adapter.speakers),
        int("adapter.speaker_dim", \.adapter.speakerDim),
        int("adapter.layer_dim", \.adapter.layerDim),
        Key(
            name: "adapter.targets", get: { "[" + $0.adapter.targets.map(\.rawValue).joined(separator: ", ") + "]" },
            set: { c, s in
                let parts = s.filter { $0 != "[" && $0 != "]" }.split(separator: ",").map { String($0).trimmingSpaces }
                    .filter { !$0.isEmpty }
                var out: [AdapterTarget] = []
                for p in parts {
                    guard let t = AdapterTarget(rawValue: p) else {
                        throw ConfigError(
                            "adapter.targets",
                            "unknown target '\(p)' (expected any "
                                + "of \(AdapterTarget.allCases.map(\.rawValue).joined(separator: ", ")))"
                        )
                    }
                    if !out.contains(t) { out.append(t) }
                }
                c.adapter.targets = out
            }, serialised: true),

        float("finetune.mask_time_prob", \.finetune.maskTimeProb),
        int("finetune.mask_time_span", \.finetune.maskTimeSpan),
        float("finetune.mask_channel_prob", \.finetune.maskChannelProb),
        int("finetune.mask_channel_span", \.finetune.maskChannelSpan),
        int("finetune.freeze_updates", \.finetune.freezeUpdates),
        bool("finetune.freeze_frontend", \.finetune.freezeFrontend),

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
        return ConfigError(
            key,
            known.isEmpty
                ? "unknown section (expected data, model, quantizer, mask, loss, optimizer, train, dist, codebook, "
                    + "adapter, "
                    + "finetune, compute)"
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
            guard let eq = o.firstIndex(of: "=") else {
                throw ConfigError(o, "override must look like section.key=value")
            }
            try set(String(o[..<eq]).trimmingSpaces, String(o[o.index(after: eq)...]))
        }
        try validate()
    }

    /// Applies a YAML document (sections of keys; an optional top-level `preset:` starts from that preset).
    public mutating func apply(yaml text: String) throws {
        // The node tree, walked here: Yams' `load` traps on a mapping key that is not a scalar (found by
        // fuzzing), and only scalars and lists of scalars are config values anyway.
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw ConfigError("yaml", "cannot parse: \(error)") }
        guard let root else { return }
        guard case .mapping(let top) = root else {
            throw ConfigError("yaml", "top level must be a mapping of sections")
        }
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
        for (section, body) in sections.enumerated().sorted(by: {
            ($0.element.name, $0.offset) < ($1.element.name, $1.offset)
        }).map({ $0.element })
        where section != "preset" {
            guard case .mapping(let map) = body else {
                throw ConfigError(
                    section,
                    Config.keys.contains { $0.name.hasPrefix(section + ".") }
                        ? "section must be a mapping of keys" : "unknown section")
            }
            var keys: [(name: String, value: Node)] = []
            for (k, v) in map { keys.append((try name(k, in: section), v)) }
            for (k, v) in keys.enumerated().sorted(by: { ($0.element.name, $0.offset) < ($1.element.name, $1.offset) })
                .map({ $0.element })
            {
                let value: String
                switch v {
                case .scalar(let s): value = s.string
                case .sequence(let seq):
                    value = try seq.map { item -> String in
                        guard case .scalar(let s) = item else {
                            throw ConfigError("\(section).\(k)", "list items must be plain values")
                        }
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
        var out =
            "# w2vbert resolved config (train.lr and train.warmup are aliases of optimizer.lr / optimizer.warmup)\n"
        var section = ""
        for k in Config.keys where k.serialised {
            let parts = k.name.split(separator: ".", maxSplits: 1).map(String.init)
            if parts[0] != section {
                section = parts[0]
                out += "\(section):\n"
            }
            out += "  \(parts[1]): \(k.get(self))\n"
        }
        return out
    }
}
