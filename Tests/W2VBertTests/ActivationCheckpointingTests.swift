import Tensor
import W2VBert
import XCTest

/// train.checkpoint_activations = blocks: backward recomputes each block from its input with the same
/// arithmetic and the same dropout draws, so gradients (and losses) are bit-identical to keeping every block's
/// activations, with dropout, layer drop, every position mode, the model options, bf16 and the CTC model.
final class ActivationCheckpointingTests: XCTestCase {
    static let micro = [
        "model.frontend_channels=4", "model.dim=32", "model.heads=4", "model.ffn_dim=64", "model.conv_kernel=5",
        "model.contrastive_blocks=2", "model.mlm_blocks=2", "model.pos_conv_kernel=6", "model.pos_conv_groups=4",
        "model.dropout=0.2", "model.layer_drop=0.3",
    ]
    static let pretrain = ["model.final_dim=16", "quantizer.entries=24", "quantizer.dim=16", "mask.span=4",
                           "loss.num_negatives=5"]

    /// The variants checked: position modes, LoRA and hyper-lora adapters (base trained and frozen), hypernetwork
    /// layers.
    static let variants: [[String]] = [
        [],
        ["model.position=shaw", "model.shaw_left=3", "model.shaw_right=2"],
        ["model.position=rope", "model.frontend=stack"],
        ["adapter.kind=lora", "adapter.rank=2", "adapter.targets=attn.q,ffn.fc1,conv.pw2"],
        ["adapter.kind=hyper-lora", "adapter.rank=2", "adapter.speaker_dim=3", "train.trainable=adapters"],
        ["model.hypernetwork=ffn+conv", "model.hyper_dim=2", "model.hyper_rank=2"],
    ]

    /// Gradients of `steps` consecutive steps (each zeroed first) and the step losses, pre-training model.
    func pretrainGradients(
        _ c: Config, _ compute: Compute, steps: Int, maxFrames: Int = 60
    ) -> ([[Float]], [Double], Int) {
        let batch = SyntheticBatch(config: c, lengths: [60, 47])
        let model = W2VBertModel(config: c, compute: compute, maxBatch: 2, maxFrames: maxFrames)
        var grads: [[Float]] = [], losses: [Double] = []
        for step in 0..<steps {
            model.zeroGrads()
            let s = batch.forward(model, step: step, tau: 1.0)
            model.backward(lossScale: 1 / Float(max(s.masked, 1)))
            grads.append(model.grads.array)
            losses.append(s.loss(c))
        }
        return (grads, losses, model.activationBytes)
    }

    func testPretrainingGradientsBitIdentical() throws {
        for (i, extra) in Self.variants.enumerated() {
            for precision in [Precision.fp32, .bf16] where i == 0 || precision == .fp32 {
                let compute = Compute(precision: precision, threads: 1)
                let base = Self.micro + Self.pretrain + extra
                let off = try Config.load(preset: "tiny", overrides: base)
                let on = try Config.load(preset: "tiny", overrides: base + ["train.checkpoint_activations=blocks"])
                // Six steps: several layer-drop patterns (some blocks dropped, the last one among them).
                let (g0, l0, bytes0) = pretrainGradients(off, compute, steps: 6)
                let (g1, l1, bytes1) = pretrainGradients(on, compute, steps: 6)
                XCTAssertEqual(l0, l1, "losses \(extra) \(precision)")
                for s in 0..<g0.count {
                    XCTAssert(g0[s] == g1[s], "gradients of step \(s) differ: \(extra) \(precision)")
                    XCTAssert(g0[s].contains { $0 != 0 }, "step \(s) has gradients")
                }
                XCTAssertLessThan(bytes1, bytes0, "checkpointing keeps fewer activations")
            }
        }
    }

    /// A model built for long utterances (capacity 400 frames: 99 encoder frames, 4·h·T above the blocks' other
    /// per-row bytes) keeps neither attention probabilities nor LayerNorm and Swish outputs and rebuilds them in
    /// backward; on the same short batch its gradients equal those of a model that keeps everything, to float
    /// round-off (the tiled attention's sums), with and without checkpointing.
    func testLongCapacityRebuildsWhatShortKeeps() throws {
        for extra in [Self.variants[0], Self.variants[1], Self.variants[3]] {
            for ckpt in [[], ["train.checkpoint_activations=blocks"]] {
                let c = try Config.load(preset: "tiny", overrides: Self.micro + Self.pretrain + extra + ckpt)
                let (g0, l0, _) = pretrainGradients(c, .fp32(), steps: 3)
                let (g1, l1, _) = pretrainGradients(c, .fp32(), steps: 3, maxFrames: 400)
                for s in 0..<g0.count {
                    XCTAssertEqual(l0[s], l1[s], accuracy: 1e-5 * abs(l0[s]), "loss \(s) \(extra) \(ckpt)")
                    let scale = g0[s].map { abs($0) }.max()!
                    let worst = zip(g0[s], g1[s]).map { abs($0 - $1) }.max()!
                    XCTAssertLessThan(worst, 1e-4 * scale, "gradients of step \(s) \(extra) \(ckpt)")
                    XCTAssertGreaterThan(scale, 0)
                }
            }
        }
    }

