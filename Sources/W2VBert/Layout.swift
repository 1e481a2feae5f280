// ParameterLayout: every parameter of a config, named and shaped per docs/method.md (PyTorch layouts), at an
// offset into ONE contiguous Float buffer. Gradients and Adam moments use the same offsets, so the
// optimizer, all-reduce, clipping and checkpoints are each one pass over a buffer.

import Tensor

/// How a tensor is initialised.
public enum ParameterInit: Sendable, Equatable {
    case zeros, ones
    case normal(std: Float)
    case uniform(low: Float, high: Float)
    /// PyTorch's default for convolutions: Kaiming-uniform with a = √5, i.e. U(±1/√fan_in).
    case kaiming(fanIn: Int)
    /// N(0, std²) except the last `zeroTail` values, zeros (e.g. a table whose last row stands for "unknown").
    case normalZeroTail(std: Float, zeroTail: Int)
}

public struct ParameterEntry: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    public let initialization: ParameterInit
    /// Weight decay applies (docs/method.md: Linear and conv weights and quantizer.proj.weight).
    public let decay: Bool
}

public struct ParameterLayout: Sendable {
    public private(set) var entries: [ParameterEntry] = []
    public private(set) var count = 0
    private var index: [String: Int] = [:]

    public init(config c: Config) {
        let m = c.model, q = c.quantizer
        let d = m.dim, gv = q.groups * q.entries
        addInput(c)
        // The model options (Options/): their tensors at the end of every block and after the blocks.
        let options = ModelOptions.active(c)
        for (module, n) in [("contrastive", m.contrastiveBlocks), ("mlm", m.mlmBlocks)] {
            for i in 0..<n { addBlock("\(module).blocks.\(i)", c, options: options) }
        }
        for o in options {
            for spec in o.sharedParameters { add(spec) }
        }
        // Head ctc: the encoder above and a Linear layer to the vocabulary (HF Wav2Vec2BertForCTC's lm_head);
        // no quantizer, contrastive or MLM head.
        if m.head == .ctc {
            linear("ctc_head", out: m.vocabSize, in: d)
            return
        }
        add("quantizer.proj.weight", [gv, d], .normal(std: 1 / Float(d).squareRoot()), decay: true)
        add("quantizer.proj.bias", [gv], .zeros, decay: false)
        add("quantizer.codebook", [gv, q.dim / q.groups], .uniform(low: 0, high: 1), decay: false)
        linear("contrastive_head.context", out: m.finalDim, in: d)
        linear("contrastive_head.target", out: m.finalDim, in: q.dim)
        linear("mlm_head", out: gv, in: d)
    }

    private mutating func linear(_ name: String, out: Int, in inDim: Int, bias: Bool = true) {
        add(name + ".weight", [out, inDim], .normal(std: 0.02), decay: true)
        if bias { add(name + ".bias", [out], .zeros, decay: false) }
    }

    private mutating func norm(_ name: String, _ n: Int) {
        add(name + ".weight", [n], .ones, decay: false)
        add(name + ".bias", [n], .zeros, decay: false)
    }

    /// Feature encoder, mask embedding, context projection, positional convolution.
    private mutating func addInput(_ c: Config) {
        let m = c.model, d = m.dim
        switch m.frontend {
        case .conv2d:
            let C = m.frontendChannels
            add("feature_encoder.conv1.weight", [C, 1, 3, 3], .kaiming(fanIn: 9), decay: true)
            add("feature_encoder.conv1.bias", [C], .zeros, decay: false)
            add("feature_encoder.conv2.weight", [C, C, 3, 3], .kaiming(fanIn: C * 9), decay: true)
            add("feature_encoder.conv2.bias", [C], .zeros, decay: false)
            linear("feature_encoder.proj", out: d, in: C * Config.convFreq)
        case .stack:
            if m.stackNorm { norm("feature_encoder.stack_norm", c.stackedWidth) }
            linear("feature_encoder.proj", out: d, in: c.stackedWidth)
        case .embed:
            // Like torch.nn.Embedding: N(0, 1), no weight decay.
            add(
                "feature_encoder.embedding.weight", [c.data.vocabSize, m.frontendChannels], .normal(std: 1),
                decay: false)
            linear("feature_encoder.proj", out: d, in: c.stackedWidth)
        }
        if m.frontendNorm { norm("feature_encoder.norm", d) }
        if c.mask.replacement == .learned { add("mask_embedding", [d], .uniform(low: 0, high: 1), decay: false) }
        if m.contextProj { linear("context_proj", out: d, in: d) }
        if m.position == .conv {
            let cg = d / m.posConvGroups
            add("pos_conv.weight", [d, cg, m.posConvKernel], .kaiming(fanIn: cg * m.posConvKernel), decay: true)
            add("pos_conv.bias", [d], .zeros, decay: false)
        }
    }

