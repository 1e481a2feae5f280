import XCTest
import Foundation
import Training
import W2VBert
import Tensor
import TestSupport

/// LoRA with a frozen base under real mpirun (same helpers and slice as DistributedTrainingTests).
extension DistributedTrainingTests {
    static let lora = [
        "--set", "adapter.kind=lora", "--set", "adapter.rank=4", "--set", "adapter.alpha=8",
        "--set", "adapter.targets=attn.q,attn.v,ffn.fc1,conv.pw2", "--set", "train.trainable=adapters",
        "--set", "optimizer.lr=0.01"
    ]

    /// The base tensors of a checkpoint equal their initialisation from the seed bit for bit; returns the
    /// number of adapter tensors that moved away from theirs.
    func checkBaseUntouched(_ p: [String: [Float]], file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let c = try Config.load(
            preset: "tiny",
            overrides: [
                "adapter.kind=lora", "adapter.rank=4", "adapter.alpha=8",
                "adapter.targets=attn.q,attn.v,ffn.fc1,conv.pw2"
            ])
        let l = ParameterLayout(config: c)
        let init0 = FloatBuffer(count: l.count)
        l.initialize(init0.ptr, seed: c.train.seed)
        var moved = 0
        XCTAssertEqual(Set(p.keys), Set(l.entries.map(\.name)), file: file, line: line)
        for e in l.entries {
            let start = Array(UnsafeBufferPointer(start: init0.ptr + e.offset, count: e.count))
            if ParameterLayout.isAdapter(e.name) {
                moved += p[e.name]! == start ? 0 : 1
            } else {
                XCTAssert(p[e.name]! == start, "base tensor \(e.name) changed", file: file, line: line)
            }
        }
        return moved
    }

    func testLoRATwoRanksEqualOneRankWithAccumulationBaseFrozen() throws {
        let a = temp("lora2"), b = temp("lora1")
        try train(ranks: 2, runDir: a, steps: 5, extra: Self.lora)
        try train(ranks: 1, runDir: b, steps: 5, extra: Self.lora + ["--set", "train.update_freq=2"])
        let pa = try parameters(a, step: 5), pb = try parameters(b, step: 5)
        let (d, name) = maxRelativeDifference(pa, pb)
        print(
            "lora equivalence: 2 ranks vs 1 rank × update_freq 2 after 5 steps: max relative difference \(d) (\(name))")
        XCTAssertEqual(d, 0, "worst tensor \(name)")
        let moved = try checkBaseUntouched(pa)
        // 4 blocks × (ffn1.fc1, ffn2.fc1, attn.q, attn.v, conv.pw2) × (A, B)
        XCTAssertEqual(moved, 4 * 5 * 2, "every adapter tensor trains")
        // Optimizer state only for the adapters.
        let opt = try SafeTensors.open(
            path: a + "/checkpoints/" + CheckpointManager.directoryName(step: 5) + "/optimizer.safetensors")
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
        for (k, v) in p where !ParameterLayout.isAdapter(k) {
            XCTAssert(v == source[k]!, "base tensor \(k) differs from the source")
        }
        XCTAssertEqual(p.count - source.count, 40)
    }
}

