import XCTest
import W2VBert
import Tensor

final class ConfigTests: XCTestCase {
    func testPresetsValidateAndRoundTrip() throws {
        for name in Config.presetNames {
            let c = try Config.preset(name)
            var back = Config()
            try back.apply(yaml: c.yaml)
            XCTAssertEqual(back, c, name)
        }
    }
    func testBaseParameterCount() throws {
        let l = ParameterLayout(config: try Config.preset("base"))
        print("base parameters: \(l.parameterCount)")
        XCTAssertEqual(Double(l.parameterCount) / 1e6, 104.2, accuracy: 0.1)
        for name in ["tiny", "small", "xl"] {
            print("\(name) parameters: \(ParameterLayout(config: try Config.preset(name)).parameterCount)")
        }
    }
    func testOverridesAndErrors() throws {
        var c = try Config.preset("tiny")
        try c.apply(overrides: [
            "model.position=rope", "train.lr=0.002", "optimizer.betas=0.9,0.99", "model.causal_conv=true"
        ])
        XCTAssertEqual(c.model.position, .rope)
        XCTAssertEqual(c.optimizer.lr, 0.002)
        XCTAssertEqual(c.optimizer.betas.1, 0.99)
        XCTAssertTrue(c.model.causalConv)
        func key(_ o: [String]) -> String? {
            var c = try! Config.preset("tiny")
            do {
                try c.apply(overrides: o)
                return nil
            } catch let e as ConfigError { return e.key } catch { return "?" }
        }
        XCTAssertEqual(key(["model.bogus=1"]), "model.bogus")
        XCTAssertEqual(key(["nosection.x=1"]), "nosection.x")
        XCTAssertEqual(key(["model.heads=5"]), "model.heads")
        XCTAssertEqual(key(["model.conv_kernel=0"]), "model.conv_kernel")
        XCTAssertEqual(key(["model.position=rope", "model.heads=16", "model.dim=144"]), "model.heads")  // dh = 9, odd
        XCTAssertEqual(key(["model.position=sideways"]), "model.position")
        XCTAssertEqual(key(["quantizer.dim=129", "quantizer.groups=2"]), "quantizer.dim")
        XCTAssertEqual(key(["model.dropout=1.5"]), "model.dropout")
        var y = Config()
        XCTAssertThrowsError(try y.apply(yaml: "model:\n  dimm: 3\n")) {
            XCTAssertEqual(($0 as? ConfigError)?.key, "model.dimm")
        }
        try y.apply(
            yaml: "preset: small\nmodel:\n  dropout: 0.1\noptimizer:\n  betas: [0.9, 0.95]\ntrain:\n  warmup: 7\n")
        XCTAssertEqual(y.model.dim, 256)
        XCTAssertEqual(y.model.dropout, 0.1)
        XCTAssertEqual(y.optimizer.warmup, 7)
        XCTAssertEqual(y.optimizer.betas.1, 0.95)
    }
    func testEncoderLength() throws {
        let c = try Config.preset("tiny")
        XCTAssertEqual(c.encoderLength(t0: 1000), ((1000 - 1) / 2 - 1) / 2)
        var s = c
        s.model.frontend = .stack
        XCTAssertEqual(s.encoderLength(t0: 1001), 500)
    }
    func testSchedules() throws {
        let c = try Config.preset("tiny")
        XCTAssertEqual(c.tau(step: 0), 2.0)
        XCTAssertEqual(c.learningRate(step: 299), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(c.learningRate(step: 1199), 5e-4, accuracy: 1e-9)
    }
}

final class OptimizerTests: XCTestCase {
    func testPolynomialScheduleAndWeightDecayMask() throws {
        let c = try Config.load(
            preset: "tiny",
            overrides: ["optimizer.schedule=polynomial", "optimizer.warmup=10", "optimizer.max_steps=110"])
        XCTAssertEqual(c.learningRate(step: 4), 5e-4, accuracy: 1e-9)  // u = 5 of warm-up 10
        XCTAssertEqual(c.learningRate(step: 9), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(c.learningRate(step: 59), 5e-4, accuracy: 1e-9)  // halfway down
        XCTAssertEqual(c.learningRate(step: 200), 0)
        let l = ParameterLayout(config: c)
        for e in l.entries {
            let expect = e.name.hasSuffix(".weight") && !e.name.contains("norm.") || e.name == "quantizer.proj.weight"
            XCTAssertEqual(e.decay, expect && e.name != "quantizer.codebook", e.name)
        }
        XCTAssertFalse(l.entry("quantizer.codebook").decay)
        XCTAssertTrue(l.entry("contrastive.blocks.0.conv.dw.weight").decay)
    }

    func testNonFiniteGradientSkipsTheUpdate() throws {
        let c = try Config.preset("tiny")
        let l = ParameterLayout(config: c)
        let params = FloatBuffer(count: l.count), grads = FloatBuffer(count: l.count)
        l.initialize(params.ptr, seed: 1)
        let before = params.array
        grads.ptr[3] = .nan
        let opt = Optimizer(config: c, layout: l)
        XCTAssertTrue(opt.update(params: params, grads: grads).isNaN)
        XCTAssertEqual(opt.step, 0)
        XCTAssertEqual(params.array, before)
    }
}

/// The adapter keys (validation names the key; YAML round trip; layout and trainable ranges).
final class AdapterConfigTests: XCTestCase {
    func testAdapterKeys() throws {
        func key(_ o: [String]) -> String? {
            var c = try! Config.preset("tiny")
            do {
                try c.apply(overrides: o)
                return nil
            } catch let e as ConfigError { return e.key } catch { return "?" }
        }
        XCTAssertEqual(key(["adapter.kind=dora"]), "adapter.kind")
        XCTAssertEqual(key(["adapter.kind=lora", "adapter.rank=0"]), "adapter.rank")
        XCTAssertEqual(key(["adapter.kind=lora", "adapter.alpha=-1"]), "adapter.alpha")
        XCTAssertEqual(key(["adapter.targets=attn.q,attn.z"]), "adapter.targets")
        XCTAssertEqual(key(["adapter.kind=lora", "adapter.targets="]), "adapter.targets")
        XCTAssertEqual(key(["train.trainable=adapters"]), "train.trainable")
        XCTAssertEqual(key(["train.trainable=some"]), "train.trainable")
        var c = try Config.load(
            preset: "tiny",
            overrides: [
                "adapter.kind=lora", "adapter.rank=4", "adapter.alpha=8",
                "adapter.targets=ffn.fc2,conv.pw1,attn.out", "train.trainable=adapters"
            ])
        var back = Config()
        try back.apply(yaml: c.yaml)
        XCTAssertEqual(back, c)
        XCTAssertEqual(c.adapter.scale, 2)
        let l = ParameterLayout(config: c), plain = ParameterLayout(config: try Config.preset("tiny"))
        // Per block: ffn1.fc2, ffn2.fc2 (576 → 144), attn.out, conv.pw1 (144 → 288); A [r, in], B [out, r].
        let perBlock = 2 * (4 * 576 + 144 * 4) + (4 * 144 + 144 * 4) + (4 * 144 + 288 * 4)
        XCTAssertEqual(l.adapterParameterCount, 4 * perBlock)
        XCTAssertEqual(l.parameterCount, plain.parameterCount + 4 * perBlock)
        XCTAssertEqual(l.entry("mlm.blocks.1.conv.pw1.lora_b").shape, [288, 4])
        XCTAssertEqual(l.entry("contrastive.blocks.0.ffn2.fc2.lora_a").shape, [4, 576])
        // Base tensors are initialised exactly as in the plain model (streams keyed by name); B starts at 0.
        let p = FloatBuffer(count: l.count), q = FloatBuffer(count: plain.count)
        l.initialize(p.ptr, seed: 3)
        plain.initialize(q.ptr, seed: 3)
        for e in plain.entries {
            XCTAssert(
                Array(UnsafeBufferPointer(start: p.ptr + l.entry(e.name).offset, count: e.count))
                    == Array(UnsafeBufferPointer(start: q.ptr + e.offset, count: e.count)), e.name)
        }
        XCTAssert(
            UnsafeBufferPointer(start: p.ptr + l.entry("mlm.blocks.0.attn.out.lora_b").offset, count: 144 * 4)
                .allSatisfy { $0 == 0 })
        // Trainable ranges: one per block, covering exactly the adapters; the optimizer keeps state for them only.
        let r = l.trainableRanges(c)
        XCTAssertEqual(r.count, 4)
        for e in l.entries {
            XCTAssertEqual(r.contains { $0.contains(e.offset) }, ParameterLayout.isAdapter(e.name), e.name)
        }
        XCTAssertEqual(Optimizer(config: c, layout: l).stateCount, r.reduce(0) { $0 + $1.count })
        c.train.trainable = .all
        XCTAssertEqual(l.trainableRanges(c), [0..<l.count])
    }
}

/// Hyper-lora speaker-adapter keys and layout.
final class HyperLoRAConfigTests: XCTestCase {
    func testKeysAndLayout() throws {
        func key(_ o: [String]) -> String? {
            var c = try! Config.preset("tiny")
            do {
                try c.apply(overrides: o)
                return nil
            } catch let e as ConfigError { return e.key } catch { return "?" }
        }
        XCTAssertEqual(key(["adapter.kind=hyper-lora", "adapter.speaker_dim=0"]), "adapter.speaker_dim")
        XCTAssertEqual(key(["adapter.kind=hyper-lora", "adapter.layer_dim=0"]), "adapter.layer_dim")
        XCTAssertEqual(key(["adapter.kind=hyper-lora", "adapter.speaker=voice"]), "adapter.speaker")
        XCTAssertEqual(key(["adapter.kind=hyper-lora", "adapter.rank=0"]), "adapter.rank")
        XCTAssertEqual(key(["adapter.kind=hyper-lora", "model.hypernetwork=ffn"]), "model.hypernetwork")
        XCTAssertNil(key(["adapter.kind=hyper-lora", "train.trainable=adapters"]))
        var c = try Config.load(
            preset: "tiny",
            overrides: [
                "adapter.kind=hyper-lora", "adapter.rank=4", "adapter.alpha=8",
                "adapter.speaker_dim=5", "adapter.layer_dim=3",
                "adapter.targets=attn.q,conv.pw1", "train.trainable=adapters"
            ])
        var back = Config()
        try back.apply(yaml: c.yaml)
        XCTAssertEqual(back, c)
        let l = ParameterLayout(config: c), plain = ParameterLayout(config: try Config.preset("tiny"))
        // speaker.proj [5, 144] + [5]; layer embedding [4, 3]; per site gen_a [H, r, in], gen_b [H, out, r], H = 8.
        let n = 5 * 144 + 5 + 4 * 3 + 8 * 4 * (144 + 144) + 8 * 4 * (144 + 288)
        XCTAssertEqual(l.adapterParameterCount, n)
        XCTAssertEqual(l.parameterCount, plain.parameterCount + n)
        XCTAssertEqual(l.entry("hyperlora.conv.pw1.gen_b").shape, [8, 288, 4])
        XCTAssertEqual(l.entry("hyperlora.attn.q.gen_a").shape, [8, 4, 144])
        XCTAssertNil(l["mlm.blocks.0.attn.q.lora_a"])
        // The adapters are one contiguous trainable range (after the blocks); gen_b starts at 0.
        let r = l.trainableRanges(c)
        XCTAssertEqual(r.count, 1)
        for e in l.entries {
            XCTAssertEqual(r.contains { $0.contains(e.offset) }, ParameterLayout.isAdapter(e.name), e.name)
        }
        let p = FloatBuffer(count: l.count)
        l.initialize(p.ptr, seed: 3)
        XCTAssert(
            UnsafeBufferPointer(start: p.ptr + l.entry("hyperlora.attn.q.gen_b").offset, count: 8 * 144 * 4).allSatisfy
            { $0 == 0 })
        c.train.trainable = .all
        XCTAssertEqual(l.trainableRanges(c), [0..<l.count])
    }

