// Starting a run from existing weights: `w2vbert train --init-from SOURCE` and `import-hf`.
// SOURCE is a checkpoint folder (step-…), a run folder (its newest checkpoint) or a Hugging Face model
// folder (config.json + model.safetensors). Every tensor of the source must have a place of the same
// shape in the model; every tensor of the model must come from the source, except the quantizer, the
// heads, the mask embedding and LoRA adapters, which keep their fresh initialisation when the source has none.

import Foundation
import Tensor
import W2VBert
import Audio

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

    /// The letter dictionary of a CTC fine-tuned source: a Hugging Face Wav2Vec2BertForCTC folder's vocab.json,
    /// or the dict.ltr.txt of the run a checkpoint or run folder belongs to; nil for any other source.
    public static func sourceDictionary(_ source: String) throws -> CTCVocabulary? {
        if HuggingFace.isModelDirectory(source) {
            let src = try HuggingFace.open(source)
            return HuggingFace.isCTCFolder(src) ? try HuggingFace.readVocabulary(src) : nil
        }
        let isCheckpoint = FileManager.default.fileExists(atPath: source + "/trainer.json")
        let run = isCheckpoint ? (source as NSString).appendingPathComponent("../..") : source
        let path = run + "/" + FinetuneLabels.dictionaryName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do { return try CTCVocabulary.read(path: path) } catch { throw HuggingFaceError("\(error)") }
    }

    /// Overwrites `params` (already initialised from the config's seed) with the source's tensors.
    /// `keepHead` false: a CTC head of the source is skipped (its outputs are another dictionary's).
    /// Returns a one-line summary; throws naming the first tensor that does not fit.
    public static func load(
        from source: String, config c: Config, layout: ParameterLayout, params: FPtr, keepHead: Bool = true
    ) throws -> String {
        let file: SafeTensors.File
        var map: [String: String] = [:]  // our name → source name
        var skipped: [String] = []
        let kind: String
        if HuggingFace.isModelDirectory(source) {
            let src = try HuggingFace.open(source)
            (map, skipped) = try HuggingFace.sourceTensors(src, config: c, layout: layout, keepHead: keepHead)
            file = src.weights
            kind = "Hugging Face model"
        } else if let path = checkpointWeights(source) {
            do { file = try SafeTensors.open(path: path) } catch { throw HuggingFaceError("\(error)") }
            for name in file.entries.keys.sorted() {
                if c.model.head == .ctc && layout[name] == nil && HuggingFace.isHeadOrQuantizer(name) {
                    skipped.append(name)  // a pre-training head: fine-tuning has a CTC head instead
                    continue
                }
                if !keepHead && ParameterLayout.isCTCHead(name) {
                    skipped.append(name)
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
    /// A CTC source's head is loaded only when the run's dictionary is the source's.
    func initializeFrom(_ source: String) throws -> String {
        let keepHead = labels?.sourceHeadFits ?? true
        let s = try InitialWeights.load(
            from: source, config: config, layout: layout, params: objective.params.ptr, keepHead: keepHead)
        return keepHead ? s : s + " (the CTC head starts fresh: the run's dictionary differs from the source's)"
    }
}
