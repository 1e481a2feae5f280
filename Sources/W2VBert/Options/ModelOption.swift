// Research options of the model (low-rank adapters, generated block weights, per-utterance conditioning)
// behind one interface. The Conformer stack knows none of them by name: it calls the active options at
// fixed points, and each option lives in its own file of this folder.
//
//   layout    `ModelOption`: the tensors an option adds at the end of every block and after the blocks,
//             and the block weights it generates instead of storing (`generatesWeight`)
//   build     `makeExtension`: the option's runtime part (`BlockExtension`), carved from the model's arena
//   Linear    for each Linear site of a block (ffn1.fc1, ffn1.fc2, attn.q, attn.k, attn.v, attn.out,
//             conv.pw1, conv.pw2, ffn2.fc1, ffn2.fc2): a generated weight and/or a `LinearBranch` whose
//             output is added to the Linear's (dispatched once per Linear call, never per element)
//   forward   `generate(_:)` once per micro-batch, after the feature encoder and before the blocks
//   backward  `backward(block:)` right after each block's backward; `finish(dz:lengths:t:)` after all
//             blocks (dz nil when nothing below the blocks is trained)
// `ModelOptions.all` is the one list of options: a new option is a new file and one line there.

import Tensor

/// A tensor an option adds to the parameter layout.
struct ParameterSpec {
    let name: String
    let shape: [Int]
    let initialization: ParameterInit
    let decay: Bool
}

/// One Linear layer of a Conformer block, as the options see it.
struct LinearSite {
    let block: Int  // block index: contrastive blocks first, then MLM blocks
    let name: String  // parameter prefix, e.g. "mlm.blocks.0.attn.q"
    let rows: Int  // N, the rows the arena is carved for
    /// The Linear's name within its block ("attn.q", "ffn1.fc1", …).
    var site: String { name.split(separator: ".").suffix(2).joined(separator: ".") }
}

/// What an option's runtime part is built from: the parameter buffers, the arena and the sizes.
struct ExtensionParts {
    let layout: ParameterLayout
    let params: FPtr
    let grads: FPtr
    let arena: Arena
    let config: Config
    let maxBatch: Int
    let blockNames: [String]
}

/// The micro-batch as the options see it before the blocks run.
struct StepConditioning {
    let z: CFPtr  // [B, T, d] feature encoder output
    let lengths: UnsafePointer<Int32>  // [B] frames after the feature encoder
    /// [B] per-utterance conditioning index, −1 = none (nil: none for the whole batch).
    let conditioning: UnsafePointer<Int32>?
    let batch: Int
    let t: Int
}

/// The layout-level side of an option: built from the config (nil when the config does not enable it).
protocol ModelOption {
    init?(config: Config)
    /// The `adapter.kind` value that enables this option, if it is an adapter kind.
    static var adapterKind: String? { get }
    /// A tensor of this option that `train.trainable = adapters` trains (the base model stays frozen).
    static func isAdapterTensor(_ name: String) -> Bool
    /// Tensors at the end of block `block` (e.g. "contrastive.blocks.0"), after the block's own.
    func blockParameters(block: String) -> [ParameterSpec]
    /// Tensors after all blocks (before the quantizer and heads).
    var sharedParameters: [ParameterSpec] { get }
    /// The option generates the weight of this Linear site: the layout holds no per-block weight for it.
    func generatesWeight(site: String) -> Bool
    /// Floats per row of the shared backward scratch its branches use (`du` of `LinearBranch.backward`).
    var branchScratch: Int { get }
    func makeExtension(_ parts: ExtensionParts) -> any BlockExtension
}

extension ModelOption {
    static var adapterKind: String? { nil }
    static func isAdapterTensor(_ name: String) -> Bool { false }
    func blockParameters(block: String) -> [ParameterSpec] { [] }
    var sharedParameters: [ParameterSpec] { [] }
    func generatesWeight(site: String) -> Bool { false }
    var branchScratch: Int { 0 }
}

/// The runtime side of an option, called by the Conformer stack at fixed points.
protocol BlockExtension {
    /// The weight (and its gradient) of this Linear when the option generates it, else nil.
    func weight(_ site: LinearSite) -> PG?
    /// A branch added to this Linear's output (nil: none); called once while the blocks are carved.
    func branch(_ site: LinearSite, arena: Arena) -> (any LinearBranch)?
    /// Once per micro-batch, before the blocks run (forward and embed).
    func generate(_ step: StepConditioning)
    /// Right after block i's backward (not called for a layer-dropped block).
    func backward(block i: Int)
    /// After every block's backward: the remaining gradients; dz [B, T, d] accumulates the gradient of the
    /// feature encoder output (nil: nothing below the blocks is trained).
    func finish(dz: FPtr?, lengths: UnsafePointer<Int32>, t: Int)
    /// Per-utterance vectors [B, dim] made by the last `generate`, if the option makes any.
    var utteranceVectors: (values: CFPtr, dim: Int)? { get }
}

extension BlockExtension {
    func weight(_ site: LinearSite) -> PG? { nil }
    func branch(_ site: LinearSite, arena: Arena) -> (any LinearBranch)? { nil }
    func generate(_ step: StepConditioning) {}
    func backward(block i: Int) {}
    func finish(dz: FPtr?, lengths: UnsafePointer<Int32>, t: Int) {}
    var utteranceVectors: (values: CFPtr, dim: Int)? { nil }
}

/// A term added to a block Linear's output y [N, out] = x [N, in]·Wᵀ + b.
protocol LinearBranch {
    /// y += the branch's output for x.
    func forward(y: FPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int)
    /// Accumulates dx and the branch's parameter gradients; `du` [N, branchScratch] is shared scratch.
    func backward(dx: FPtr, du: FPtr, dy: CFPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int)
}

/// The one list of model options, in the order their tensors appear in a block and after the blocks.
enum ModelOptions {
    // Immutable after initialisation; metatypes only.
    nonisolated(unsafe) static let all: [any ModelOption.Type] = [
        LoRAAdapter.self,
        HyperLayers.self,
        HyperLoRA.self,
    ]

    /// The options the config enables, in `all` order.
    static func active(_ c: Config) -> [any ModelOption] { all.compactMap { $0.init(config: c) } }

    /// The `adapter.kind` values of the registered adapter options.
    static var adapterKinds: [String] { all.compactMap { $0.adapterKind } }

    static func isAdapterTensor(_ name: String) -> Bool { all.contains { $0.isAdapterTensor(name) } }
}

/// The runtime parts of the active options, as the Conformer stack calls them.
struct BlockExtensions {
    let all: [any BlockExtension]

    /// A Linear's weight from the first option that generates it, else nil (the layout's own).
    func weight(_ site: LinearSite) -> PG? {
        for e in all {
            if let w = e.weight(site) { return w }
        }
        return nil
    }

    func branches(_ site: LinearSite, arena: Arena) -> [any LinearBranch] {
        all.compactMap { $0.branch(site, arena: arena) }
    }

    func generate(_ step: StepConditioning) {
        for e in all { e.generate(step) }
    }

    func backward(block i: Int) {
        for e in all { e.backward(block: i) }
    }

    func finish(dz: FPtr?, lengths: UnsafePointer<Int32>, t: Int) {
        for e in all { e.finish(dz: dz, lengths: lengths, t: t) }
    }

    var utteranceVectors: (values: CFPtr, dim: Int)? { all.lazy.compactMap(\.utteranceVectors).first }
}