    /// One Conformer block `p`, then the options' tensors of the block.
    private mutating func addBlock(_ p: String, _ c: Config, options: [any ModelOption]) {
        let m = c.model, d = m.dim, f = m.ffnDim
        /// A block Linear's weight, unless an option generates it; `bias` false: no bias.
        func blockLinear(
            _ site: String, out: Int, in inDim: Int, bias: Bool = true,
            initialization: ParameterInit = .normal(std: 0.02)
        ) {
            if !options.contains(where: { $0.generatesWeight(site: site) }) {
                add("\(p).\(site).weight", [out, inDim], initialization, decay: true)
            }
            if bias { add("\(p).\(site).bias", [out], .zeros, decay: false) }
        }
        norm("\(p).ffn1.norm", d)
        blockLinear("ffn1.fc1", out: f, in: d)
        blockLinear("ffn1.fc2", out: d, in: f)
        norm("\(p).attn.norm", d)
        for w in ["q", "k", "v", "out"] { blockLinear("attn.\(w)", out: d, in: d) }
        if m.position == .shaw {
            add("\(p).attn.rel_key", [m.shawLeft + m.shawRight + 1, d / m.heads], .normal(std: 0.02), decay: false)
        }
        norm("\(p).conv.norm", d)
        blockLinear("conv.pw1", out: 2 * d, in: d, bias: false, initialization: .kaiming(fanIn: d))
        add("\(p).conv.dw.weight", [d, m.convKernel], .kaiming(fanIn: m.convKernel), decay: true)
        norm("\(p).conv.dw_norm", d)
        blockLinear("conv.pw2", out: d, in: d, bias: false, initialization: .kaiming(fanIn: d))
        norm("\(p).ffn2.norm", d)
        blockLinear("ffn2.fc1", out: f, in: d)
        blockLinear("ffn2.fc2", out: d, in: f)
        norm("\(p).norm", d)
        // Last in the block, so a block's option tensors (e.g. its adapters) are one contiguous range.
        for o in options {
            for spec in o.blockParameters(block: p) { add(spec) }
        }
    }

    private mutating func add(_ spec: ParameterSpec) {
        add(spec.name, spec.shape, spec.initialization, decay: spec.decay)
    }

    private mutating func add(_ name: String, _ shape: [Int], _ initialization: ParameterInit, decay: Bool) {
        precondition(index[name] == nil, "duplicate parameter \(name)")
        // Offsets aligned to 16 floats (64 bytes) so every tensor starts on a cache line.
        let offset = (count + 15) / 16 * 16
        let e = ParameterEntry(name: name, shape: shape, offset: offset, initialization: initialization, decay: decay)
        index[name] = entries.count
        entries.append(e)
        count = offset + e.count
    }

    /// An adapter tensor (trained with train.trainable = adapters; absent from a plain model): a tensor of
    /// an adapter option (ModelOptions).
    public static func isAdapter(_ name: String) -> Bool { ModelOptions.isAdapterTensor(name) }

    /// Number of adapter parameters.
    public var adapterParameterCount: Int {
        entries.filter { ParameterLayout.isAdapter($0.name) }.reduce(0) { $0 + $1.count }
    }

    /// Float ranges of the layout the optimizer updates, in layout order: everything, or (base frozen)
    /// each block's adapter range (first adapter tensor to the block's end, padding included).
    public func trainableRanges(_ c: Config) -> [Range<Int>] {
        guard c.baseFrozen else { return [0..<count] }
        var out: [Range<Int>] = []
        var i = 0
        while i < entries.count {
            guard ParameterLayout.isAdapter(entries[i].name) else {
                i += 1
                continue
            }
            var j = i
            while j + 1 < entries.count && ParameterLayout.isAdapter(entries[j + 1].name) { j += 1 }
            out.append(entries[i].offset..<(j + 1 < entries.count ? entries[j + 1].offset : count))
            i = j + 1
        }
        return out
    }

    /// Number of parameters (excluding alignment padding).
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.count } }

    public subscript(name: String) -> ParameterEntry? { index[name].map { entries[$0] } }

    public func entry(_ name: String) -> ParameterEntry {
        guard let i = index[name] else { preconditionFailure("no parameter named \(name)") }
        return entries[i]
    }

    /// Fills `params` (layout.count floats) as docs/method.md says: each tensor from its own stream
    /// RandomStream(seed, step 0, micro-batch = FNV-1a hash of its name, purpose .initialization), so
    /// adding a tensor does not change the others. Padding between tensors is zeroed.
    public func initialize(_ params: FPtr, seed: UInt64) {
        params.update(repeating: 0, count: count)
        for e in entries {
            let stream = Int(ParameterLayout.nameHash(e.name))
            var rng = RandomStream(seed: seed, step: 0, microBatch: stream, purpose: .initialization)
            let p = params + e.offset
            switch e.initialization {
            case .zeros: p.update(repeating: 0, count: e.count)
            case .ones: p.update(repeating: 1, count: e.count)
            case .normal(let std): rng.fillNormal(p, e.count, std: std)
            case .uniform(let lo, let hi): rng.fillUniform(p, e.count, low: lo, high: hi)
            case .kaiming(let fanIn):
                let bound = 1 / Float(fanIn).squareRoot()
                rng.fillUniform(p, e.count, low: -bound, high: bound)
            case .normalZeroTail(let std, let tail):
                rng.fillNormal(p, e.count - tail, std: std)
                (p + e.count - tail).update(repeating: 0, count: tail)
            }
        }
    }

    /// 32-bit FNV-1a of a UTF-8 name.
    public static func nameHash(_ s: String) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in s.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return h
    }
}
