// Hugging Face `transformers` interchange (docs/huggingface.md). A CTC model's export: HuggingFaceCTC.swift.
//
// The encoder of a config in the Hugging Face family (presets tiny2, small2, base2, w2v-bert-2.0) maps one
// to one onto `Wav2Vec2BertModel`: the feature projection, then N + M Conformer blocks as
// `encoder.layers.0 … N+M−1` (contrastive blocks first). The quantizer, the contrastive head and the MLM
// head have no counterpart there and are left out of an export; an import initialises them fresh.
//
// Names and layouts (ours → HF; block i of the contrastive stack is layer i, MLM block j is layer N + j):
//   feature_encoder.stack_norm.*        → feature_projection.layer_norm.*
//   feature_encoder.proj.*              → feature_projection.projection.*
//   mask_embedding [d]                  → masked_spec_embed [d]
//   …blocks.i.ffn{1,2}.norm.*           → encoder.layers.L.ffn{1,2}_layer_norm.*
//   …blocks.i.ffn{1,2}.fc1.* / fc2.*    → encoder.layers.L.ffn{1,2}.intermediate_dense.* / output_dense.*
//   …blocks.i.attn.norm.*               → encoder.layers.L.self_attn_layer_norm.*
//   …blocks.i.attn.{q,k,v,out}.*        → encoder.layers.L.self_attn.linear_{q,k,v,out}.*
//   …blocks.i.attn.rel_key [Lp+Rp+1,dh] → encoder.layers.L.self_attn.distance_embedding.weight (same layout:
//                                          row clamp(j − i, −Lp, Rp) + Lp in both)
//   …blocks.i.conv.norm.*               → encoder.layers.L.conv_module.layer_norm.*
//   …blocks.i.conv.pw1.weight [2d, d]   → encoder.layers.L.conv_module.pointwise_conv1.weight [2d, d, 1]
//   …blocks.i.conv.dw.weight [d, k]     → encoder.layers.L.conv_module.depthwise_conv.weight [d, 1, k]
//   …blocks.i.conv.dw_norm.*            → encoder.layers.L.conv_module.depthwise_layer_norm.*
//   …blocks.i.conv.pw2.weight [d, d]    → encoder.layers.L.conv_module.pointwise_conv2.weight [d, d, 1]
//   …blocks.i.norm.*                    → encoder.layers.L.final_layer_norm.*
// The reshapes only add unit dimensions, so the bytes are the same (export → import is bit-identical).

import Audio
import Foundation
import Tensor
import W2VBert

public struct HuggingFaceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum HuggingFace {
    /// Tensors an export leaves out and an import initialises fresh when the source lacks them.
    public static func isHeadOrQuantizer(_ name: String) -> Bool {
        name.hasPrefix("quantizer.") || name.hasPrefix("contrastive_head.") || name.hasPrefix("mlm_head.")
    }

