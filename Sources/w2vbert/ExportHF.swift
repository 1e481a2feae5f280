import ArgumentParser
import Training

/// `w2vbert export-hf`: a checkpoint's encoder as a Hugging Face Wav2Vec2BertModel folder.
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Write a checkpoint's encoder as a Hugging Face Wav2Vec2BertModel folder (config.json, "
            + "model.safetensors, preprocessor_config.json).",
        discussion: """
            Only the Hugging Face family (presets tiny2, small2, base2, w2v-bert-2.0) can be exported; another \
            architecture is refused naming the config key transformers cannot express. The quantizer and the \
            contrastive and MLM heads are left out (transformers has no use for them). LoRA adapters are merged \
            into their Linear weights; hyper-lora checkpoints cannot be exported.
            """)
    @Argument(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "Output folder.") var out: String

    func run() throws {
        let s = try HuggingFace.exportCheckpoint(checkpoint, to: out)
        if s.mergedAdapterParameters > 0 {
            print("export-hf: merged \(s.mergedAdapterParameters) LoRA adapter parameters into their Linear weights")
        }
        print("export-hf: \(s.checkpoint) → \(out): \(s.tensors) encoder tensors (\(s.layers) layers, d = \(s.dim))")
        print("export-hf: left out (transformers has no use for them): \(s.leftOut.joined(separator: ", "))")
    }
}
