import Foundation
import XCTest
import W2VBert
import Tensor

/// A minimal safetensors reader for the twin's fixtures (F32, F64, I32, U8 → Double arrays).
struct SafeTensors {
    struct Tensor {
        let shape: [Int]
        let values: [Double]
    }
    var tensors: [String: Tensor] = [:]
    var metadata: [String: String] = [:]

    init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + Int(n)))) as! [String: Any]
        let base = 8 + Int(n)
        for (name, v) in header {
            if name == "__metadata__" {
                metadata = v as! [String: String]
                continue
            }
            let info = v as! [String: Any]
            let shape = (info["shape"] as! [NSNumber]).map(\.intValue)
            let offs = (info["data_offsets"] as! [NSNumber]).map(\.intValue)
            let bytes = data.subdata(in: (base + offs[0])..<(base + offs[1]))
            let values: [Double] = bytes.withUnsafeBytes { raw in
                switch info["dtype"] as! String {
                case "F32": return raw.bindMemory(to: Float.self).map(Double.init)
                case "F64": return Array(raw.bindMemory(to: Double.self))
                case "I32": return raw.bindMemory(to: Int32.self).map(Double.init)
                case "U8": return raw.bindMemory(to: UInt8.self).map(Double.init)
                default: fatalError("unsupported dtype")
                }
            }
            tensors[name] = Tensor(shape: shape, values: values)
        }
    }
    subscript(_ name: String) -> Tensor { tensors[name]! }

    /// The config the fixture was written with (its preset and overrides), then `extra` overrides.
    func config(extra: [String] = []) throws -> Config {
        try Config.load(
            preset: metadata["preset"]!,
            overrides: metadata["overrides"]!.split(separator: "\n").map(String.init) + extra)
    }

    /// Copies every `param.NAME` tensor into `params` at its layout entry; the fixture must hold exactly the
    /// layout's tensors, each with the layout's shape.
    func loadParameters(into params: UnsafeMutablePointer<Float>, layout: ParameterLayout) {
        let names = Set(tensors.keys.filter { $0.hasPrefix("param.") }.map { String($0.dropFirst(6)) })
        XCTAssertEqual(names, Set(layout.entries.map(\.name)), "parameter names differ from the twin's")
        for e in layout.entries {
            let t = self["param.\(e.name)"]
            XCTAssertEqual(t.shape, e.shape, "shape of \(e.name)")
            for i in 0..<e.count { params[e.offset + i] = Float(t.values[i]) }
        }
    }
}

func fixturePath(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("fixtures/\(name)").path
}

/// A model set up from a twin fixture: config, parameters, inputs and injected random draws.
final class FixtureRun {
    let st: SafeTensors
    let config: Config
    let model: W2VBertModel
    var features: [Float]
    let lengths: [Int32], mask: [UInt8]
    /// adapter.speaker = table fixtures: each utterance's speaker row (−1 unknown); nil otherwise.
    let speakers: [Int32]?
    let b: Int, t0: Int

    /// `extra`: overrides applied after the fixture's own (e.g. train.trainable=all on a LoRA fixture).
    init(_ name: String, extra: [String] = [], compute: Compute = .fp32()) throws {
        st = try SafeTensors(path: fixturePath(name))
        config = try st.config(extra: extra)
        let f = st["input.features"]
        b = f.shape[0]
        t0 = f.shape[1]
        features = f.values.map(Float.init)
        lengths = st["input.lengths"].values.map { Int32($0) }
        mask = st["input.mask"].values.map { UInt8($0) }
        speakers = st.tensors["input.speakers"].map { $0.values.map { Int32($0) } }
        model = W2VBertModel(config: config, compute: compute, maxBatch: b, maxFrames: t0)
        st.loadParameters(into: model.params.ptr, layout: model.layout)
        var masks: [[Float]] = []
        while let m = st.tensors["noise.dropout.\(masks.count)"] { masks.append(m.values.map(Float.init)) }
        model.noiseOverride = NoiseOverride(
            maskNoise: st["noise.mask"].values.map(Float.init),
            gumbel: st["noise.gumbel"].values.map(Float.init),
            distractors: st["noise.distractors"].values.map { Int32($0) },
            dropoutMasks: masks.isEmpty ? nil : masks,
            droppedBlocks: st.tensors["noise.dropped"].map {
                $0.values.map { $0 != 0 }
            })
    }

    func forward(tau: Float) -> StepStats {
        features.withUnsafeBufferPointer { fp in
            lengths.withUnsafeBufferPointer { lp in
                mask.withUnsafeBufferPointer { mp in
                    (speakers ?? []).withUnsafeBufferPointer { sp in
                        model.forward(
                            BatchView(
                                features: fp.baseAddress!, lengths: lp.baseAddress!, mask: mp.baseAddress!,
                                batch: b, frames: t0, key: RandomKey(seed: 1, step: 0, microBatch: 0),
                                conditioning: speakers == nil ? nil : sp.baseAddress), tau: tau)
                    }
                }
            }
        }
    }
}
