// The labels behind a run's per-utterance conditioning indices (e.g. the rows of hyper-lora's speaker
// table): fixed when the run starts, recorded in the run folder and in every checkpoint's trainer.json, and
// mapped to one index per manifest entry (−1 = none) that the data loader hands to the model with each
// micro-batch. `RunOptions` says which model option, if any, needs them.

import Foundation
import W2VBert
import Audio

struct ConditioningLabels: Sendable {
    /// Index i stands for labels[i].
    let labels: [String]
    /// Per entry of the training / validation manifest: its conditioning index, −1 = none (empty: none).
    let train: [Int32]
    let valid: [Int32]
    /// The file in the run folder that records the labels, one per line.
    let fileName: String

    /// Writes the labels to RUN/fileName unless the file exists.
    func record(runDirectory: String) throws {
        let path = runDirectory + "/" + fileName
        if FileManager.default.fileExists(atPath: path) { return }
        do { try (labels.map { $0 + "\n" }.joined()).write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw TrainError("\(path): cannot write the labels: \(error)")
        }
    }
}

/// The run-level work of the model options that need it: today hyper-lora's speaker table
/// (SpeakerTable.swift), whose rows are the training manifest's speaker labels.
enum RunOptions {
    /// The run's conditioning labels (nil: no option conditions on labels); may set config keys the layout
    /// needs (e.g. the number of table rows). `training`: the train manifest is the one the run trains on.
    static func prepare(
        _ c: inout Config, train: Manifest, valid: Manifest?, trainPath: String,
        runDirectory: String, training: Bool
    ) throws -> ConditioningLabels? {
        try SpeakerTable.prepare(
            &c, train: train, valid: valid, trainPath: trainPath, runDirectory: runDirectory,
            training: training)
    }
}
