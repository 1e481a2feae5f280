import ArgumentParser
import W2VBert
import Training

/// Config options shared by train, config and import-hf: a preset or a YAML file, then `--set` overrides.
struct ConfigOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Built-in preset: tiny, small, base, xl, the Hugging Face family (tiny2 … w2v-bert-2.0), "
                + "series-tiny, tokens-tiny."))
    var preset: String?
    @Option(
        help: ArgumentHelp(
            "YAML config file (sections data, model, quantizer, mask, loss, optimizer, train, dist, codebook, adapter, "
                + "finetune, compute; an optional `preset:` key)."))
    var config: String?
    @Option(name: .customLong("set"), help: "Override one key, section.key=value (repeatable).")
    var overrides: [String] = []

    func validate() throws {
        if preset != nil && config != nil { throw ValidationError("give --preset or --config, not both") }
    }

    /// The resolved config; any problem with it is a usage error (status 2).
    func load() throws -> Config {
        var yaml: [String] = []
        if let path = config {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw UsageError("\(path): cannot read the config file")
            }
            yaml.append(text)
        }
        do {
            return try Config.load(preset: preset ?? "tiny", yaml: yaml, overrides: overrides)
        } catch {
            throw UsageError("\(config.map { $0 + ": " } ?? "")\(error)")
        }
    }
}

/// The pre-training commands (train, bench model, import-hf) refuse a CTC config given on the command line (status 2).
func requirePretraining(_ c: Config, _ command: String) throws {
    guard c.model.head == .pretrain else {
        throw UsageError(
            "\(command) works on the pre-training model; model.head is \(c.model.head.rawValue) "
                + "(a CTC fine-tuning model: transcribe and evaluate read its checkpoints)")
    }
}

/// A checkpoint or run folder given on the command line, with `--set` overrides applied to its stored config:
/// an override that does not apply is a usage error (status 2); a folder that cannot be used, status 1.
func checkpointFolder(_ path: String, overrides: [String] = []) throws -> CheckpointFolder {
    do {
        return try CheckpointFolder(path, overrides: overrides)
    } catch let e as ConfigError {
        throw UsageError("\(e)")
    }
}
