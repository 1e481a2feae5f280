import Foundation
import W2VBert

/// Rank 0's checkpoints (ARCHITECTURE "Rank 0: checkpoints"):
/// `RUN/checkpoints/step-00001000/{model.safetensors, optimizer.safetensors, trainer.json}`, written into
/// a temporary folder, fsynced, renamed; then `RUN/checkpoints/latest` (a one-line text file naming the
/// folder) is replaced atomically. The last `keepLast` are kept, plus the best by validation loss
/// (`best.json`). Loading validates everything and falls back to the previous checkpoint when the newest
/// is corrupt, saying so.
public struct CheckpointTensors {
    /// Canonical names and shapes, in buffer order; `offsets[i]` is entry i's first float.
    public let entries: [TensorEntry]
    public let offsets: [Int]
    /// Entry i's first float in the Adam moment buffers, nil for a frozen tensor (no optimizer state,
    /// nothing in optimizer.safetensors). Default: the same offsets (every tensor trained).
    public let stateOffsets: [Int?]
    public init(entries: [TensorEntry], offsets: [Int], stateOffsets: [Int?]? = nil) {
        self.entries = entries
        self.offsets = offsets
        self.stateOffsets = stateOffsets ?? offsets
    }
    /// Indices of the entries with optimizer state.
    var stateIndices: [Int] { entries.indices.filter { stateOffsets[$0] != nil } }
}

extension CheckpointTensors {
    /// A model's tensors in layout order; with train.trainable = adapters the frozen ones have no optimizer
    /// state. The same offsets as `Optimizer(config:layout:)` uses for m / v.
    /// A fine-tuning model (model.head ctc): the front end has none when finetune.freeze_frontend.
    public init(layout: ParameterLayout, config: Config) {
        let ranges =
            config.model.head == .ctc ? config.finetuneRanges(layout).trainable : layout.trainableRanges(config)
        self.init(layout: layout, stateRanges: ranges)
    }
    /// A model's tensors in layout order; those outside `stateRanges` (the optimizer's ranges) have no
    /// optimizer state.
    public init(layout: ParameterLayout, stateRanges ranges: [Range<Int>]) {
        self.init(
            entries: layout.entries.map { TensorEntry(name: $0.name, shape: $0.shape) },
            offsets: layout.entries.map { $0.offset },
            stateOffsets: layout.entries.map { Optimizer.stateOffset(ranges: ranges, layoutOffset: $0.offset) })
    }
}

public struct LoadedCheckpoint {
    public let directory: String
    public let step: Int
    public let state: TrainerState
    public let warnings: [String]
}

public final class CheckpointManager {
    public let root: String
    public let keepLast: Int
    /// The resolved config (YAML) of the run that loads checkpoints; when set, a checkpoint whose
    /// trainer.json holds a config with another architecture (model.*, quantizer groups/entries/dim) is
    /// refused naming the first differing field, even where the tensor shapes happen to agree.
    public var expectedConfigYAML: String? = nil

    public init(runDirectory: String, keepLast: Int) {
        root = runDirectory + "/checkpoints"
        self.keepLast = max(1, keepLast)
    }

    public static func directoryName(step: Int) -> String { String(format: "step-%08d", step) }

    /// Checkpoint folders present, newest first.
    public func list() -> [(step: Int, directory: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix("step-"), !n.contains(".tmp"), let s = Int(n.dropFirst(5)) else { return nil }
            return (s, root + "/" + n)
        }.sorted { $0.0 > $1.0 }
    }