    /// adapter.speaker = table: speaker.table [N + 1, S] (no weight decay) replaces the speaker encoder; known rows
    /// N(0, 1), the unknown row (last) zeros; adapter.speakers round-trips and is validated.
    func testTableKeysAndLayout() throws {
        var bad = try Config.preset("tiny")
        XCTAssertThrowsError(
            try bad.apply(overrides: ["adapter.kind=hyper-lora", "adapter.speaker=table", "adapter.speakers=-1"])
        ) {
            XCTAssertEqual(($0 as? ConfigError)?.key, "adapter.speakers")
        }
        let c = try Config.load(
            preset: "tiny",
            overrides: [
                "adapter.kind=hyper-lora", "adapter.speaker=table", "adapter.speakers=5",
                "adapter.speaker_dim=3", "adapter.layer_dim=2", "adapter.targets=attn.q"
            ])
        XCTAssert(c.adapter.isTable)
        var back = Config()
        try back.apply(yaml: c.yaml)
        XCTAssertEqual(back, c)
        let l = ParameterLayout(config: c)
        XCTAssertNil(l["speaker.proj.weight"])
        let e = l.entry("speaker.table")
        XCTAssertEqual(e.shape, [6, 3])
        XCTAssertFalse(e.decay)
        XCTAssert(ParameterLayout.isAdapter(e.name))
        XCTAssertEqual(l.adapterParameterCount, 6 * 3 + 4 * 2 + 2 * 5 * 8 * 144)  // table, layer embedding, attn.q gen_a/gen_b (H 5, r 8)
        let p = FloatBuffer(count: l.count)
        l.initialize(p.ptr, seed: 3)
        let t = Array(UnsafeBufferPointer(start: p.ptr + e.offset, count: 18))
        XCTAssert(t[0..<15].allSatisfy { $0 != 0 } && t[15...].allSatisfy { $0 == 0 }, "\(t)")
    }
}

/// Hypernetwork keys and layout.
final class HypernetworkConfigTests: XCTestCase {
    func testKeysAndLayout() throws {
        func key(_ o: [String]) -> String? {
            var c = try! Config.preset("tiny")
            do {
                try c.apply(overrides: o)
                return nil
            } catch let e as ConfigError { return e.key } catch { return "?" }
        }
        XCTAssertEqual(key(["model.hypernetwork=attn"]), "model.hypernetwork")
        XCTAssertEqual(key(["model.hypernetwork=ffn", "model.hyper_dim=0"]), "model.hyper_dim")
        XCTAssertEqual(key(["model.hypernetwork=ffn", "model.hyper_rank=-1"]), "model.hyper_rank")
        XCTAssertEqual(key(["model.hypernetwork=ffn", "adapter.kind=lora"]), "model.hypernetwork")
        let c = try Config.load(
            preset: "tiny", overrides: ["model.hypernetwork=ffn+conv", "model.hyper_dim=3", "model.hyper_rank=2"])
        var back = Config()
        try back.apply(yaml: c.yaml)
        XCTAssertEqual(back, c)
        let l = ParameterLayout(config: c), plain = ParameterLayout(config: try Config.preset("tiny"))
        let (d, f, L, E, r) = (144, 576, 4, 3, 2)
        let gen = 2 * (f * d + d * f) + 2 * d * d + d * d  // per block: 4 FFN weights, pw1, pw2
        let res = 2 * (r * d + f * r + r * f + d * r) + (r * d + 2 * d * r) + (r * d + d * r)
        XCTAssertEqual(l.parameterCount, plain.parameterCount - L * gen + (1 + E) * gen + L * E + L * res)
        XCTAssertNil(l["contrastive.blocks.0.ffn1.fc1.weight"])
        XCTAssertNotNil(l["contrastive.blocks.0.ffn1.fc1.bias"])
        XCTAssertEqual(l.entry("hypernet.conv.pw1.coef").shape, [E, 2 * d, d])
        XCTAssertEqual(l.entry("mlm.blocks.1.ffn2.fc2.res_b").shape, [d, r])
    }
}
