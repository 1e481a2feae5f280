import Foundation
import Tensor
import W2VBert

/// `w2vbert export-hf` and `w2vbert import-hf`: a checkpoint's encoder written as a Hugging Face
/// Wav2Vec2BertModel folder (a CTC model's as Wav2Vec2BertForCTC with its tokenizer), and such a folder turned
/// into a weights-only checkpoint folder.
extension HuggingFace {
    /// What an export did.
    public struct ExportSummary {
        /// The checkpoint folder exported.
        public let checkpoint: String
        /// Encoder tensors written, layers, width.
        public let tensors: Int, layers: Int, dim: Int
        /// Tensors left out (the quantizer and the pre-training heads).
        public let leftOut: [String]
        /// LoRA adapter parameters merged into their Linear weights (0: none).
        public let mergedAdapterParameters: Int
        /// A CTC model's vocabulary size (blank included); nil for a pre-training model.
        public let vocabularySize: Int?
    }

    /// Exports the newest checkpoint of a run folder (or a checkpoint folder) to `out`; a CTC model (model.head
    /// ctc) with its dictionary (dict.ltr.txt) as the tokenizer. Only the Hugging Face family can be exported;
    /// another architecture is refused naming the config key transformers cannot express, before any tensor
    /// is read. LoRA adapters are merged into their Linear weights
    /// (W + (α/r)·B·A); hyper-lora, whose factors depend on each utterance's speaker vector, is refused.
    public static func exportCheckpoint(_ path: String, to out: String) throws -> ExportSummary {
        let folder = try CheckpointFolder(path)
        var config = folder.config
        let dir = folder.directory
        if let b = exportBlocker(config) {
            throw HuggingFaceError(
                "\(dir): cannot export to Hugging Face: config key '\(b.key)' \(b.message) "
                    + "(HINT: train a tiny2/small2/base2/w2v-bert-2.0 preset)")
        }
        if config.adapter.isHyper {
            throw HuggingFaceError(
                "\(dir): cannot export to Hugging Face: adapter.kind = hyper-lora generates "
                    + "per-utterance LoRA factors that no plain model can hold")
        }
        // A CTC model's tokenizer comes from its dictionary, found as transcribe finds it.
        let vocabulary = config.model.head == .ctc ? try Recognizer.dictionary(of: folder).vocabulary : nil
        var layout = ParameterLayout(config: config)
        var params = FloatBuffer(count: layout.count)
        try folder.readParameters(layout, into: params.ptr)
        var merged = 0
        if config.adapter.kind != .none {
            merged = layout.adapterParameterCount
            // The merge's products in fp32 on one thread: the exported weights do not depend on the machine.
            (config, layout, params) = mergeAdapters(.fp32(), config: config, layout: layout, params: params.ptr)
        }
        let left: [String]
        do {
            left = try export(config: config, layout: layout, vocabulary: vocabulary, to: out) {
                CFPtr(params.ptr + $0.offset)
            }
        } catch {
            throw HuggingFaceError("\(out): \(error)")
        }
        return ExportSummary(
            checkpoint: dir, tensors: layout.entries.count - left.count,
            layers: config.model.contrastiveBlocks + config.model.mlmBlocks, dim: config.model.dim,
            leftOut: left, mergedAdapterParameters: merged, vocabularySize: vocabulary?.size)
    }

    /// What an import did.
    public struct ImportSummary {
        /// The one-line account of the tensors taken from the source (`InitialWeights.load`).
        public let tensors: String
        /// The config of the checkpoint written.
        public let config: Config
        public let parameters: Int
    }

    /// Writes `out`/{model.safetensors, trainer.json (step 0)} from the Hugging Face folder `dir`. The config
    /// is the one an export stored in the weights when present, else `base` (or the family preset of the
    /// same width) with the architecture of config.json; the quantizer and heads start fresh from train.seed.
    /// A `Wav2Vec2BertForCTC` folder gives a CTC model (model.head ctc, config.json's vocab_size) with its
    /// `lm_head` as the CTC head and vocab.json as `out`/dict.ltr.txt.
    public static func importFolder(
        _ dir: String, to out: String, base: Config?,
        contrastiveBlocks: Int?
    ) throws -> ImportSummary {
        let src = try open(dir)
        let config = try self.config(for: src, base: base, contrastiveBlocks: contrastiveBlocks)
        let vocabulary = config.model.head == .ctc ? try readVocabulary(src) : nil
        let layout = ParameterLayout(config: config)
        let params = FloatBuffer(count: layout.count)
        layout.initialize(params.ptr, seed: config.train.seed)
        let summary = try InitialWeights.load(from: dir, config: config, layout: layout, params: params.ptr)
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let entries = layout.entries.map { TensorEntry(name: $0.name, shape: $0.shape) }
            let metadata = ["format": "w2vbert-swift", "step": "0", "imported_from": dir]
            try SafeTensors.write(path: out + "/model.safetensors", entries: entries, metadata: metadata) {
                CFPtr(params.ptr + layout.entries[$0].offset)
            }
            var state = TrainerState()  // step 0; the source folder is in model.safetensors' metadata
            state.seed = config.train.seed
            state.updateFreq = config.train.updateFreq
            state.config = config.yaml
            try writeDurably(try state.encoded(), to: out + "/trainer.json")
            // Where transcribe and evaluate look for a CTC checkpoint's dictionary: its own folder.
            try vocabulary?.write(to: out + "/dict.ltr.txt")
        } catch {
            throw HuggingFaceError("\(out): \(error)")
        }
        return ImportSummary(tensors: summary, config: config, parameters: layout.parameterCount)
    }
}