    public var latestName: String? {
        guard let s = try? String(contentsOfFile: root + "/latest", encoding: .utf8) else { return nil }
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// Writes a checkpoint; returns its folder.
    @discardableResult
    public func save(
        step: Int, tensors: CheckpointTensors, parameters: UnsafePointer<Float>,
        adamM: UnsafePointer<Float>, adamV: UnsafePointer<Float>, state: TrainerState,
        validLoss: Double? = nil
    ) throws -> String {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let name = CheckpointManager.directoryName(step: step)
        let final = root + "/" + name
        let tmp = root + "/" + name + ".tmp"
        try? FileManager.default.removeItem(atPath: tmp)
        do {
            try writeFolder(
                tmp, step: step, tensors: tensors, parameters: parameters, adamM: adamM, adamV: adamV, state: state)
        } catch {
            // A full disk or an I/O error: the half-written folder is removed (it is never read:
            // list() skips *.tmp) and `latest` still names the previous complete checkpoint.
            try? FileManager.default.removeItem(atPath: tmp)
            throw SafeTensorsError(
                path: tmp,
                problem:
                    "checkpoint of step \(step) not written: \(error); the previous checkpoint "
                    + "(\(latestName ?? "none")) is intact"
            )
        }
        try? FileManager.default.removeItem(atPath: final)
        try FileManager.default.moveItem(atPath: tmp, toPath: final)
        fsyncDirectory(root)
        try writeDurably(Data((name + "\n").utf8), to: root + "/latest")
        if let validLoss, validLoss.isFinite {
            let best = bestRecord()
            if best == nil || validLoss < best!.validLoss {
                let b = try JSONEncoder().encode(BestCheckpoint(step: step, validLoss: validLoss, directory: name))
                try writeDurably(b, to: root + "/best.json")
            }
        }
        prune()
        return final
    }

    /// The three files of a checkpoint, each written durably, into folder `tmp`.
    func writeFolder(
        _ tmp: String, step: Int, tensors: CheckpointTensors, parameters: UnsafePointer<Float>,
        adamM: UnsafePointer<Float>, adamV: UnsafePointer<Float>, state: TrainerState
    ) throws {
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let meta = ["format": "w2vbert-swift", "step": "\(step)"]
        try SafeTensors.write(path: tmp + "/model.safetensors", entries: tensors.entries, metadata: meta) {
            parameters + tensors.offsets[$0]
        }
        let st = tensors.stateIndices
        let optEntries =
            st.map { TensorEntry(name: "exp_avg." + tensors.entries[$0].name, shape: tensors.entries[$0].shape) }
            + st.map { TensorEntry(name: "exp_avg_sq." + tensors.entries[$0].name, shape: tensors.entries[$0].shape) }
        let n = st.count
        try SafeTensors.write(path: tmp + "/optimizer.safetensors", entries: optEntries, metadata: meta) {
            $0 < n ? adamM + tensors.stateOffsets[st[$0]]! : adamV + tensors.stateOffsets[st[$0 - n]]!
        }
        var state = state
        state.step = step
        try writeDurably(try state.encoded(), to: tmp + "/trainer.json")
        fsyncDirectory(tmp)
    }

    /// best.json, or nil when there is none or it does not decode (it is rewritten at the next validation).
    public func bestRecord() -> BestCheckpoint? {
        guard let d = FileManager.default.contents(atPath: root + "/best.json") else { return nil }
        return try? JSONDecoder().decode(BestCheckpoint.self, from: d)
    }

    /// Keeps the newest `keepLast` and the best.
    public func prune() {
        let all = list()
        let best = bestRecord()?.directory
        for (i, c) in all.enumerated() where i >= keepLast {
            if (c.directory as NSString).lastPathComponent == best { continue }
            try? FileManager.default.removeItem(atPath: c.directory)
        }
    }

    /// Validates a checkpoint folder completely and returns its parsed parts (nothing is copied yet).
    public func validate(
        directory: String, tensors: CheckpointTensors
    ) throws -> (model: SafeTensors.File, optimizer: SafeTensors.File, state: TrainerState) {
        let state = try TrainerState.read(path: directory + "/trainer.json")
        if let expected = expectedConfigYAML, let diff = architectureDifference(expected: expected, found: state.config)
        {
            throw SafeTensorsError(
                path: directory + "/trainer.json",
                problem: "config field \(diff) (HINT: a checkpoint of another preset or config)")
        }
        let model = try SafeTensors.open(path: directory + "/model.safetensors")
        let opt = try SafeTensors.open(path: directory + "/optimizer.safetensors")
        for (i, e) in tensors.entries.enumerated() {
            let wanted =
                tensors.stateOffsets[i] == nil
                ? [(model, e.name)]
                : [(model, e.name), (opt, "exp_avg." + e.name), (opt, "exp_avg_sq." + e.name)]
            for (file, name) in wanted {
                guard let got = file.entries[name] else {
                    throw SafeTensorsError(path: file.path, problem: "missing tensor '\(name)'")
                }
                guard got.shape == e.shape else {
                    throw SafeTensorsError(
                        path: file.path,
                        problem:
                            "tensor '\(name)' has shape \(got.shape), the model expects \(e.shape) (HINT: a different "
                            + "config?)"
                    )
                }
            }
        }
        // Then what the model does not have (after the named missing/mis-shaped ones, which say more).
        let expectedNames = Set(tensors.entries.map { $0.name })
        for name in model.entries.keys.sorted() where !expectedNames.contains(name) {
            throw SafeTensorsError(
                path: model.path, problem: "unexpected tensor '\(name)' (HINT: a different config or model?)")
        }
        for name in opt.entries.keys.sorted() {
            let base =
                name.hasPrefix("exp_avg_sq.")
                ? String(name.dropFirst(11)) : name.hasPrefix("exp_avg.") ? String(name.dropFirst(8)) : ""
            guard expectedNames.contains(base) else {
                throw SafeTensorsError(
                    path: opt.path, problem: "unexpected tensor '\(name)' (HINT: a different config or model?)")
            }
        }
        return (model, opt, state)
    }

    /// Loads the newest valid checkpoint (the one `latest` names first, then the others newest first)
    /// into the buffers; nil when there is none. Corrupt ones are skipped with a warning each.
    public func loadLatest(
        tensors: CheckpointTensors, parameters: UnsafeMutablePointer<Float>,
        adamM: UnsafeMutablePointer<Float>, adamV: UnsafeMutablePointer<Float>
    ) throws -> LoadedCheckpoint? {
        var candidates = list().map { $0.directory }
        if let l = latestName, let i = candidates.firstIndex(where: { ($0 as NSString).lastPathComponent == l }) {
            candidates.insert(candidates.remove(at: i), at: 0)
        }
        var warnings: [String] = []
        for dir in candidates {
            do {
                let (model, opt, state) = try validate(directory: dir, tensors: tensors)
                for (i, e) in tensors.entries.enumerated() {
                    try model.read(e.name, shape: e.shape, into: parameters + tensors.offsets[i])
                    guard let so = tensors.stateOffsets[i] else { continue }
                    try opt.read("exp_avg." + e.name, shape: e.shape, into: adamM + so)
                    try opt.read("exp_avg_sq." + e.name, shape: e.shape, into: adamV + so)
                }
                return LoadedCheckpoint(directory: dir, step: state.step, state: state, warnings: warnings)
            } catch {
                warnings.append("checkpoint \(dir) is unusable: \(error); falling back to the previous one")
            }
        }
        if !warnings.isEmpty {
            throw SafeTensorsError(
                path: root, problem: "no usable checkpoint:\n  " + warnings.joined(separator: "\n  "))
        }
        return nil
    }
}

/// The architecture fields of two resolved configs (YAML as `Config.yaml` writes it) that differ, as
/// "model.heads is 8 in the checkpoint, 4 in this run"; nil when they agree. Training-only settings
/// (dropout, layer_drop, the temperature schedule, everything outside model/quantizer) may differ.
public func architectureDifference(expected: String, found: String) -> String? {
    func fields(_ yaml: String) -> [String: String] {
        var out: [String: String] = [:], section = ""
        for raw in yaml.split(separator: "\n") {
            let line = String(raw)
            if line.hasPrefix("#") || line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            if !line.hasPrefix(" ") {
                section = line.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: ":", with: "")
                continue
            }
            let kv = line.trimmingCharacters(in: .whitespaces).split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { continue }
            let key = section + "." + kv[0].trimmingCharacters(in: .whitespaces)
            let architecture =
                (section == "model" && key != "model.dropout" && key != "model.layer_drop")
                || ["quantizer.groups", "quantizer.entries", "quantizer.dim"].contains(key)
                || ["data.kind", "data.channels", "data.vocab_size"].contains(key)
            if architecture { out[key] = kv[1].trimmingCharacters(in: .whitespaces) }
        }
        return out
    }
    // Resolve the checkpoint's config first: keys it does not mention (written before they existed) take
    // their defaults, which are what that version used.
    let resolved: String, resolvedExpected: String
    do { resolved = try Config.load(yaml: [found]).yaml } catch { return "its config does not load: \(error)" }
    do { resolvedExpected = try Config.load(yaml: [expected]).yaml } catch {
        return "this run's config does not load: \(error)"
    }
    let e = fields(resolvedExpected), f = fields(resolved)
    for key in Set(e.keys).union(f.keys).sorted() where e[key] != f[key] {
        return "\(key) is \(f[key] ?? "missing") in the checkpoint, \(e[key] ?? "missing") in this run"
    }
    return nil
}