    /// `Arena.carve(over:)` (the conv2d front end's workspace over the stack's region) hands out the floats
    /// after the mark again and grows the arena only by what does not fit.
    func testCarveOverReusesTheRegionAndGrowsOnlyByTheExcess() {
        let a = Arena(compute: .fp32())
        _ = a.take(100)
        let mark = a.used
        let region = a.take(64)
        let inside = a.carve(over: mark) { a.take(48) }
        XCTAssertEqual(inside, region)
        XCTAssertEqual(a.used, mark + 64)
        XCTAssertEqual(a.peak, mark + 64)
        let (first, second) = a.carve(over: mark) { (a.take(48), a.take(48)) }
        XCTAssertEqual(first, region)
        XCTAssertEqual(second, region + 48)
        XCTAssertEqual(a.used, mark + 96)
        XCTAssertEqual(a.peak, mark + 96)
    }

    /// The layer-drop draws of the six steps above (SyntheticBatch's key, seed 11) drop some blocks and keep
    /// others, the last block among the dropped ones at least once (the tests would not cover them else).
    func testStepsDropSomeBlocks() throws {
        let c = try Config.load(preset: "tiny", overrides: Self.micro + Self.pretrain)
        var dropped = [Int](repeating: 0, count: 4)
        for step in 0..<6 {
            var stream = RandomKey(seed: 11, step: step, microBatch: 0).stream(.layerDrop)
            for i in 0..<4 where stream.nextUniform() < c.model.layerDrop { dropped[i] += 1 }
        }
        XCTAssertGreaterThan(dropped[3], 0, "\(dropped)")
        XCTAssertLessThan(dropped.reduce(0, +), 24, "\(dropped)")
    }

    func testCTCGradientsBitIdentical() throws {
        let base = Self.micro + [
            "model.head=ctc", "model.vocab_size=7", "finetune.mask_time_prob=0.3", "finetune.mask_time_span=3",
            "finetune.freeze_frontend=false", "finetune.mask_channel_prob=0.2", "finetune.mask_channel_span=4",
        ]
        let labels: [[Int32]] = [[3, 1, 4, 4, 2, 6], [5, 6, 2]]
        var results: [[[Float]]] = []
        for extra in [[], ["train.checkpoint_activations=blocks"]] {
            let c = try Config.load(preset: "tiny", overrides: base + extra)
            let batch = CTCBatch(config: c, lengths: [60, 47], labels: labels)
            let model = CTCModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
            var grads: [[Float]] = []
            for step in 0..<4 {
                model.zeroGrads()
                _ = batch.forward(model, step: step)
                model.backward(lossScale: 0.5)
                grads.append(model.grads.array)
            }
            results.append(grads)
        }
        for s in 0..<results[0].count { XCTAssert(results[0][s] == results[1][s], "CTC gradients of step \(s)") }
    }

    func testKeyParsesAndRejectsOtherValues() throws {
        let c = try Config.load(preset: "tiny", overrides: ["train.checkpoint_activations=blocks"])
        XCTAssertEqual(c.train.checkpointActivations, .blocks)
        XCTAssertEqual(try Config.load(preset: "tiny").train.checkpointActivations, ActivationCheckpointing.none)
        XCTAssertThrowsError(try Config.load(preset: "tiny", overrides: ["train.checkpoint_activations=some"])) {
            XCTAssertEqual(($0 as? ConfigError)?.key, "train.checkpoint_activations")
        }
    }
}

/// compute.precision = auto (the default): bf16 where the CPU multiplies bf16 natively, fp32 elsewhere.
final class PrecisionSettingTests: XCTestCase {
    func testAutoIsTheDefaultAndResolvesByTheCPU() throws {
        let c = try Config.load(preset: "tiny")
        XCTAssertEqual(c.compute.precision, .auto)
        XCTAssertEqual(PrecisionSetting.auto.resolved, Compute.hasNativeBF16 ? .bf16 : .fp32)
        XCTAssertEqual(PrecisionSetting.fp32.resolved, .fp32)
        XCTAssertEqual(PrecisionSetting.bf16.resolved, .bf16)
        XCTAssertEqual(Compute(c.compute, threads: 1).precision, Compute.hasNativeBF16 ? .bf16 : .fp32)
        let line = try XCTUnwrap(PrecisionSetting.auto.autoDescription)
        if let isa = Compute.nativeBF16ISA {
            XCTAssertEqual(line, "bf16 (auto: the CPU has \(isa))")
        } else {
            XCTAssert(line.hasPrefix("fp32 (auto:"), line)
        }
        XCTAssertNil(PrecisionSetting.fp32.autoDescription)
        XCTAssertEqual(PrecisionSetting(Precision.bf16), .bf16)
        for value in ["auto", "fp32", "bf16"] {
            let set = try Config.load(preset: "tiny", overrides: ["compute.precision=\(value)"])
            XCTAssertEqual(set.compute.precision.rawValue, value)
            XCTAssertEqual(try Config.load(yaml: [set.yaml]).compute.precision.rawValue, value)
        }
        XCTAssertThrowsError(try Config.load(preset: "tiny", overrides: ["compute.precision=fp16"]))
    }
}
