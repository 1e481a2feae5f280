import XCTest
import Foundation
import Training
import Tensor
import W2VBert
import TestSupport

/// Hugging Face export and import. The fixture `Fixtures/hf_micro` was written by transformers
/// itself (`Wav2Vec2BertModel(config).save_pretrained`, weights perturbed), with HF's last_hidden_state on
/// a padded batch in `hf_micro_expected.safetensors` (Tests/W2VBertTests/twin/hf_check.py fixture); no
/// PyTorch is needed here. launch/check-hf.sh runs the real round trip through transformers.
final class HuggingFaceTests: XCTestCase {
    static let micro = fixtures + "/hf_micro"

    /// tiny2 with the micro fixture's architecture (d 32, 2 heads, f 48, k 5, shaw 5/3, 1 + 2 blocks).
    static func microConfig() throws -> Config {
        try Config.load(
            preset: "tiny2",
            overrides: [
                "model.dim=32", "model.heads=2", "model.ffn_dim=48",
                "model.conv_kernel=5",
                "model.shaw_left=5", "model.shaw_right=3", "model.contrastive_blocks=1",
                "model.mlm_blocks=2", "model.final_dim=16", "quantizer.entries=24", "quantizer.dim=16"
            ])
    }

    func testPresetsOfTheFamilyAreExportableAndTheDefaultIsNot() throws {
        for p in [
            "tiny2", "small2", "base2",
            "w2v-bert-2.0"
        ] { XCTAssertNil(HuggingFace.exportBlocker(try Config.preset(p)), p) }
        let big = try Config.preset("w2v-bert-2.0")
        XCTAssertEqual(
            [
                big.model.dim, big.model.contrastiveBlocks + big.model.mlmBlocks, big.model.heads,
                big.model.ffnDim, big.model.convKernel
            ],
            [1024, 24, 16, 4096, 31])
        // Each option HF cannot express is named, one at a time from the family.
        let cases: [(String, String)] = [
            ("model.frontend=conv2d", "model.frontend"),
            (
                "model.frontend_norm=true",
                "model.frontend_norm"
            ),
            ("model.context_proj=true", "model.context_proj"),
            (
                "model.position=conv",
                "model.position"
            ),
            ("model.position=rope", "model.position"),
            (
                "model.causal_conv=false",
                "model.causal_conv"
            ),
            ("model.conv_kernel=4", "model.conv_kernel")
        ]
        for (o, key) in cases {
            let c = try Config.load(preset: "tiny2", overrides: [o])
            XCTAssertEqual(HuggingFace.exportBlocker(c)?.key, key, o)
        }
        XCTAssertEqual(HuggingFace.exportBlocker(try Config.preset("tiny"))?.key, "model.frontend")
        XCTAssertNil(HuggingFace.exportBlocker(try Config.load(preset: "tiny2", overrides: ["model.position=none"])))
        let l = ParameterLayout(config: try Config.preset("tiny"))
        XCTAssertThrowsError(
            try HuggingFace.export(
                config: try Config.preset("tiny"), layout: l,
                to: tempDir("hfx")
            ) { _ in UnsafePointer(bitPattern: 8)! }
        ) {
            XCTAssert("\($0)".contains("model.frontend"), "\($0)")
        }
    }

    func testExportThenImportIsBitIdenticalAndRestoresTheConfig() throws {
        var c = try Config.preset("tiny2")
        c.model.contrastiveBlocks = 1
        c.model.mlmBlocks = 2
        c.train.seed = 7
        let l = ParameterLayout(config: c)
        let a = FloatBuffer(count: l.count)
        l.initialize(a.ptr, seed: 7)
        var rng = RandomStream(seed: 99, purpose: .initialization)
        for i in 0..<l.count { a.ptr[i] += 0.01 * rng.nextNormal() }  // no norm at 1, no bias at 0
        let dir = tempDir("hf")
        let left = try HuggingFace.export(config: c, layout: l, to: dir) { CFPtr(a.ptr + $0.offset) }
        XCTAssertEqual(Set(left), Set(l.entries.map(\.name).filter(HuggingFace.isHeadOrQuantizer)))
        for f in [
            "config.json", "model.safetensors",
            "preprocessor_config.json"
        ] { XCTAssert(FileManager.default.fileExists(atPath: dir + "/" + f), f) }
        let src = try HuggingFace.open(dir)
        XCTAssertEqual(src.weights.entries["encoder.layers.2.conv_module.depthwise_conv.weight"]?.shape, [144, 1, 15])
        XCTAssertEqual(src.weights.entries["encoder.layers.0.self_attn.distance_embedding.weight"]?.shape, [73, 36])
        XCTAssertEqual(src.weights.entries["masked_spec_embed"]?.shape, [144])
        let back = try HuggingFace.config(for: src, base: nil)
        XCTAssertEqual(back, c)
        let b = FloatBuffer(count: l.count)
        l.initialize(b.ptr, seed: 123)
        let fresh = FloatBuffer(count: l.count)
        l.initialize(fresh.ptr, seed: 123)
        let summary = try InitialWeights.load(from: dir, config: back, layout: l, params: b.ptr)
        XCTAssert(summary.contains("fresh (absent from the source): contrastive_head, mlm_head, quantizer"), summary)
        for e in l.entries {
            let want = HuggingFace.isHeadOrQuantizer(e.name) ? fresh.ptr + e.offset : a.ptr + e.offset
            XCTAssertEqual(memcmp(b.ptr + e.offset, want, e.count * 4), 0, e.name)
        }
    }

