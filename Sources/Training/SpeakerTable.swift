// hyper-lora's speaker table (adapter.speaker = table): which label each row of `speaker.table` stands for.
// A fresh run takes the distinct speaker labels of its training manifest (sorted) and writes them to
// RUN/speakers.txt (one per line); the table has one more row, the last, for unknown speakers (unlabelled
// rows, and labels the table does not know). Resume and `validate` read speakers.txt, so the table's size
// and row order stay fixed for the run; a training manifest that gained labels is refused naming both
// files. Every checkpoint's trainer.json also holds the labels (`speakers`), for `embed`. Each utterance's
// row is its conditioning index (ConditioningLabels).

import Foundation
import W2VBert
import Audio

enum SpeakerTable {
    static let fileName = "speakers.txt"

    /// Sets adapter.speakers and maps the manifests' speaker labels to the run's table rows (nil unless
    /// adapter.speaker = table). `training`: the train manifest is the one the run trains on (not
    /// `validate`'s stand-in).
    static func prepare(
        _ c: inout Config, train: Manifest, valid: Manifest?, trainPath: String,
        runDirectory: String, training: Bool
    ) throws -> ConditioningLabels? {
        guard c.adapter.isTable else { return nil }
        let stored = runDirectory + "/" + fileName
        let labels: [String]
        if FileManager.default.fileExists(atPath: stored) {
            labels = try read(stored)
            if training {
                try requireColumn(train, trainPath)
                let known = Set(labels)
                let new = train.speakerLabels.filter { !known.contains($0) }
                if let first = new.first {
                    throw TrainError(
                        "\(trainPath): \(new.count) speaker label(s) not in this run's table \(stored) "
                            + "(e.g. '\(first)'): the table's rows are fixed when a run starts; train a new "
                            + "run (another --run-dir) for new speakers")
                }
            }
        } else {
            // Without the labels a run's checkpoints cannot be read back row for row: refuse rather than start over.
            let hasCheckpoints = !CheckpointManager(runDirectory: runDirectory, keepLast: 1).list().isEmpty
            guard training && !hasCheckpoints else {
                throw TrainError(
                    "\(stored): missing (the speaker labels of this adapter.speaker = table run; each "
                        + "checkpoint's trainer.json holds them, field speakers, one per line in row order)")
            }
            try requireColumn(train, trainPath)
            labels = train.speakerLabels
        }
        c.adapter.speakers = labels.count
        return ConditioningLabels(
            labels: labels, train: train.relabelled(to: labels).speakers,
            valid: valid?.relabelled(to: labels).speakers ?? [], fileName: fileName)
    }

    static func requireColumn(_ m: Manifest, _ path: String) throws {
        guard m.hasSpeakers else {
            throw TrainError(
                "\(path): adapter.speaker = table needs a speaker label per row (a third TSV column, "
                    + "relative/path<TAB>num_samples<TAB>speaker); `launch/speaker-probe.py label` adds it "
                    + "for the default corpus")
        }
    }

    /// speakers.txt: one label per line, sorted, distinct.
    static func read(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TrainError("\(path): cannot read the speaker labels")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let labels = lines.filter { !$0.isEmpty }
        guard labels == Array(Set(labels)).sorted() else {
            throw TrainError("\(path): the speaker labels must be distinct and sorted, one per line")
        }
        return labels
    }
}