extension DistributedTrainingTests {
    /// Hypernetwork layers: 2 ranks = 1 rank × update_freq 2 bit for bit, and exact resume.
    func testHypernetworkEquivalenceAndResume() throws {
        let hyper = [
            "--set", "model.hypernetwork=ffn+conv", "--set", "model.hyper_dim=2", "--set", "model.hyper_rank=2"
        ]
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

extension DistributedTrainingTests {
    /// hyper-lora with the base frozen, `over` the config: 2 ranks × 5 steps = 1 rank × update_freq 2 bit for bit, exact
    /// resume 3 → 5, base tensors equal their seed initialisation, every adapter tensor trains (`adapters` of them)
    /// and has optimizer state, nothing else does. Returns the 2-rank run folder and its step-5 tensors.
    func checkHyperLoRAFrozenBase(
        _ over: [String], adapters: Int, manifest: String? = nil
    ) throws -> (String, [String: [Float]]) {
        let hl = over.flatMap { ["--set", $0] }
        let a = temp("hl2"), b = temp("hl1"), r = temp("hlres")
        try train(ranks: 2, runDir: a, steps: 5, extra: hl, manifest: manifest)
        try train(ranks: 1, runDir: b, steps: 5, extra: hl + ["--set", "train.update_freq=2"], manifest: manifest)
        try train(ranks: 2, runDir: r, steps: 3, extra: hl, manifest: manifest)
        try train(ranks: 2, runDir: r, steps: 5, extra: hl, manifest: manifest)
        let pa = try parameters(a, step: 5), pb = try parameters(b, step: 5), pr = try parameters(r, step: 5)
        let (d, name) = maxRelativeDifference(pa, pb)
        print(
            "hyper-lora equivalence (\(over[0...1])): 2 ranks vs 1 rank × update_freq 2 after 5 steps: max relative difference \(d) (\(name))"
        )
        XCTAssertEqual(d, 0, "hyper-lora: 2 ranks vs update_freq 2, worst tensor \(name)")
        for (k, v) in pa { XCTAssert(v == pr[k]!, "resumed tensor \(k) is not bit-identical") }
        var c = try Config.load(preset: "tiny", overrides: over)
        c.adapter.speakers = c.adapter.isTable ? pa["speaker.table"]!.count / c.adapter.speakerDim - 1 : 0
        let l = ParameterLayout(config: c)
        let init0 = FloatBuffer(count: l.count)
        l.initialize(init0.ptr, seed: c.train.seed)
        XCTAssertEqual(Set(pa.keys), Set(l.entries.map(\.name)))
        var moved: [String] = []
        for e in l.entries {
            let start = Array(UnsafeBufferPointer(start: init0.ptr + e.offset, count: e.count))
            if ParameterLayout.isAdapter(e.name) {
                if pa[e.name]! != start { moved.append(e.name) }
            } else {
                XCTAssert(pa[e.name]! == start, "base tensor \(e.name) changed")
            }
        }
        XCTAssertEqual(moved.count, adapters, "every hyper-lora tensor trains: \(moved)")
        let opt = try SafeTensors.open(
            path: a + "/checkpoints/" + CheckpointManager.directoryName(step: 5) + "/optimizer.safetensors")
        XCTAssertEqual(
            Set(opt.entries.keys.map { String($0.split(separator: ".", maxSplits: 1)[1]) }).count, adapters,
            "optimizer state for the adapters only")
        XCTAssert(
            opt.entries.keys.allSatisfy { ParameterLayout.isAdapter(String($0.split(separator: ".", maxSplits: 1)[1])) }
        )
        return (a, pa)
    }

    /// hyper-lora speaker adapters with the base frozen (checkHyperLoRAFrozenBase), then the base trainable
    /// and `embed --layer speaker`.
    func testHyperLoRAEquivalenceResumeBaseFrozen() throws {
        let over = [
            "adapter.kind=hyper-lora", "adapter.rank=2", "adapter.alpha=4", "adapter.speaker_dim=4",
            "adapter.layer_dim=2", "adapter.targets=attn.q,ffn.fc1,conv.pw2", "train.trainable=adapters",
            "optimizer.lr=0.01"
        ]
        let hl = over.flatMap { ["--set", $0] }
        // speaker.proj.{weight,bias}, the layer embedding and gen_a/gen_b of 4 sites (ffn1.fc1, ffn2.fc1, attn.q, conv.pw2)
        let (a, _) = try checkHyperLoRAFrozenBase(over, adapters: 2 + 1 + 4 * 2)
        // Base trainable (the speaker encoder's gradient flows into the feature encoder): 2 ranks = update_freq 2.
        let all = hl.map { $0 == "train.trainable=adapters" ? "train.trainable=all" : $0 }
        let c2 = temp("hlall2"), c1 = temp("hlall1")
        try train(ranks: 2, runDir: c2, steps: 3, extra: all)
        try train(ranks: 1, runDir: c1, steps: 3, extra: all + ["--set", "train.update_freq=2"])
        let (d2, name2) = maxRelativeDifference(try parameters(c2, step: 3), try parameters(c1, step: 3))
        XCTAssertEqual(d2, 0, "hyper-lora, base trainable: 2 ranks vs update_freq 2, worst tensor \(name2)")
        // embed --layer speaker: one vector of adapter.speaker_dim per file; refused on a run without hyper-lora.
        let audio = try String(contentsOfFile: Self.slice, encoding: .utf8).split(separator: "\n")
        let root = String(audio[0])
        let files = audio[1...2].map { root + "/" + String($0.split(separator: "\t")[0]) }
        let out = a + "/speaker.npy"
        var rc = try runCommand(
            [Self.exe, "embed", "--checkpoint", a, "--out", out, "--layer", "speaker"] + files, timeout: 120)
        XCTAssertEqual(rc.status, 0, rc.output)
        let header = String(decoding: try Data(contentsOf: URL(fileURLWithPath: out)).prefix(128), as: UTF8.self)
        XCTAssert(header.contains("'shape': (2, 4)"), header)
        rc = try runCommand(
            [Self.exe, "embed", "--checkpoint", c2, "--out", out, "--layer", "speaker"] + files, timeout: 120)
        XCTAssertEqual(rc.status, 0, rc.output)
        let plain = temp("hlplain")
        try train(ranks: 1, runDir: plain, steps: 1)
        rc = try runCommand(
            [Self.exe, "embed", "--checkpoint", plain, "--out", out, "--layer", "speaker"] + files, timeout: 120)
        XCTAssertNotEqual(rc.status, 0)
        XCTAssert(
            rc.output.contains("--layer speaker needs a checkpoint trained with adapter.kind = hyper-lora"), rc.output)
    }
}