    func testImportOfAFolderWrittenByTransformersMatchesItsHiddenStates() throws {
        let src = try HuggingFace.open(Self.micro)
        let c = try HuggingFace.config(for: src, base: try Config.preset("tiny2"))
        XCTAssertEqual(
            c,
            try Self.microConfig().with {
                $0.model.finalDim = 64
                $0.quantizer.entries = 128
                $0.quantizer.dim = 128
            })
        let exp = try SafeTensors.open(path: fixtures + "/hf_micro_expected.safetensors")
        let feats = try exp.array("input.features"), ref = try exp.array("out.last_hidden_state")
        let t0s = try exp.array("input.lengths")
        let b = t0s.count, t0 = feats.count / (b * 80)
        let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: b, maxFrames: t0)
        _ = try InitialWeights.load(from: Self.micro, config: c, layout: model.layout, params: model.params.ptr)
        let lens = t0s.map { Int32($0) }
        let t = c.encoderLength(t0: t0), d = c.model.dim
        let h = feats.withUnsafeBufferPointer { fp in
            lens.withUnsafeBufferPointer {
                model.embed(
                    features: fp.baseAddress!, lengths: $0.baseAddress!, batch: b,
                    frames: t0)
            }
        }
        var worst = 0.0, scale = 0.0
        for u in 0..<b {
            for i in 0..<(Int(lens[u]) / 2 * d) {
                worst = max(worst, Double(abs(h[u * t * d + i] - ref[u * t * d + i])))
                scale = max(scale, Double(abs(ref[u * t * d + i])))
            }
        }
        print("hf_micro: HF last_hidden_state vs embed, padded batch \(lens): max |Δ| \(worst) / max |ref| \(scale)")
        XCTAssertGreaterThan(scale, 0.1)
        XCTAssertLessThan(worst / scale, 1e-4)
    }

    func testMismatchesAreRefusedNamingTheTensor() throws {
        // Wider model: the first HF tensor with another shape is named.
        var c = try Self.microConfig()
        c.model.dim = 48
        var l = ParameterLayout(config: c), p = FloatBuffer(count: l.count)
        XCTAssertThrowsError(try InitialWeights.load(from: Self.micro, config: c, layout: l, params: p.ptr)) {
            XCTAssert("\($0)".contains("has shape") && "\($0)".contains("encoder.layers.0."), "\($0)")
        }
        // Fewer layers: HF's layer 2 has no place.
        c = try Self.microConfig()
        c.model.mlmBlocks = 1
        l = ParameterLayout(config: c)
        p = FloatBuffer(count: l.count)
        XCTAssertThrowsError(try InitialWeights.load(from: Self.micro, config: c, layout: l, params: p.ptr)) {
            XCTAssert("\($0)".contains("'encoder.layers.2.") && "\($0)".contains("no place"), "\($0)")
        }
        // More layers: the model's block without a source tensor is named.
        c = try Self.microConfig()
        c.model.mlmBlocks = 3
        l = ParameterLayout(config: c)
        p = FloatBuffer(count: l.count)
        XCTAssertThrowsError(try InitialWeights.load(from: Self.micro, config: c, layout: l, params: p.ptr)) {
            XCTAssert("\($0)".contains("lacks tensor 'mlm.blocks.2."), "\($0)")
        }
        // A context projection the HF model does not have.
        c = try Self.microConfig()
        c.model.contextProj = true
        l = ParameterLayout(config: c)
        p = FloatBuffer(count: l.count)
        XCTAssertThrowsError(try InitialWeights.load(from: Self.micro, config: c, layout: l, params: p.ptr)) {
            XCTAssert("\($0)".contains("lacks tensor 'context_proj.weight'"), "\($0)")
        }
    }

    /// The CLI: import-hf → export-hf reproduces transformers' tensors bit for bit; train --init-from starts
    /// at step 0 from them (lr 1e-9: after one step the encoder is still HF's to 1e-6) and refuses a model
    /// of another width naming the tensor.
    func testImportExportAndInitFromCommands() throws {
        let exe = DistributedTrainingTests.exe, dir = tempDir("hfcli")
        var r = try runCommand([exe, "import-hf", Self.micro, "--out", dir + "/ck", "--preset", "tiny2"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("1 contrastive + 2 MLM blocks"), r.output)
        r = try runCommand([exe, "export-hf", dir + "/ck", "--out", dir + "/back"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("left out (transformers has no use for them): quantizer.proj.weight"), r.output)
        let x = try SafeTensors.open(path: Self.micro + "/model.safetensors")
        let y = try SafeTensors.open(path: dir + "/back/model.safetensors")
        XCTAssertEqual(Set(x.entries.keys), Set(y.entries.keys))
        for k in x.entries.keys { XCTAssertEqual(try x.array(k), try y.array(k), k) }

        // A checkpoint of the default architecture is refused naming the key (before any tensor is read).
        try FileManager.default.createDirectory(atPath: dir + "/tiny", withIntermediateDirectories: true)
        var st = TrainerState()
        st.config = try Config.preset("tiny").yaml
        try st.encoded().write(to: URL(fileURLWithPath: dir + "/tiny/trainer.json"))
        r = try runCommand([exe, "export-hf", dir + "/tiny", "--out", dir + "/tiny-hf"], timeout: 60)
        XCTAssertEqual(r.status, 1, r.output)  // an input that cannot be exported: status 1 (README "Exit statuses")
        XCTAssert(r.output.contains("cannot export to Hugging Face: config key 'model.frontend' is conv2d"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/tiny-hf"))

        let micro = [
            "--preset", "tiny2", "--set", "model.dim=32", "--set", "model.heads=2", "--set",
            "model.ffn_dim=48",
            "--set", "model.conv_kernel=5", "--set", "model.shaw_left=5", "--set", "model.shaw_right=3",
            "--set", "model.contrastive_blocks=1", "--set", "model.mlm_blocks=2", "--quiet", "--set", "compute.precision=fp32",
            "--set", "train.max_frames=1200", "--set", "train.max_samples=48000", "--set", "train.save_interval=1"
        ]
        r = try runCommand(
            [
                exe, "train", "--train", DistributedTrainingTests.slice, "--run-dir", dir + "/run",
                "--max-steps", "1",
                "--init-from", Self.micro, "--set", "optimizer.lr=1e-9"
            ] + micro, environment: mpirunEnvironment, timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        let ck = try SafeTensors.open(path: dir + "/run/checkpoints/step-00000001/model.safetensors")
        let src = try HuggingFace.open(Self.micro)
        let c = try HuggingFace.config(for: src, base: try Config.preset("tiny2"))
        var worst: Float = 0
        for e in ParameterLayout(config: c).entries {
            guard let hf = HuggingFace.hfName(e.name, shape: e.shape, config: c) else { continue }
            worst = max(worst, zip(try ck.array(e.name), try x.array(hf.name)).map { abs($0 - $1) }.max()!)
        }
        XCTAssertLessThan(worst, 1e-6, "encoder after one step at lr 1e-9")
        let state =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/checkpoints/step-00000001/trainer.json")))
            as! [String: Any]
        XCTAssertEqual(state["optimizer_step"] as? Int, 1)

        r = try runCommand(
            [
                exe, "train", "--train", DistributedTrainingTests.slice, "--run-dir", dir + "/bad",
                "--max-steps", "1",
                "--init-from", Self.micro
            ] + micro + [
                "--set",
                "model.dim=48"
            ], environment: mpirunEnvironment, timeout: 120)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(
            r.output.contains("--init-from") && r.output.contains("has shape")
                && r.output.contains("the model expects"), r.output)
    }
}

extension Config {
    func with(_ f: (inout Config) -> Void) -> Config {
        var c = self
        f(&c)
        return c
    }
}
