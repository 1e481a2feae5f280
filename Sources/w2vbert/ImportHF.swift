import ArgumentParser
import W2VBert
import Training

/// `w2vbert import-hf`: a Hugging Face Wav2Vec2BertModel or Wav2Vec2BertForCTC folder as a weights-only
/// checkpoint folder.
struct ImportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-hf",
        abstract: "Turn a Hugging Face Wav2Vec2BertModel (or ForCTC) folder into a weights-only checkpoint folder "
            + "(for embed, export-hf, train --init-from, transcribe).",
        discussion: """
            The config is the one an export-hf stored in the weights (exact round trip), else the family preset of \
            the same width (tiny2 144, small2 256, base2 512, w2v-bert-2.0 otherwise) with the architecture from \
            config.json and 1/3 of the layers as contrastive blocks; --preset/--config/--set replace that base. \
            The quantizer and heads (absent from HF folders) are initialised fresh from train.seed. The folder \
            holds model.safetensors and trainer.json (step 0), no optimizer state. A Wav2Vec2BertForCTC folder \
            gives a CTC model (model.head ctc) with lm_head as its CTC head and vocab.json as dict.ltr.txt \
            (for transcribe and evaluate).
            """)
    @Argument(help: "Hugging Face model folder (config.json + model.safetensors, float32).") var dir: String
    @Option(help: "Output checkpoint folder.") var out: String
    @Option(help: "Contrastive blocks (the rest of the layers are MLM blocks).") var contrastiveBlocks: Int?
    @OptionGroup var configOptions: ConfigOptions

    func run() throws {
        // A bad --preset/--config/--set is status 2, reported before any file is read.
        let given = configOptions.preset != nil || configOptions.config != nil || !configOptions.overrides.isEmpty
        let base: Config? = given ? try configOptions.load() : nil
        if let base { try requirePretraining(base, "import-hf") }
        let s: HuggingFace.ImportSummary
        do {
            s = try HuggingFace.importFolder(dir, to: out, base: base, contrastiveBlocks: contrastiveBlocks)
        } catch {
            throw RuntimeError("\(error)")  // the source folder's config.json, not the command line: status 1
        }
        let m = s.config.model
        print("import-hf: \(s.tensors)")
        print(
            "import-hf: \(m.contrastiveBlocks) contrastive + \(m.mlmBlocks) MLM blocks, d = \(m.dim), "
                + "\(s.parameters) parameters → \(out)")
    }
}
