// The presets (README "From pre-training to fine-tuning" for the Hugging Face
// family).

extension Config {
    // MARK: Presets

    public static let presetNames = [
        "tiny", "small", "base", "xl", "tiny2", "small2", "base2", "w2v-bert-2.0", "series-tiny", "tokens-tiny",
    ]

    /// series-tiny and tokens-tiny: tiny's encoder for sequences other than speech (docs/sequences.md).
    /// series-tiny: the stack front end over 2 steps; crops of 1,024 steps. tokens-tiny: 32-wide token
    /// embeddings, 4 tokens per encoder frame (a 4-mer), crops of 2,048 tokens. Both: masks of 5-frame spans
    /// (short sequences), 16,384 input frames per micro-batch. data.channels and data.vocab_size come from
    /// the manifest.
    static func sequencePreset(_ name: String) throws -> Config {
        var c = try preset("tiny")
        if name == "series-tiny" {
            c.data.kind = .series
            c.model.frontend = .stack
            c.model.stackFrames = 2
            c.model.stackNorm = false
            c.train.maxSamples = 1024
        } else {
            c.data.kind = .tokens
            c.model.frontend = .embed
            c.model.frontendChannels = 32
            c.model.stackFrames = 4
            c.train.maxSamples = 2048
        }
        c.mask.span = 5
        c.train.maxFrames = 16_384
        try c.validate()
        return c
    }

    /// The Hugging Face family (`Wav2Vec2BertModel` one to one; README "From pre-training to fine-tuning"):
    /// stack front end without the LayerNorm(d), no context projection, Shaw relative keys (64 left,
    /// 8 right), causal depthwise convolution, learned mask embedding (HF's `masked_spec_embed`).
    static func huggingFaceFamily(_ c: inout Config) {
        c.model.frontend = .stack
        c.model.frontendNorm = false
        c.model.contextProj = false
        c.model.position = .shaw
        c.model.shawLeft = 64
        c.model.shawRight = 8
        c.model.causalConv = true
        c.mask.replacement = .learned
    }

    /// tiny2, small2, base2: the sizes and training settings of tiny, small, base in the HF family.
    /// w2v-bert-2.0: transformers' Wav2Vec2BertConfig defaults (d 1024, 24 layers, 16 heads, f 4096, k 31) split
    /// as fairseq2's w2v-BERT 600m: 8 contrastive + 16 MLM blocks, quantizer 1 × 1024, D 1024, final 768,
    /// τ (2.0, 0.1, 0.999995); xl's optimiser settings.
    static func huggingFacePreset(_ name: String) throws -> Config {
        var c: Config
        if name == "w2v-bert-2.0" {
            c = try preset("xl")
            c.model.dim = 1024
            c.model.heads = 16
            c.model.ffnDim = 4096
            c.model.convKernel = 31
            c.model.contrastiveBlocks = 8
            c.model.mlmBlocks = 16
            c.quantizer.groups = 1
            c.quantizer.entries = 1024
            c.quantizer.dim = 1024
            c.model.finalDim = 768
            c.loss.diversityWeight = 0.2
        } else {
            let base = String(name.dropLast())
            guard ["tiny", "small", "base"].contains(base) else {
                throw ConfigError(
                    "preset", "unknown preset '\(name)' (expected one of \(presetNames.joined(separator: ", ")))")
            }
            c = try preset(base)
        }
        huggingFaceFamily(&c)
        try c.validate()
        return c
    }

    public static func preset(_ name: String) throws -> Config {
        var c = Config()
        func set(_ C: Int, _ d: Int, _ h: Int, _ f: Int, _ k: Int, _ n: Int, _ m: Int, _ v: Int, _ dq: Int, _ fin: Int)
        {
            c.model.frontendChannels = C
            c.model.dim = d
            c.model.heads = h
            c.model.ffnDim = f
            c.model.convKernel = k
            c.model.contrastiveBlocks = n
            c.model.mlmBlocks = m
            c.quantizer.groups = 1
            c.quantizer.entries = v
            c.quantizer.dim = dq
            c.model.finalDim = fin
        }
        if name == "series-tiny" || name == "tokens-tiny" { return try sequencePreset(name) }
        if name.hasSuffix("2") || name == "w2v-bert-2.0" { return try huggingFacePreset(name) }
        switch name {
        case "tiny":
            set(32, 144, 4, 576, 15, 2, 2, 128, 128, 64)
            c.model.posConvKernel = 32
            c.model.posConvGroups = 4
            c.quantizer.tauStart = 2.0
            c.quantizer.tauEnd = 0.5
            c.quantizer.tauDecay = 0.999
            c.optimizer.clipNorm = 1.0
            c.optimizer.lr = 1e-3
            c.optimizer.warmup = 300
            c.optimizer.maxSteps = 20_000
        case "small", "base", "xl":
            switch name {
            case "small":
                set(64, 256, 4, 1024, 15, 4, 4, 320, 256, 128)
                c.optimizer.lr = 1e-3
                c.optimizer.warmup = 1000
                c.optimizer.maxSteps = 100_000
            case "base":
                set(256, 512, 8, 2048, 31, 8, 8, 1024, 512, 256)
                c.optimizer.lr = 5e-4
                c.optimizer.warmup = 10_000
                c.optimizer.maxSteps = 400_000
            default:
                set(512, 1024, 8, 4096, 5, 12, 12, 1024, 1024, 768)
                c.optimizer.lr = 2e-3
                c.optimizer.warmup = 25_000
                c.optimizer.maxSteps = 400_000
                c.loss.diversityWeight = 0.1
            }
            c.model.posConvKernel = 128
            c.model.posConvGroups = 16
            c.quantizer.tauStart = 2.0
            c.quantizer.tauEnd = 0.1
            c.quantizer.tauDecay = 0.999995
            c.optimizer.clipNorm = 10
        default:
            throw ConfigError(
                "preset", "unknown preset '\(name)' (expected one of \(presetNames.joined(separator: ", ")))")
        }
        try c.validate()
        return c
    }
}
