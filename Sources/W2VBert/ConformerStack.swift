// The Conformer stack: N contrastive blocks, then M MLM blocks, with layer drop (a dropped
// block passes its input through) drawn per step so every rank drops the same blocks. The contrastive
// loss reads the last contrastive block's output c, the MLM loss the last MLM block's output m.
// Backward runs the blocks in reverse: the MLM loss's gradient enters at m, the contrastive loss's at c.
// With train.checkpoint_activations = blocks every block's activations share one region of the arena and only
// the block outputs are kept: backward first runs block i's forward again from its input (the previous
// block's output) with the dropout source as it stood before block i, so every activation, mask and gradient
// is bit-identical to keeping them all.

import Tensor

struct ConformerStack {
    let contrastive: [ConformerBlock]
    let mlm: [ConformerBlock]
    let scratch: BlockScratch
    let dCur: FPtr  // [N, d] gradient of the residual stream between blocks
    let position: AttentionPosition
    let heads, d: Int
    let memory: AttentionMemory
    var dropped: [Bool]
    /// The model options' runtime parts (Options/), called at fixed points of forward and backward.
    let extensions: BlockExtensions
    /// Activation checkpointing: the blocks share their activations' memory (see the top of the file).
    let checkpointing: Bool
    let replay = BlockReplay()
    /// Where the stack's scratch, gradients and block activations start in the arena (an earlier `used`): all
    /// of it is free before the blocks' forward and after their backward, so the feature encoder carves its
    /// workspace over it (`Arena.carve(over:)`).
    let sharedMark: Int

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        let n = cap.n, d = c.model.dim
        switch c.model.position {
        case .shaw: position = .shaw(left: c.model.shawLeft, right: c.model.shawRight)
        case .rope: position = .rope
        default: position = .none
        }
        heads = c.model.heads
        self.d = d
        // Attention: rotated q, k with RoPE, the probabilities only for short utterances (see
        // `attentionMemory`); a workspace per thread, Shaw's dE per (utterance, head) pair.
        memory = ConformerStack.attentionMemory(c, t: cap.t)
        let shape = AttentionShape(b: 1, t: cap.t, d: d, heads: heads, position: position, memory: memory)
        let rope = position == .rope ? 2 * n * d : 0
        let saved = (memory == .probabilities ? heads * n * cap.t : 0) + rope
        let relParts = cap.batch * shape.relCount * d
        let options = ModelOptions.active(c)
        let shaw = c.model.position == .shaw
        let names =
            (0..<c.model.contrastiveBlocks).map { "contrastive.blocks.\($0)" }
            + (0..<c.model.mlmBlocks).map { "mlm.blocks.\($0)" }
        // The options' parts first: they hold per-step state (e.g. generated weights) outside the shared region.
        let parts = ExtensionParts(
            layout: l, params: p, grads: g, arena: a, config: c, maxBatch: cap.batch,
            blockNames: names)
        let extensions = BlockExtensions(all: options.map { $0.makeExtension(parts) })
        self.extensions = extensions
        sharedMark = a.used
        scratch = BlockScratch(
            a, n: n, d: d, f: c.model.ffnDim, k: c.model.convKernel,
            attWork: shape.perThreadWorkspace * a.compute.threads + rope + relParts,
            rank: options.map(\.branchScratch).max() ?? 0)
        dCur = a.take(n * d)
        // Block outputs first (always kept); then each block's activations, from one mark when they are shared.
        let outputs = names.map { _ in a.take(n * d) }
        let sharing = c.train.checkpointActivations == .blocks
        checkpointing = sharing
        let mark = a.used
        var end = mark
        let keep = memory == .probabilities
        let blocks = names.enumerated().map { i, name -> ConformerBlock in
            var bc = BlockConfig(c)
            bc.block = i
            bc.extensions = extensions
            bc.keepNormOutputs = keep
            if sharing { a.rewind(to: mark) }
            let block = ConformerBlock(
                l, name, p, g, a, n: n, c: bc, shaw: shaw, savedCount: saved, output: outputs[i])
            end = max(end, a.used)
            return block
        }
        if a.used < end { _ = a.take(end - a.used) }
        contrastive = Array(blocks.prefix(c.model.contrastiveBlocks))
        mlm = Array(blocks.dropFirst(c.model.contrastiveBlocks))
        dropped = [Bool](repeating: false, count: contrastive.count + mlm.count)
        replay.sources = [DropoutSource?](repeating: nil, count: dropped.count)
    }

    func block(_ i: Int) -> ConformerBlock {
        i < contrastive.count ? contrastive[i] : mlm[i - contrastive.count]
    }
    /// Output of the last contrastive block (c) and of the last block (m).
    var contrastiveOutput: FPtr { contrastive.last!.y }
    var mlmOutput: FPtr { (mlm.last ?? contrastive.last!).y }

    func attentionShape(_ s: BatchShape) -> AttentionShape {
        AttentionShape(b: s.b, t: s.t, d: d, heads: heads, position: position, memory: memory)
    }

    /// Attention keeps its probabilities (h·T floats per row) for backward while h·T ≤ (19·d + 4·f)/4, less
    /// than half of what the rest of a block keeps per row (about 13·d + 2·f, plus 5·d + 2·f of LayerNorm and
    /// Swish outputs) when f = 4·d. Short utterances skip every recomputation (the blocks keep those outputs
    /// too); longer ones keep only O(T·d) per row and rebuild them in backward (see `AttentionMemory`).
    static func attentionMemory(_ c: Config, t: Int) -> AttentionMemory {
        4 * c.model.heads * t <= 19 * c.model.dim + 4 * c.model.ffnDim ? .probabilities : .recompute
    }

    /// Layer-drop decisions of the step (key.step; micro-batch 0), or the given ones (tests).
    mutating func drawLayerDrop(key: RandomKey, probability: Float, training: Bool, given: [Bool]?) {
        var drop = RandomKey(seed: key.seed, step: key.step, microBatch: 0).stream(.layerDrop)
        for i in 0..<dropped.count {
            dropped[i] = training && probability > 0 && drop.nextUniform() < probability
        }
        if training, let given {
            precondition(given.count == dropped.count, "droppedBlocks override has the wrong size")
            dropped = given
        }
    }

    /// Runs blocks 0..<count on x0 (count: all blocks, or the contrastive ones for `embed`).
    func forward(
        x0: CFPtr, lengths: UnsafePointer<Int32>, _ s: BatchShape, config bc: BlockConfig, count: Int,
        rng: inout DropoutSource
    ) {
        let shape = attentionShape(s)
        var input = x0
        for i in replay.sources.indices { replay.sources[i] = nil }
        replay.resident = nil
        for i in 0..<count {
            let blk = block(i)
            if dropped[i] {
                copy(blk.y, input, n: s.n * shape.d)
            } else {
                if checkpointing { replay.sources[i] = rng }
                blk.forward(x: input, s: scratch, lengths: lengths, shape: shape, c: bc, rng: &rng)
                replay.resident = i
            }
            input = CFPtr(blk.y)
        }
    }

    /// dm (the MLM loss's gradient at the masked rows) enters at m, dc (the contrastive loss's) at c;
    /// on exit dCur holds dx0. `blockDone(i)` is called as soon as block i's gradients are final.
    func backward(
        x0: CFPtr, dm: CFPtr, dc: CFPtr, frames: MaskedFrames, lengths: UnsafePointer<Int32>,
        _ s: BatchShape, config bc: BlockConfig, blockDone: (Int) throws -> Void
    ) rethrows {
        let n = s.n, nc = contrastive.count
        zero(dCur, n * d)
        frames.scatterAdd(dCur, from: dm, width: d)
        try backwardBlocks(
            x0: x0, lengths: lengths, s, config: bc,
            entering: { i in if i == nc - 1 { frames.scatterAdd(dCur, from: dc, width: d) } },
            blockDone: blockDone)
    }

    /// Backward from the gradient `dy` [N, d] of the last block's output (the CTC head's); on exit dCur holds
    /// dx0. `blockDone(i)` as in `backward`.
    func backward(
        x0: CFPtr, dy: CFPtr, lengths: UnsafePointer<Int32>, _ s: BatchShape, config bc: BlockConfig,
        blockDone: (Int) throws -> Void
    ) rethrows {
        copy(dCur, dy, n: s.n * d)
        try backwardBlocks(x0: x0, lengths: lengths, s, config: bc, entering: { _ in }, blockDone: blockDone)
    }

    /// The blocks in reverse on dCur; `entering(i)` runs before block i's backward (a loss's gradient joining).
    private func backwardBlocks(
        x0: CFPtr, lengths: UnsafePointer<Int32>, _ s: BatchShape, config bc: BlockConfig,
        entering: (Int) -> Void, blockDone: (Int) throws -> Void
    ) rethrows {
        let shape = attentionShape(s), n = s.n, d = shape.d
        for i in stride(from: dropped.count - 1, through: 0, by: -1) {
            entering(i)
            if !dropped[i] {
                let x = i == 0 ? x0 : CFPtr(block(i - 1).y)
                if checkpointing && replay.resident != i {
                    // Block i's activations again, exactly as forward made them (its output included).
                    guard var rng = replay.sources[i] else { preconditionFailure("block \(i) did not run forward") }
                    block(i).forward(x: x, s: scratch, lengths: lengths, shape: shape, c: bc, rng: &rng)
                    replay.resident = i
                }
                block(i).backward(dY: dCur, x: x, s: scratch, lengths: lengths, shape: shape, c: bc)
                copy(dCur, scratch.dRes, n: n * d)
                extensions.backward(block: i)
            }
            try blockDone(i)
        }
    }

    /// The options' per-micro-batch work, before the blocks run (every forward and embed).
    func generate(_ step: StepConditioning) { extensions.generate(step) }

    /// The options' remaining gradients after every block's backward (dz nil: nothing below the blocks
    /// is trained).
    func finish(dz: FPtr?, lengths: UnsafePointer<Int32>, t: Int) { extensions.finish(dz: dz, lengths: lengths, t: t) }
}

/// What checkpointed backward needs of the last forward: the dropout source as it stood before each block ran
/// (nil: dropped or not run) and the block whose activations the shared region holds.
final class BlockReplay {
    var sources: [DropoutSource?] = []
    var resident: Int?
}
