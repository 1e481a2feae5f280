import XCTest
import Foundation
import Training
import W2VBert
import Tensor
import TestSupport

/// Issue 13: LoRA with a frozen base under real mpirun (same helpers and slice as DistributedTrainingTests).
extension DistributedTrainingTests {
    static let lora = ["--set", "adapter.kind=lora", "--set", "adapter.rank=4", "--set", "adapter.alpha=8",
                       "--set", "adapter.targets=attn.q,attn.v,ffn.fc1,conv.pw2", "--set", "train.trainable=adapters",
                       "--set", "optimizer.lr=0.01"]

    /// The base tensors of a checkpoint equal their initialisation from the seed bit for bit; returns the
    /// number of adapter tensors that moved away from theirs.
    func checkBaseUntouched(_ p: [String: [Float]], file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let c = try Config.load(preset: "tiny", overrides: ["adapter.kind=lora", "adapter.rank=4", "adapter.alpha=8",
                                                             "adapter.targets=attn.q,attn.v,ffn.fc1,conv.pw2"])
        let l = ParameterLayout(config: c)
        let init0 = FloatBuffer(count: l.count)
        l.initialize(init0.ptr, seed: c.train.seed)
        var moved = 0
        XCTAssertEqual(Set(p.keys), Set(l.entries.map(\.name)), file: file, line: line)
        for e in l.entries {
            let start = Array(UnsafeBufferPointer(start: init0.ptr + e.offset, count: e.count))
            if ParameterLayout.isAdapter(e.name) { moved += p[e.name]! == start ? 0 : 1 }
            else { XCTAssert(p[e.name]! == start, "base tensor \(e.name) changed", file: file, line: line) }
        }
        return moved
    }

    func testLoRATwoRanksEqualOneRankWithAccumulationBaseFrozen() throws {
        let a = temp("lora2"), b = temp("lora1")
        try train(ranks: 2, runDir: a, steps: 5, extra: Self.lora)
        try train(ranks: 1, runDir: b, steps: 5, extra: Self.lora + ["--set", "train.update_freq=2"])
        let pa = try parameters(a, step: 5), pb = try parameters(b, step: 5)
        let (d, name) = maxRelativeDifference(pa, pb)
        print("lora equivalence: 2 ranks vs 1 rank × update_freq 2 after 5 steps: max relative difference \(d) (\(name))")
        XCTAssertEqual(d, 0, "worst tensor \(name)")
        let moved = try checkBaseUntouched(pa)
        // 4 blocks × (ffn1.fc1, ffn2.fc1, attn.q, attn.v, conv.pw2) × (A, B)
        XCTAssertEqual(moved, 4 * 5 * 2, "every adapter tensor trains")
        // Optimizer state only for the adapters.
        let opt = try SafeTensors.open(path: a + "/checkpoints/" + CheckpointManager.directoryName(step: 5) + "/optimizer.safetensors")
        XCTAssert(opt.entries.keys.allSatisfy { ParameterLayout.isAdapter($0) }, "optimizer state for a frozen tensor")
        XCTAssertEqual(opt.entries.count, 2 * pa.keys.filter { ParameterLayout.isAdapter($0) }.count)
    }

    func testLoRAExactResume() throws {
        let straight = temp("lorastraight"), resumed = temp("loraresumed")
        try train(ranks: 2, runDir: straight, steps: 6, extra: Self.lora)
        try train(ranks: 2, runDir: resumed, steps: 3, extra: Self.lora)
        try train(ranks: 2, runDir: resumed, steps: 6, extra: Self.lora)
        let p = try parameters(straight, step: 6), r = try parameters(resumed, step: 6)
        XCTAssertEqual(p.keys.sorted(), r.keys.sorted())
        for (k, v) in p { XCTAssert(v == r[k]!, "resumed tensor \(k) is not bit-identical") }
        _ = try checkBaseUntouched(r)
    }
}

extension DistributedTrainingTests {
    /// `train --init-from` a plain run with LoRA and a frozen base: the adapters start fresh (B = 0), the
    /// base tensors stay those of the source checkpoint bit for bit.
    func testLoRAInitFromPlainCheckpoint() throws {
        let plain = temp("loraplain"), adapted = temp("loraadapted")
        try train(ranks: 1, runDir: plain, steps: 2)
        try train(ranks: 2, runDir: adapted, steps: 3, extra: Self.lora + ["--init-from", plain])
        let source = try parameters(plain, step: 2), p = try parameters(adapted, step: 3)
        for (k, v) in p where !ParameterLayout.isAdapter(k) { XCTAssert(v == source[k]!, "base tensor \(k) differs from the source") }
        XCTAssertEqual(p.count - source.count, 40)
    }
}

extension DistributedTrainingTests {
    /// Hypernetwork layers (issue 13): 2 ranks = 1 rank × update_freq 2 bit for bit, and exact resume.
    func testHypernetworkEquivalenceAndResume() throws {
        let hyper = ["--set", "model.hypernetwork=ffn+conv", "--set", "model.hyper_dim=2", "--set", "model.hyper_rank=2"]
        let a = temp("hyp2"), b = temp("hyp1"), r = temp("hypres")
        try train(ranks: 2, runDir: a, steps: 6, extra: hyper)
        try train(ranks: 1, runDir: b, steps: 6, extra: hyper + ["--set", "train.update_freq=2"])
        try train(ranks: 2, runDir: r, steps: 3, extra: hyper)
        try train(ranks: 2, runDir: r, steps: 6, extra: hyper)
        let pa = try parameters(a, step: 6), pb = try parameters(b, step: 6), pr = try parameters(r, step: 6)
        XCTAssert(pa.keys.contains("hypernet.conv.pw1.coef") && !pa.keys.contains("mlm.blocks.0.ffn1.fc1.weight"))
        let (d, name) = maxRelativeDifference(pa, pb)
        XCTAssertEqual(d, 0, "hypernetwork: 2 ranks vs update_freq 2, worst tensor \(name)")
        for (k, v) in pa { XCTAssert(v == pr[k]!, "resumed tensor \(k) is not bit-identical") }
        // The generator learned something beyond the shared base: its coefficients left zero.
        XCTAssert(pa["hypernet.ffn1.fc1.coef"]!.contains { $0 != 0 })
    }
}
