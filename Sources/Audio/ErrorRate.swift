// Character and word error rates, as jiwer computes them (the convention of Hugging Face's `evaluate` and of
// most published CTC results): the Levenshtein distance (substitutions + deletions + insertions, each cost 1)
// between reference and hypothesis, summed over a corpus and divided by the summed reference lengths.
//
// Both texts are expected in `TranscriptText` form (normalised, single spaces, trimmed). Units:
//   CER: Unicode scalars of the whole text, spaces included (jiwer's `cer` counts the space as a character);
//   WER: words, the text split at spaces.
// An empty reference adds its hypothesis length as insertions and nothing to the reference length; a corpus
// whose references are all empty has no rate (nil).

public enum EditDistance {
    /// The Levenshtein distance between two sequences (two rows of the dynamic programme, O(|a|·|b|) time).
    public static func levenshtein<T: Equatable>(_ a: [T], _ b: [T]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Edits and reference length accumulated over utterances; `rate` = edits / reference length.
public struct ErrorRate: Sendable, Equatable {
    public var edits: Int
    public var referenceLength: Int

    public init(edits: Int = 0, referenceLength: Int = 0) {
        self.edits = edits
        self.referenceLength = referenceLength
    }

    /// edits / referenceLength; nil when the reference length is 0.
    public var rate: Double? { referenceLength == 0 ? nil : Double(edits) / Double(referenceLength) }

    public mutating func add(_ other: ErrorRate) {
        edits += other.edits
        referenceLength += other.referenceLength
    }

    /// One utterance's character errors (CER units: scalars, spaces included).
    public static func characters(reference: String, hypothesis: String) -> ErrorRate {
        let r = Array(reference.unicodeScalars)
        return ErrorRate(edits: EditDistance.levenshtein(r, Array(hypothesis.unicodeScalars)), referenceLength: r.count)
    }

    /// One utterance's word errors (WER units: the words between spaces).
    public static func words(reference: String, hypothesis: String) -> ErrorRate {
        let r = reference.split(separator: " ")
        return ErrorRate(edits: EditDistance.levenshtein(r, hypothesis.split(separator: " ")), referenceLength: r.count)
    }
}
