import ArgumentParser
import Training

/// `w2vbert export-hf`: a checkpoint's encoder as a Hugging Face Wav2Vec2BertModel folder, a CTC model as a
/// Wav2Vec2BertForCTC folder.
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Write a checkpoint's encoder as a Hugging Face Wav2Vec2BertModel folder (config.json, "
            + "model.safetensors, preprocessor_config.json), a CTC model's as Wav2Vec2BertForCTC.",
        discussion: """
            Only the Hugging Face family (presets tiny2, small2, base2, w2v-bert-2.0) can be exported; another \
            architecture is refused naming the config key transformers cannot express. The quantizer and the \
            contrastive and MLM heads are left out (transformers has no use for them). LoRA adapters are merged \
            into their Linear weights; hyper-lora checkpoints cannot be exported. A CTC fine-tuned model (model.head \
            ctc) is written as Wav2Vec2BertForCTC (the head as lm_head, the encoder under wav2vec2_bert.) with the \
            tokenizer of its dictionary (dict.ltr.txt of the checkpoint folder or of its run folder): vocab.json \
            (<pad> 0 = the CTC blank, | 1 = the word delimiter, the letters at their ids), tokenizer_config.json and \
            special_tokens_map.json for Wav2Vec2CTCTokenizer, so Wav2Vec2BertProcessor and the \
            automatic-speech-recognition pipeline load the folder.
            """)
    @Argument(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "Output folder.") var out: String

    func run() throws {
        let s = try HuggingFace.exportCheckpoint(checkpoint, to: out)
        if s.mergedAdapterParameters > 0 {
            print("export-hf: merged \(s.mergedAdapterParameters) LoRA adapter parameters into their Linear weights")
        }
        let what = s.vocabularySize.map { "tensors of Wav2Vec2BertForCTC (V = \($0))" } ?? "encoder tensors"
        print("export-hf: \(s.checkpoint) → \(out): \(s.tensors) \(what) (\(s.layers) layers, d = \(s.dim))")
        if !s.leftOut.isEmpty {
            print("export-hf: left out (transformers has no use for them): \(s.leftOut.joined(separator: ", "))")
        }
    }
}
