import ArgumentParser
import Foundation
import Tensor
import W2VBert
import Training

/// `w2vbert export-hf` and `w2vbert import-hf` (issue 12; README "From pre-training to fine-tuning").
struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Write a checkpoint's encoder as a Hugging Face Wav2Vec2BertModel folder (config.json, model.safetensors, preprocessor_config.json).",
        discussion: """
        Only the Hugging Face family (presets tiny2, small2, base2, w2v-bert-2.0) can be exported; another \
        architecture is refused naming the config key transformers cannot express. The quantizer and the \
        contrastive and MLM heads are left out (transformers has no use for them).
        """)
    @Argument(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "Output folder.") var out: String

    func run() throws {
        var (config, dir) = try runConfig(checkpoint, overrides: [])
        if let b = HuggingFace.exportBlocker(config) {
            throw RuntimeError("\(dir): cannot export to Hugging Face: config key '\(b.key)' \(b.message) (HINT: train a tiny2/small2/base2/w2v-bert-2.0 preset)")
        }
        var layout = ParameterLayout(config: config)
        let file = try validatedCheckpoint(dir, config: config)
        var params = FloatBuffer(count: layout.count)
        for e in layout.entries {
            do { try file.read(e.name, shape: e.shape, into: params.ptr + e.offset) } catch { throw RuntimeError("\(error)") }
        }
        // Issue 13: hyper-lora's factors depend on each utterance's speaker vector: nothing to merge.
        if config.adapter.isHyper {
            throw ValidationError("\(dir): cannot export to Hugging Face: adapter.kind = hyper-lora generates per-utterance LoRA factors that no plain model can hold")
        }
        // Issue 13: LoRA adapters are merged into their Linear weights (W + (α/r)·B·A); HF gets a plain model.
        if config.adapter.kind != .none {
            let adapters = layout.adapterParameterCount
            (config, layout, params) = mergeAdapters(config: config, layout: layout, params: params.ptr)
            print("export-hf: merged \(adapters) LoRA adapter parameters into their Linear weights")
        }
        let left: [String]
        do { left = try HuggingFace.export(config: config, layout: layout, to: out) { CFPtr(params.ptr + $0.offset) } }
        catch { throw RuntimeError("\(out): \(error)") }
        let kept = layout.entries.count - left.count
        print("export-hf: \(dir) → \(out): \(kept) encoder tensors (\(config.model.contrastiveBlocks + config.model.mlmBlocks) layers, d = \(config.model.dim))")
        print("export-hf: left out (transformers has no use for them): \(left.joined(separator: ", "))")
    }
}

struct ImportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-hf",
        abstract: "Turn a Hugging Face Wav2Vec2BertModel folder into a weights-only checkpoint folder (for embed, export-hf, train --init-from).",
        discussion: """
        The config is the one an export-hf stored in the weights (exact round trip), else the family preset of \
        the same width (tiny2 144, small2 256, base2 512, w2v-bert-2.0 otherwise) with the architecture from \
        config.json and 1/3 of the layers as contrastive blocks; --preset/--config/--set replace that base. \
        The quantizer and heads (absent from HF folders) are initialised fresh from train.seed. The folder \
        holds model.safetensors and trainer.json (step 0), no optimizer state.
        """)
    @Argument(help: "Hugging Face model folder (config.json + model.safetensors, float32).") var dir: String
    @Option(help: "Output checkpoint folder.") var out: String
    @Option(help: "Contrastive blocks (the rest of the layers are MLM blocks).") var contrastiveBlocks: Int?
    @OptionGroup var configOptions: ConfigOptions

    func run() throws {
        // A bad --preset/--config/--set is status 2, reported before any file is read.
        let given = configOptions.preset != nil || configOptions.config != nil || !configOptions.overrides.isEmpty
        let base: Config? = given ? try configOptions.load() : nil
        let src: HuggingFace.Source
        do { src = try HuggingFace.open(dir) } catch { throw RuntimeError("\(error)") }
        let config: Config
        do { config = try HuggingFace.config(for: src, base: base, contrastiveBlocks: contrastiveBlocks) }
        catch { throw RuntimeError("\(error)") }
        let layout = ParameterLayout(config: config)
        let params = FloatBuffer(count: layout.count)
        layout.initialize(params.ptr, seed: config.train.seed)
        let summary: String
        do { summary = try InitialWeights.load(from: dir, config: config, layout: layout, params: params.ptr) }
        catch { throw RuntimeError("\(error)") }
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try SafeTensors.write(path: out + "/model.safetensors", entries: layout.entries.map { TensorEntry(name: $0.name, shape: $0.shape) },
                                  metadata: ["format": "w2vbert-swift", "step": "0", "imported_from": dir]) { CFPtr(params.ptr + layout.entries[$0].offset) }
            var state = TrainerState()   // step 0; the source folder is in model.safetensors' metadata
            state.seed = config.train.seed; state.updateFreq = config.train.updateFreq; state.config = config.yaml
            try writeDurably(try state.encoded(), to: out + "/trainer.json")
        } catch { throw RuntimeError("\(out): \(error)") }
        print("import-hf: \(summary)")
        print("import-hf: \(config.model.contrastiveBlocks) contrastive + \(config.model.mlmBlocks) MLM blocks, d = \(config.model.dim), \(layout.parameterCount) parameters → \(out)")
    }
}
