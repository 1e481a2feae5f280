// How a run of another kind than audio settles its input before the layout is built (docs/sequences.md):
//   - the manifests' kind (line 1's kind=) must be the run's data.kind;
//   - series: data.channels from the manifest (or the same value), the CSV columns the manifest names, and
//     the per-channel mean and standard deviation over the training manifest's files (every rank measures
//     them the same way: same files, same order, Double sums), written into data.mean / data.std, so they
//     are in every checkpoint's config and `embed` normalises identically;
//   - tokens: the vocabulary the manifest names (vocab=, next to it), or RUN/vocab.txt of a run that already
//     has one (which must then be the same); data.vocab_size is its size; rank 0 writes RUN/vocab.txt.

import Audio
import Foundation
import W2VBert

public enum SequenceSetup {
    public static let vocabularyName = "vocab.txt"

    /// The loader's format of a run, after `prepare` has settled the config.
    public static func format(_ c: Config, vocabulary: TokenVocabulary?) -> SequenceFormat {
        switch c.data.kind {
        case .audio: return .audio
        case .series:
            return .series(
                SeriesFormat(columns: c.data.columns, mean: c.data.mean, std: c.data.std), channels: c.data.channels)
        case .tokens: return .tokens(vocabulary!)
        }
    }

    /// Checks the manifests against the run and completes the data section; returns the loader's format.
    static func prepare(
        _ c: inout Config, train: Manifest, valid: Manifest?, trainPath: String, validPath: String?,
        runDirectory: String, writes: Bool
    ) throws -> SequenceFormat {
        for (m, path) in [(train, trainPath)] + (valid.map { [($0, validPath!)] } ?? []) {
            guard m.kind.rawValue == c.data.kind.rawValue else {
                throw TrainError(
                    "\(path): a manifest of kind \(m.kind.rawValue), the run has data.kind = \(c.data.kind.rawValue) "
                        + "(HINT: a preset of that kind, e.g. "
                        + "\(m.kind == .audio ? "tiny" : m.kind.rawValue + "-tiny"), "
                        + "or --set data.kind=\(m.kind.rawValue))")
            }
        }
        switch c.data.kind {
        case .audio: return .audio
        case .series:
            let columns = try seriesColumns(train, trainPath, valid, validPath)
            guard let channels = train.attributes["channels"].flatMap(Int.init), channels >= 1 else {
                throw TrainError(
                    "\(trainPath): line 1 has no channels= (HINT: write it with `w2vbert prepare --kind series`)")
            }
            if let v = valid, v.attributes["channels"] != train.attributes["channels"] {
                throw TrainError(
                    "\(validPath!): channels=\(v.attributes["channels"] ?? "missing"), the training manifest has "
                        + "\(channels)"
                )
            }
            if c.data.channels != 0 && c.data.channels != channels {
                throw TrainError(
                    "\(trainPath): \(channels) channels, the run has data.channels = \(c.data.channels)")
            }
            c.data.channels = channels
            if let r = train.attributes["rate"].flatMap(Double.init) {
                if c.data.rate != 0 && c.data.rate != r {
                    throw TrainError("\(trainPath): rate=\(r) Hz, the run has data.rate = \(c.data.rate)")
                }
                c.data.rate = r
            }
            c.data.columns = columns
            if c.data.mean.isEmpty {
                let (mean, std) = try statistics(train, channels: channels, columns: columns)
                c.data.mean = mean
                c.data.std = std
            }
            do { try c.validate() } catch { throw TrainError("\(error)") }
            return format(c, vocabulary: nil)
        case .tokens:
            let vocab = try vocabulary(train, trainPath: trainPath, runDirectory: runDirectory)
            if c.data.vocabSize != 0 && c.data.vocabSize != vocab.count {
                throw TrainError(
                    "\(trainPath): the vocabulary has \(vocab.count) tokens, the run has data.vocab_size = "
                        + "\(c.data.vocabSize)"
                )
            }
            c.data.vocabSize = vocab.count
            do { try c.validate() } catch { throw TrainError("\(error)") }
            if writes {
                let path = runDirectory + "/" + vocabularyName
                if !FileManager.default.fileExists(atPath: path) {
                    do {
                        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
                        try vocab.write(to: path)
                    } catch { throw TrainError("\(error)") }
                }
            }
            return format(c, vocabulary: vocab)
        }
    }

    static func seriesColumns(
        _ train: Manifest, _ trainPath: String, _ valid: Manifest?, _ validPath: String?
    ) throws
        -> [String]
    {
        let t = train.attributes["columns"] ?? ""
        if let v = valid, (v.attributes["columns"] ?? "") != t {
            throw TrainError(
                "\(validPath!): columns=\(v.attributes["columns"] ?? "") differ from the training manifest's '\(t)'")
        }
        return t.isEmpty ? [] : t.split(separator: ",").map(String.init)
    }

    /// Per-channel mean and standard deviation of every value of the manifest's files (NaN left out); a
    /// channel without spread gets std 1.
    public static func statistics(_ m: Manifest, channels: Int, columns: [String]) throws -> ([Float], [Float]) {
        var sum = [Double](repeating: 0, count: channels), sq = sum, count = sum
        for i in 0..<m.count {
            let path = m.fullPath(i)
            let s: SeriesData
            // A file that does not read is left out here; the loader skips and counts it.
            do { s = try SequenceFiles.readSeries(path: path, columns: columns) } catch { continue }
            guard s.channels == channels else { continue }
            for (j, v) in s.values.enumerated() where !v.isNaN {
                let ch = j % channels
                sum[ch] += Double(v)
                sq[ch] += Double(v) * Double(v)
                count[ch] += 1
            }
        }
        var mean = [Float](), std = [Float]()
        for ch in 0..<channels {
            let n = max(count[ch], 1), mu = sum[ch] / n
            let variance = max(sq[ch] / n - mu * mu, 0)
            mean.append(Float(mu))
            let sd = Float(variance.squareRoot())
            std.append(sd > 1e-6 * max(1, abs(Float(mu))) ? sd : 1)
        }
        return (mean, std)
    }

    /// The run's vocabulary: RUN/vocab.txt when the run has one (the manifest's must then be the same), else
    /// the manifest's vocab= file (relative to the manifest's folder).
    static func vocabulary(_ train: Manifest, trainPath: String, runDirectory: String) throws -> TokenVocabulary {
        let runPath = runDirectory + "/" + vocabularyName
        var listed: TokenVocabulary? = nil
        if let v = train.attributes["vocab"] {
            let path = v.hasPrefix("/") ? v : (trainPath as NSString).deletingLastPathComponent + "/" + v
            do { listed = try TokenVocabulary.read(path: path) } catch { throw TrainError("\(error)") }
        }
        if FileManager.default.fileExists(atPath: runPath) {
            let run: TokenVocabulary
            do { run = try TokenVocabulary.read(path: runPath) } catch { throw TrainError("\(error)") }
            if let listed, listed != run {
                throw TrainError(
                    "\(trainPath): its vocabulary differs from the run's \(runPath) (a resumed run keeps the "
                        + "vocabulary it started with)"
                )
            }
            return run
        }
        guard let listed else {
            throw TrainError("\(trainPath): line 1 has no vocab= (HINT: write it with `w2vbert prepare --kind tokens`)")
        }
        return listed
    }
}
