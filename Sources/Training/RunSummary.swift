import Foundation
import W2VBert

/// What `w2vbert inspect` prints about a run or checkpoint folder: the model, every checkpoint with the
/// result of validating it completely, the trainer state, optionally every tensor's shape and RMS, and the
/// last train and valid records of metrics.jsonl.
public struct RunSummary {
    /// The run folder.
    public let runDirectory: String
    /// The report, one line per element.
    public private(set) var lines: [String] = []
    /// Checkpoint folder names that failed validation.
    public private(set) var corrupt: [String] = []

    /// Summarises `path` (a run folder or one checkpoint folder); `tensors` adds a line per tensor.
    public init(_ path: String, tensors: Bool = false) throws {
        let isCheckpoint = FileManager.default.fileExists(atPath: path + "/trainer.json")
        let folder = try CheckpointFolder(path)
        runDirectory = isCheckpoint ? folder.runDirectory : path
        let config = folder.config
        let layout = ParameterLayout(config: config)
        lines.append("run: \(runDirectory)")
        lines.append(modelLine(config, layout))
        if config.adapter.kind != .none { lines.append(adapterLine(config, layout)) }
        checkpointLines(config, layout)
        if let s = try? folder.trainerState() { lines.append(stateLine(s, folder.directory)) }
        if tensors { tensorLines(layout, folder.directory) }
        if let text = try? String(contentsOfFile: runDirectory + "/metrics.jsonl", encoding: .utf8) {
            let records = text.split(separator: "\n")
            for kind in ["train", "valid"] {
                if let r = records.last(where: { $0.contains("\"kind\":\"\(kind)\"") }) {
                    lines.append("last \(kind) record: \(r)")
                }
            }
        }
    }

    func modelLine(_ c: Config, _ layout: ParameterLayout) -> String {
        "model: \(c.model.dim)-d, \(c.model.contrastiveBlocks)+\(c.model.mlmBlocks) blocks, "
            + "\(c.quantizer.groups)×\(c.quantizer.entries) codes, \(layout.parameterCount) parameters"
    }

    func adapterLine(_ c: Config, _ layout: ParameterLayout) -> String {
        let n = layout.adapterParameterCount
        let targets = c.adapter.targets.map(\.rawValue).joined(separator: ",")
        return String(
            format: "adapters: %@ rank %d α %g on %@: %d parameters (%.2f %%), train.trainable %@",
            c.adapter.kind.rawValue, c.adapter.rank, c.adapter.alpha, targets, n,
            100 * Double(n) / Double(layout.parameterCount), c.train.trainable.rawValue)
    }

    mutating func checkpointLines(_ config: Config, _ layout: ParameterLayout) {
        let m = CheckpointManager(runDirectory: runDirectory, keepLast: 1)
        // best.json's value is the validation loss, or with a CTC head the WER.
        let metric = config.model.head == .ctc ? "wer" : "loss"
        let best =
            m.bestRecord().map { "\($0.directory) valid \(metric) \(String(format: "%.4f", $0.validLoss))" } ?? "none"
        lines.append("checkpoints (newest first; latest = \(m.latestName ?? "none"), best = \(best)):")
        m.expectedConfigYAML = config.yaml
        let tensors = CheckpointTensors(layout: layout, config: config)
        for c in m.list() {
            let name = (c.directory as NSString).lastPathComponent
            do {
                _ = try m.validate(directory: c.directory, tensors: tensors)
                lines.append("  \(name)  ok")
            } catch {
                lines.append("  \(name)  CORRUPT: \(error)")
                corrupt.append(name)
            }
        }
    }

    func stateLine(_ s: TrainerState, _ checkpoint: String) -> String {
        "state of \((checkpoint as NSString).lastPathComponent): step \(s.step), optimizer_step \(s.optimizerStep), "
            + "epoch \(s.epoch), micro_batch \(s.microBatch), world_size \(s.worldSize), update_freq \(s.updateFreq), "
            + "tau \(s.tau), lr \(s.lr)" + (s.validLoss.map { ", valid_loss \($0)" } ?? "")
    }

    mutating func tensorLines(_ layout: ParameterLayout, _ checkpoint: String) {
        guard let f = try? SafeTensors.open(path: checkpoint + "/model.safetensors") else { return }
        for e in layout.entries {
            let a = (try? f.array(e.name)) ?? []
            let sum = a.reduce(0.0) { $0 + Double($1) * Double($1) }
            let rms = a.isEmpty ? .nan : (sum / Double(a.count)).squareRoot()
            lines.append(String(format: "  %-55@ %-16@ rms %.4g", e.name as NSString, "\(e.shape)" as NSString, rms))
        }
    }
}
