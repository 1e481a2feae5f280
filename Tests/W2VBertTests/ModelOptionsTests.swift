import XCTest
import W2VBert
import Tensor

/// The model options behind one interface (Sources/W2VBert/Options): the registry names the adapter kinds,
/// and with the base frozen every trainable range is reported by backward's gradientsReady once, when its
/// gradients are final (per block for LoRA, after the options' finish for hyper-lora's shared tensors).
final class ModelOptionsTests: XCTestCase {
    static let small = [
        "model.dim=36", "model.heads=4", "model.ffn_dim=60", "model.frontend_channels=3",
        "model.pos_conv_kernel=6", "model.pos_conv_groups=4", "quantizer.entries=15",
        "quantizer.dim=18", "mask.span=3", "model.conv_kernel=3", "model.layer_drop=0"
    ]

    func testAdapterKindsComeFromTheOptionRegistry() throws {
        let kinds = AdapterKind.allCases.map(\.rawValue)
        XCTAssertEqual(kinds.first, "none")
        XCTAssertEqual(Array(kinds.prefix(3)), ["none", "lora", "hyper-lora"], "registry order")
        XCTAssertEqual(Set(kinds).count, kinds.count)
        XCTAssertEqual(AdapterKind(rawValue: "hyper-lora"), .hyperLora)
        XCTAssertNil(AdapterKind(rawValue: "dora"))
        XCTAssertThrowsError(try Config.load(preset: "tiny", overrides: ["adapter.kind=dora"])) {
            XCTAssertEqual(($0 as? ConfigError)?.key, "adapter.kind")
            XCTAssert("\($0)".contains(kinds.joined(separator: "|")), "\($0)")
        }
    }

    /// Base frozen: the reported ranges are the trainable ranges, each once, in order, with final values.
    /// `perBlock`: one range per block (else one range after the blocks).
    func checkFrozenRanges(
        _ over: [String], perBlock: Bool, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let c = try Config.load(preset: "tiny", overrides: Self.small + over + ["train.trainable=adapters"])
        let expectedRanges = perBlock ? c.model.contrastiveBlocks + c.model.mlmBlocks : 1
        let batch = SyntheticBatch(config: c, lengths: [80, 66])
        let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 80)
        // B factors (and their generators) start at zero; nonzero ones make every adapter gradient nonzero.
        var rng = RandomStream(seed: 5, purpose: .test)
        for e in model.layout.entries where e.name.hasSuffix(".lora_b") || e.name.hasSuffix(".gen_b") {
            rng.fillNormal(model.params.ptr + e.offset, e.count, std: 0.1)
        }
        XCTAssertEqual(model.gradientRanges.count, expectedRanges, file: file, line: line)
        XCTAssertEqual(Set(model.gradientRanges), Set(model.layout.trainableRanges(c)), file: file, line: line)
        var snapshot = [Float](repeating: .nan, count: model.layout.count)
        var order: [Int] = []
        let s = batch.forward(model, step: 2, tau: 1)
        model.backward(lossScale: 1 / Float(s.masked)) { i in
            order.append(i)
            for j in model.gradientRanges[i] { snapshot[j] = model.grads.ptr[j] }
        }
        XCTAssertEqual(order, Array(model.gradientRanges.indices), "each range once, in order", file: file, line: line)
        let grads = model.grads.array
        var moved = 0
        for r in model.gradientRanges {
            XCTAssert(
                Array(snapshot[r]) == Array(grads[r]), "range \(r) not final when reported", file: file,
                line: line)
            moved += grads[r].contains { $0 != 0 } ? 1 : 0
        }
        XCTAssertEqual(moved, expectedRanges, "every trainable range gets a gradient", file: file, line: line)
    }

    func testFrozenBaseRangesAreReportedWhenFinal() throws {
        let targets = "adapter.targets=attn.q,ffn.fc1,conv.pw2"
        // LoRA: one range per block (its adapters, last in the block), reported as the block's backward ends.
        try checkFrozenRanges(["adapter.kind=lora", "adapter.rank=2", targets], perBlock: true)
        // hyper-lora: one range after the blocks (speaker encoder, layer embedding, generators), after finish.
        try checkFrozenRanges(
            ["adapter.kind=hyper-lora", "adapter.rank=2", "adapter.speaker_dim=3", targets],
            perBlock: false)
        try checkFrozenRanges(
            [
                "adapter.kind=hyper-lora", "adapter.speaker=table", "adapter.speakers=2",
                "adapter.rank=2", targets
            ], perBlock: false)
    }
}
