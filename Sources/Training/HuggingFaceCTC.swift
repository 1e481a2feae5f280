// Hugging Face export of a CTC fine-tuned model (model.head ctc) as `Wav2Vec2BertForCTC` (docs/huggingface.md).
//
// transformers' CTC class holds the encoder as the submodule `wav2vec2_bert` and the head as `lm_head`, so the
// encoder tensors keep the names of the pre-training export with the prefix `wav2vec2_bert.`, and
//   ctc_head.weight [V, d] → lm_head.weight [V, d],   ctc_head.bias [V] → lm_head.bias [V].
// HF's model has `masked_spec_embed` only when it masks (mask_time_prob or mask_feature_prob > 0), so the mask
// embedding is written only then.
//
// The dictionary (dict.ltr.txt: blank 0, `|` 1, then the letters) becomes the tokenizer of
// `Wav2Vec2CTCTokenizer`: vocab.json maps `<pad>` to 0 (the CTC blank is HF's pad token, which its CTC decoding
// drops after merging repeats, like the blank), `|` to 1 (the word delimiter, decoded as a space) and every
// letter to its id, so vocab_size is the head's V. No `<unk>`, `<s>` or `</s>` is written: the model never
// outputs them, and a token the tokenizer is given but does not have would be added after the letters
// (id V and up, outside the head).

import Audio
import Foundation
import Tensor
import W2VBert

extension HuggingFace {
    /// The prefix of the encoder's tensors inside `Wav2Vec2BertForCTC`.
    public static let ctcEncoderPrefix = "wav2vec2_bert."

    /// Whether HF's model of config `c` has `masked_spec_embed` (it masks time or channels when training).
    static func hfMasks(_ c: Config) -> Bool {
        c.model.head == .ctc ? c.finetune.maskTimeProb > 0 || c.finetune.maskChannelProb > 0 : true
    }

    /// The HF name and shape of one of our tensors in `Wav2Vec2BertForCTC`; nil for tensors it has no place for.
    public static func ctcName(_ name: String, shape: [Int], config c: Config) -> (name: String, shape: [Int])? {
        switch name {
        case "ctc_head.weight": return ("lm_head.weight", shape)
        case "ctc_head.bias": return ("lm_head.bias", shape)
        case "mask_embedding" where !hfMasks(c): return nil
        default:
            guard let hf = hfName(name, shape: shape, config: c) else { return nil }
            return (ctcEncoderPrefix + hf.name, hf.shape)
        }
    }

    /// config.json for `Wav2Vec2BertForCTC`: the encoder's keys, the vocabulary and the fine-tuning settings
    /// (final dropout, HF's SpecAugment from finetune.mask_*; CTC loss averaged over label lengths, as here).
    public static func ctcConfigJSON(_ c: Config) -> [String: Any] {
        var j = configJSON(c)
        let f = c.finetune
        j["architectures"] = ["Wav2Vec2BertForCTC"]
        j["vocab_size"] = c.model.vocabSize
        j["pad_token_id"] = Int(CTCVocabulary.blank)
        j["bos_token_id"] = NSNull()
        j["eos_token_id"] = NSNull()
        j["ctc_loss_reduction"] = "mean"
        j["ctc_zero_infinity"] = false
        j["final_dropout"] = decimal(c.model.finalDropout)
        j["apply_spec_augment"] = hfMasks(c)
        j["mask_time_prob"] = decimal(f.maskTimeProb)
        j["mask_time_length"] = f.maskTimeSpan
        j["mask_time_min_masks"] = 2
        j["mask_feature_prob"] = decimal(f.maskChannelProb)
        j["mask_feature_length"] = f.maskChannelSpan
        j["mask_feature_min_masks"] = 0
        return j
    }

    /// vocab.json: `<pad>` 0 (the blank), then each symbol at its id (`|` is 1), one per line in id order.
    public static func vocabularyJSON(_ v: CTCVocabulary) throws -> String {
        let tokens = ["<pad>"] + v.symbols.map { String(Character($0)) }
        let lines = try tokens.enumerated().map { id, token in
            let key = try JSONSerialization.data(withJSONObject: token, options: [.fragmentsAllowed])
            return "  \(String(decoding: key, as: UTF8.self)): \(id)"
        }
        return "{\n" + lines.joined(separator: ",\n") + "\n}\n"
    }

    /// A Float setting as the decimal it was written as (0.1, not 0.10000000149011612).
    static func decimal(_ f: Float) -> Double { Double("\(f)") ?? Double(f) }

