// Starting a run from existing weights: `w2vbert train --init-from SOURCE` and `import-hf`.
// SOURCE is a checkpoint folder (step-…), a run folder (its newest checkpoint) or a Hugging Face model
// folder (config.json + model.safetensors). Every tensor of the source must have a place of the same
// shape in the model; every tensor of the model must come from the source, except the quantizer, the
// heads, the mask embedding and LoRA adapters, which keep their fresh initialisation when the source has none.

import Foundation
import Tensor
import W2VBert

public enum InitialWeights {
    /// The model.safetensors a checkpoint or run folder stands for (nil: neither).
    public static func checkpointWeights(_ source: String) -> String? {
        if FileManager.default.fileExists(atPath: source + "/trainer.json") { return source + "/model.safetensors" }
        let m = CheckpointManager(runDirectory: source, keepLast: 1)
        if let l = m.latestName, FileManager.default.fileExists(atPath: m.root + "/" + l + "/model.safetensors") {
            return m.root + "/" + l + "/model.safetensors"
        }
        return m.list().first.map { $0.directory + "/model.safetensors" }
    }

    /// LoRA adapters absent from the source start fresh (B = 0: the adapted model starts as the source).
    static func mayStayFresh(_ name: String) -> Bool {
        HuggingFace.isHeadOrQuantizer(name) || name == "mask_embedding" || ParameterLayout.isAdapter(name)
            || ParameterLayout.isCTCHead(name)
    }

    /// Overwrites `params` (already initialised from the config's seed) with the source's tensors.
    /// Returns a one-line summary; throws naming the first tensor that does not fit.
    public static func load(
        from source: String, config c: Config, layout: ParameterLayout, params: FPtr
    ) throws -> String {
        let file: SafeTensors.File
        var map: [String: String] = [:]  // our name → source name
        var skipped: [String] = []
        let kind: String
        if HuggingFace.isModelDirectory(source) {
            let src = try HuggingFace.open(source)
            (map, skipped) = try HuggingFace.sourceTensors(src, config: c, layout: layout)
            file = src.weights
            kind = "Hugging Face model"
        } else if let path = checkpointWeights(source) {
            do { file = try SafeTensors.open(path: path) } catch { throw HuggingFaceError("\(error)") }
            for name in file.entries.keys.sorted() {
                if c.model.head == .ctc && layout[name] == nil && HuggingFace.isHeadOrQuantizer(name) {
                    skipped.append(name)  // a pre-training head: fine-tuning has a CTC head instead
                    continue
                }
                guard let e = layout[name] else {
                    throw HuggingFaceError(
                        "\(path): tensor '\(name)' has no place in this model (HINT: a different architecture; "
                            + "compare the configs)"
                    )
                }
                guard file.entries[name]!.shape == e.shape else {
                    throw HuggingFaceError(
                        "\(path): tensor '\(name)' has shape \(file.entries[name]!.shape), the model expects \(e.shape)"
                    )
                }
                map[name] = name
            }
            kind = "checkpoint"
        } else {
            throw HuggingFaceError(
                "\(source): neither a checkpoint folder, a run folder with checkpoints, nor a Hugging Face model "
                    + "folder (config.json)"
            )
        }
        var fresh: [String] = []
        for e in layout.entries where map[e.name] == nil {
            guard mayStayFresh(e.name) else {
                throw HuggingFaceError(
                    "\(file.path): lacks tensor '\(e.name)'"
                        + (HuggingFace.hfName(e.name, shape: e.shape, config: c).map { " ('\($0.name)')" } ?? "")
                        + " that the model needs (HINT: a different architecture)")
            }
            fresh.append(e.name)
        }
        for e in layout.entries {
            guard let src = map[e.name], let r = file.entries[src] else { continue }
            precondition(r.range.count == e.count * 4)
            file.bytes.withUnsafeBytes { raw in
                _ = memcpy(
                    params + e.offset, raw.baseAddress!.advanced(by: file.dataStart + r.range.lowerBound), r.range.count
                )
            }
        }
        var s = "initialised from \(kind) \(source): \(map.count) tensors loaded"
        if !fresh.isEmpty {
            let groups = Set(fresh.map { $0.split(separator: ".").first.map(String.init) ?? $0 }).sorted()
            s += "; fresh (absent from the source): \(groups.joined(separator: ", "))"
        }
        if !skipped.isEmpty { s += "; skipped task-head tensors: \(skipped.joined(separator: ", "))" }
        return s
    }
}

extension Trainer {
    /// `--init-from` (called by resumeOrStart on rank 0 for a fresh run only; a run folder that already
    /// holds checkpoints resumes instead). Step 0, fresh optimizer: only the parameters change.
    func initializeFrom(_ source: String) throws -> String {
        try InitialWeights.load(from: source, config: config, layout: layout, params: objective.params.ptr)
    }
}