    /// Nil when `Wav2Vec2BertModel` (model.head pretrain) or `Wav2Vec2BertForCTC` (model.head ctc) can express
    /// the config; else the first key it cannot, with the reason.
    public static func exportBlocker(_ c: Config) -> ConfigError? {
        let m = c.model
        if c.data.kind != .audio {
            return ConfigError(
                "data.kind", "is \(c.data.kind.rawValue); Wav2Vec2BertModel reads 80-bin fbank frames of speech")
        }
        if !m.stackNorm {
            return ConfigError(
                "model.stack_norm", "is false; Wav2Vec2BertModel has the LayerNorm(160) of the stacked frames")
        }
        if m.stackFrames != 2 {
            return ConfigError(
                "model.stack_frames", "is \(m.stackFrames); Wav2Vec2BertModel stacks 2 frames (its stride)")
        }
        if m.frontend != .stack {
            return ConfigError(
                "model.frontend",
                "is \(m.frontend.rawValue); Wav2Vec2BertModel has only the stack front end (LayerNorm(160) → "
                    + "Linear(160 → d))"
            )
        }
        if m.frontendNorm {
            return ConfigError(
                "model.frontend_norm", "is true; Wav2Vec2BertModel has no LayerNorm(d) after the feature projection")
        }
        if m.contextProj {
            return ConfigError(
                "model.context_proj", "is true; Wav2Vec2BertModel has no context projection after masking")
        }
        switch m.position {
        case .shaw, .none: break
        case .conv:
            return ConfigError(
                "model.position",
                "is conv; Wav2Vec2BertModel has no convolutional positional embedding (use shaw or none)")
        case .rope:
            return ConfigError(
                "model.position",
                "is rope; Wav2Vec2BertModel's rotary embedding rotates the input of the q/k projections, this model "
                    + "rotates q and k after them (use shaw or none)"
            )
        }
        if !m.causalConv {
            return ConfigError(
                "model.causal_conv",
                "is false; Wav2Vec2BertModel's depthwise convolution is causal (left padding k − 1)")
        }
        if m.convKernel % 2 == 0 {
            return ConfigError(
                "model.conv_kernel", "is \(m.convKernel); Wav2Vec2BertModel requires an odd depthwise kernel")
        }
        // Generated weights are not materialised for export (LoRA adapters are merged instead).
        if m.hypernetwork != .none {
            return ConfigError(
                "model.hypernetwork",
                "is \(m.hypernetwork.rawValue); export-hf does not write hypernetwork-generated weights")
        }
        return nil
    }