    /// tokenizer_config.json of `Wav2Vec2CTCTokenizer` (no unknown, begin or end token: see the file's head).
    public static var ctcTokenizerJSON: [String: Any] {
        [
            "tokenizer_class": "Wav2Vec2CTCTokenizer", "processor_class": "Wav2Vec2BertProcessor",
            "pad_token": "<pad>", "word_delimiter_token": String(Character(CTCVocabulary.boundary)),
            "replace_word_delimiter_char": " ", "do_lower_case": false,
            "unk_token": NSNull(), "bos_token": NSNull(), "eos_token": NSNull(),
            "clean_up_tokenization_spaces": false, "model_max_length": 1_000_000_000,
        ]
    }

    /// special_tokens_map.json: the pad token only.
    public static var ctcSpecialTokensJSON: [String: Any] { ["pad_token": "<pad>"] }

    /// Writes the tokenizer files (vocab.json, tokenizer_config.json, special_tokens_map.json) of `v` into `dir`.
    static func writeTokenizer(_ v: CTCVocabulary, to dir: String) throws {
        try writeDurably(Data(try vocabularyJSON(v).utf8), to: dir + "/vocab.json")
        try writeJSON(ctcTokenizerJSON, to: dir + "/tokenizer_config.json")
        try writeJSON(ctcSpecialTokensJSON, to: dir + "/special_tokens_map.json")
    }
}

// MARK: Import of a Wav2Vec2BertForCTC folder

extension HuggingFace {
    /// Whether config.json names `Wav2Vec2BertForCTC` among its architectures.
    public static func isCTCFolder(_ src: Source) -> Bool {
        (src.json["architectures"] as? [String])?.contains("Wav2Vec2BertForCTC") ?? false
    }

    /// Makes `c` a CTC model of config.json's vocab_size (the encoder is already set from config.json).
    static func applyCTC(_ src: Source, to c: inout Config) throws {
        guard isCTCFolder(src) else { return }
        guard let v = src.json["vocab_size"] as? Int, v > 2 else {
            throw HuggingFaceError("\(src.dir)/config.json: 'vocab_size' missing or not an integer > 2")
        }
        c.model.head = .ctc
        c.model.vocabSize = v
    }

    /// Our CTC head tensor for one of `Wav2Vec2BertForCTC`'s head tensors (nil: not a head tensor).
    static func ctcHeadName(_ hf: String) -> String? {
        switch hf {
        case "lm_head.weight": return "ctc_head.weight"
        case "lm_head.bias": return "ctc_head.bias"
        default: return nil
        }
    }

    /// The dictionary of a `Wav2Vec2BertForCTC` folder from its vocab.json: `<pad>` 0 (the blank), `|` 1, every
    /// other token one character, ids exactly 0..V−1 with V config.json's vocab_size. Counts are 0 (the
    /// folder has none). Errors name vocab.json.
    public static func readVocabulary(_ src: Source) throws -> CTCVocabulary {
        let path = src.dir + "/vocab.json"
        func bad(_ why: String) -> HuggingFaceError { HuggingFaceError("\(path): \(why)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw bad("missing or unreadable") }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw bad("not a JSON object of token → id")
        }
        var byId: [Int: String] = [:]
        for (token, value) in json {
            guard let id = value as? Int else { throw bad("token '\(token)' has no integer id") }
            if let other = byId[id] { throw bad("tokens '\(other)' and '\(token)' share id \(id)") }
            byId[id] = token
        }
        let size = json.count
        guard byId.keys.allSatisfy({ (0..<size).contains($0) }) else { throw bad("ids are not 0..\(size - 1)") }
        guard byId[0] == "<pad>" else { throw bad("'<pad>' (the CTC blank) is not id 0") }
        guard byId[1] == String(Character(CTCVocabulary.boundary)) else { throw bad("'|' is not id 1") }
        if let v = src.json["vocab_size"] as? Int, v != size {
            throw bad("\(size) tokens, config.json's vocab_size is \(v)")
        }
        var symbols: [Unicode.Scalar] = []
        for id in 1..<size {
            let token = byId[id]!
            guard token.unicodeScalars.count == 1, let s = token.unicodeScalars.first, !s.properties.isWhitespace
            else { throw bad("token '\(token)' (id \(id)) is not a single non-space character") }
            symbols.append(s)
        }
        return CTCVocabulary(symbols: symbols, counts: Array(repeating: 0, count: symbols.count))
    }
}