    /// The HF name and shape of one of our encoder tensors; nil for the quantizer and heads (and for names
    /// that are not ours).
    public static func hfName(_ name: String, shape: [Int], config c: Config) -> (name: String, shape: [Int])? {
        if isHeadOrQuantizer(name) { return nil }
        let fixed: [String: String] = [
            "feature_encoder.stack_norm.weight": "feature_projection.layer_norm.weight",
            "feature_encoder.stack_norm.bias": "feature_projection.layer_norm.bias",
            "feature_encoder.proj.weight": "feature_projection.projection.weight",
            "feature_encoder.proj.bias": "feature_projection.projection.bias",
            "mask_embedding": "masked_spec_embed",
        ]
        if let f = fixed[name] { return (f, shape) }
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)  // module, blocks, i, rest
        guard parts.count == 4, parts[1] == "blocks", let i = Int(parts[2]) else { return nil }
        let layer: Int
        switch parts[0] {
        case "contrastive": layer = i
        case "mlm": layer = c.model.contrastiveBlocks + i
        default: return nil
        }
        let rest = parts[3]
        let table: [String: String] = [
            "ffn1.norm": "ffn1_layer_norm", "ffn1.fc1": "ffn1.intermediate_dense", "ffn1.fc2": "ffn1.output_dense",
            "ffn2.norm": "ffn2_layer_norm", "ffn2.fc1": "ffn2.intermediate_dense", "ffn2.fc2": "ffn2.output_dense",
            "attn.norm": "self_attn_layer_norm", "attn.q": "self_attn.linear_q", "attn.k": "self_attn.linear_k",
            "attn.v": "self_attn.linear_v", "attn.out": "self_attn.linear_out",
            "conv.norm": "conv_module.layer_norm", "conv.pw1": "conv_module.pointwise_conv1",
            "conv.dw": "conv_module.depthwise_conv", "conv.dw_norm": "conv_module.depthwise_layer_norm",
            "conv.pw2": "conv_module.pointwise_conv2", "norm": "final_layer_norm",
        ]
        let prefix = "encoder.layers.\(layer)."
        if rest == "attn.rel_key" { return (prefix + "self_attn.distance_embedding.weight", shape) }
        guard let dot = rest.lastIndex(of: ".") else { return nil }
        let module = String(rest[..<dot]), leaf = String(rest[rest.index(after: dot)...])
        guard let hf = table[module] else { return nil }
        var s = shape
        switch module {
        case "conv.pw1", "conv.pw2": s = shape + [1]  // Conv1d(kernel 1) [out, in, 1]
        case "conv.dw": s = [shape[0], 1, shape[1]]  // depthwise Conv1d [d, 1, k]
        default: break
        }
        return (prefix + hf + "." + leaf, s)
    }

    /// config.json for `Wav2Vec2BertConfig` (keys it does not know are not written).
    public static func configJSON(_ c: Config) -> [String: Any] {
        let m = c.model, p = Double(m.dropout)
        let j: [String: Any] = [
            "architectures": ["Wav2Vec2BertModel"], "model_type": "wav2vec2-bert",
            "hidden_size": m.dim, "num_hidden_layers": m.contrastiveBlocks + m.mlmBlocks,
            "num_attention_heads": m.heads, "intermediate_size": m.ffnDim,
            "feature_projection_input_dim": 2 * Config.melBins,
            "hidden_act": "swish", "layer_norm_eps": 1e-5,
            // The one dropout rate of docs/method.md: after FFN activations and at the end of every residual branch.
            // (HF's attention_dropout also drops attention probabilities, which this trainer never does.)
            "hidden_dropout": p, "activation_dropout": p, "attention_dropout": p, "conformer_conv_dropout": p,
            "feat_proj_dropout": 0.0, "layerdrop": Double(m.layerDrop),
            "position_embeddings_type": m.position == .shaw ? "relative_key" as Any : NSNull(),
            "left_max_position_embeddings": m.shawLeft, "right_max_position_embeddings": m.shawRight,
            "conv_depthwise_kernel_size": m.convKernel,
            "add_adapter": false, "use_intermediate_ffn_before_adapter": false,
            // Fine-tuning SpecAugment (HF's defaults); masked_spec_embed is the pre-trained mask embedding.
            "apply_spec_augment": true, "mask_time_prob": c.mask.replacement == .learned ? 0.05 : 0.0,
            "mask_time_length": 10, "mask_time_min_masks": 2,
            "dtype": "float32",
        ]
        return j
    }

    public static var preprocessorJSON: [String: Any] {
        [
            "feature_extractor_type": "SeamlessM4TFeatureExtractor", "processor_class": "Wav2Vec2BertProcessor",
            "feature_size": Config.melBins, "num_mel_bins": Config.melBins, "sampling_rate": 16000, "stride": 2,
            "padding_side": "right", "padding_value": 0.0, "return_attention_mask": true,
        ]
    }

    /// Writes `o` as pretty-printed JSON with sorted keys and a final newline, durably.
    public static func writeJSON(_ o: [String: Any], to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .prettyPrinted])
        try writeDurably(data + Data("\n".utf8), to: path)
    }

    /// Writes DIR/{config.json, model.safetensors, preprocessor_config.json}; for model.head ctc a
    /// `Wav2Vec2BertForCTC` folder with the tokenizer files of `vocabulary` (its size must be model.vocab_size).
    /// `tensor(name)` gives the floats of one of our tensors. Returns the names left out (quantizer and heads).
    @discardableResult
    public static func export(
        config c: Config, layout: ParameterLayout, vocabulary: CTCVocabulary? = nil, to dir: String,
        tensor: (ParameterEntry) -> UnsafePointer<Float>
    ) throws -> [String] {
        if let b = exportBlocker(c) { throw HuggingFaceError("cannot export: config key '\(b.key)' \(b.message)") }
        let ctc = c.model.head == .ctc
        if ctc && vocabulary?.size != c.model.vocabSize {
            throw HuggingFaceError(
                "cannot export: the dictionary has \(vocabulary.map { "\($0.size)" } ?? "no") entries, the CTC head "
                    + "model.vocab_size = \(c.model.vocabSize)")
        }
        var entries: [TensorEntry] = [], sources: [ParameterEntry] = [], left: [String] = []
        for e in layout.entries {
            let name = ctc ? ctcName(e.name, shape: e.shape, config: c) : hfName(e.name, shape: e.shape, config: c)
            guard let hf = name else {
                left.append(e.name)
                continue
            }
            entries.append(TensorEntry(name: hf.name, shape: hf.shape))
            sources.append(e)
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // "format": "pt" is what transformers' loader expects; the resolved config lets import-hf restore
        // the contrastive/MLM split, the quantizer and the training settings exactly.
        try SafeTensors.write(
            path: dir + "/model.safetensors", entries: entries,
            metadata: ["format": "pt", "w2vbert_config": c.yaml]
        ) { tensor(sources[$0]) }
        try writeJSON(ctc ? ctcConfigJSON(c) : configJSON(c), to: dir + "/config.json")
        try writeJSON(preprocessorJSON, to: dir + "/preprocessor_config.json")
        if ctc, let vocabulary { try writeTokenizer(vocabulary, to: dir) }
        return left
    }

    // MARK: Import

    /// Whether `dir` looks like a Hugging Face model folder (config.json next to the weights).
    public static func isModelDirectory(_ dir: String) -> Bool {
        FileManager.default.fileExists(atPath: dir + "/config.json")
    }

    /// An HF model folder: its config.json and its weights (a single model.safetensors).
    public struct Source {
        public let dir: String
        public let json: [String: Any]
        public let weights: SafeTensors.File
    }

    public static func open(_ dir: String) throws -> Source {
        guard let d = FileManager.default.contents(atPath: dir + "/config.json"),
            let json = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any]
        else {
            throw HuggingFaceError("\(dir)/config.json: missing or not a JSON object")
        }
        let st = dir + "/model.safetensors"
        guard FileManager.default.fileExists(atPath: st) else {
            let sharded = FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json")
            throw HuggingFaceError(
                "\(st): missing"
                    + (sharded
                        ? " (sharded weights are not supported: save with max_shard_size larger than the model)"
                        : " (HINT: save_pretrained(..., safe_serialization=True) writes it)"))
        }
        do { return Source(dir: dir, json: json, weights: try SafeTensors.open(path: st)) } catch {
            throw HuggingFaceError(
                "\(error) (HINT: only float32 weights are supported; load with torch_dtype=torch.float32 before "
                    + "save_pretrained)"
            )
        }
    }

    /// Our config for an HF folder: the resolved config an export stored in the weights' metadata when
    /// present, else `base` (or the family preset of the same width) with the architecture read from
    /// config.json. `splitOverride`: the contrastive block count when the caller fixed it.
    public static func config(for src: Source, base: Config?, contrastiveBlocks: Int? = nil) throws -> Config {
        let j = src.json, path = src.dir + "/config.json"
        func int(_ k: String) throws -> Int {
            guard let v = j[k] as? Int else { throw HuggingFaceError("\(path): '\(k)' missing or not an integer") }
            return v
        }
        func need(_ ok: Bool, _ k: String, _ why: String) throws {
            if !ok { throw HuggingFaceError("\(path): '\(k)' = \(j[k].map { "\($0)" } ?? "missing"): \(why)") }
        }
        if let t = j["model_type"] as? String {
            try need(t == "wav2vec2-bert", "model_type", "not a Wav2Vec2-BERT model")
        }
        try need(
            (j["feature_projection_input_dim"] as? Int ?? 160) == 160, "feature_projection_input_dim",
            "this trainer's stack front end is 160-d")
        let act = j["hidden_act"] as? String ?? "swish"
        try need(act == "swish" || act == "silu", "hidden_act", "this trainer's Conformer uses swish")
        try need(
            abs((j["layer_norm_eps"] as? Double ?? 1e-5) - 1e-5) < 1e-12, "layer_norm_eps",
            "this trainer's LayerNorm eps is 1e-5")
        try need(!(j["add_adapter"] as? Bool ?? false), "add_adapter", "the adapter has no counterpart here")
        try need(
            !(j["use_intermediate_ffn_before_adapter"] as? Bool ?? false), "use_intermediate_ffn_before_adapter",
            "no counterpart here")
        let pos =
            j["position_embeddings_type"] as? String
            ?? (j["position_embeddings_type"] is NSNull ? "none" : "relative_key")
        try need(
            pos == "relative_key" || pos == "none", "position_embeddings_type",
            "only relative_key (shaw) or null can be imported")
        let d = try int("hidden_size"), layers = try int("num_hidden_layers")
        var c: Config
        if let y = src.weights.metadata["w2vbert_config"], base == nil {
            do { c = try Config.load(yaml: [y]) } catch {
                throw HuggingFaceError("\(src.weights.path): stored w2vbert_config: \(error)")
            }
        } else if let base {
            c = base
        } else {
            let byWidth = [144: "tiny2", 256: "small2", 512: "base2", 1024: "w2v-bert-2.0"]
            c = try Config.preset(byWidth[d] ?? "w2v-bert-2.0")
        }
        c.model.frontend = .stack
        c.model.frontendNorm = false
        c.model.contextProj = false
        c.model.causalConv = true
        c.model.dim = d
        c.model.heads = try int("num_attention_heads")
        c.model.ffnDim = try int("intermediate_size")
        c.model.convKernel = try int("conv_depthwise_kernel_size")
        c.model.position = pos == "none" ? Position.none : .shaw
        if pos == "relative_key" {
            c.model.shawLeft = try int("left_max_position_embeddings")
            c.model.shawRight = try int("right_max_position_embeddings")
        }
        if let n = contrastiveBlocks {
            c.model.contrastiveBlocks = n
        } else if c.model.contrastiveBlocks + c.model.mlmBlocks != layers {
            c.model.contrastiveBlocks = max(1, layers / 3)  // fairseq2's w2v-BERT 600m ratio (8 of 24)
        }
        c.model.mlmBlocks = layers - c.model.contrastiveBlocks
        try need(
            c.model.mlmBlocks >= 0, "num_hidden_layers",
            "fewer layers than model.contrastive_blocks (\(c.model.contrastiveBlocks))")
        let maskEmbedding = ["masked_spec_embed", ctcEncoderPrefix + "masked_spec_embed"]
        c.mask.replacement = maskEmbedding.contains { src.weights.entries[$0] != nil } ? .learned : c.mask.replacement
        try applyCTC(src, to: &c)
        do { try c.validate() } catch { throw HuggingFaceError("\(path): \(error)") }
        return c
    }

    /// Maps an HF folder's tensors onto our names: [our name: (HF name, HF shape, byte range)]. Refuses
    /// a tensor that has no place in `c` (naming it); `wav2vec2_bert.` prefixes (task models) are
    /// stripped and their task heads (lm_head, projector, classifier, …) are skipped, listed in `skipped`;
    /// a CTC model (model.head ctc) takes `lm_head.*` as its `ctc_head.*` (with `keepHead`; else skipped).
    public static func sourceTensors(
        _ src: Source, config c: Config, layout: ParameterLayout, keepHead: Bool = true
    ) throws
        -> (tensors: [String: String], skipped: [String])
    {
        var hfToOurs: [String: (String, [Int])] = [:]
        for e in layout.entries {
            if let hf = hfName(e.name, shape: e.shape, config: c) { hfToOurs[hf.name] = (e.name, hf.shape) }
        }
        var out: [String: String] = [:], skipped: [String] = []
        for (name, entry) in src.weights.entries.sorted(by: { $0.key < $1.key }) {
            if c.model.head == .ctc, let ours = ctcHeadName(name), let e = layout[ours] {
                if !keepHead {
                    skipped.append(name)
                    continue
                }
                guard entry.shape == e.shape else {
                    throw HuggingFaceError(
                        "\(src.weights.path): tensor '\(name)' has shape \(entry.shape), the model expects \(e.shape)")
                }
                out[ours] = name
                continue
            }
            var n = name
            if n.hasPrefix("wav2vec2_bert.") {
                n = String(n.dropFirst("wav2vec2_bert.".count))
            } else if src.weights.entries.keys.contains(where: { $0.hasPrefix("wav2vec2_bert.") }) {
                skipped.append(name)
                continue
            }
            guard let (ours, shape) = hfToOurs[n] else {
                throw HuggingFaceError(
                    "\(src.weights.path): tensor '\(name)' has no place in this model (HINT: its config differs: "
                        + "model.position, model.mlm_blocks + model.contrastive_blocks, mask.replacement?)"
                )
            }
            guard entry.shape == shape else {
                throw HuggingFaceError(
                    "\(src.weights.path): tensor '\(name)' has shape \(entry.shape), the model expects \(shape) "
                        + "(for \(ours))"
                )
            }
            out[ours] = name
        }
        return (out, skipped)
    }
}
