// Greedy (best-path) CTC decoding: the most likely output per frame, repeats merged, blanks dropped. The text
// is the vocabulary's decoding of those ids (`|` becomes a space, spaces collapsed and trimmed).

import Tensor

public enum CTCGreedyDecoding {
    /// The best-path ids of one utterance: logits [frames, vocab] (only the first `frames` rows are read), the
    /// argmax of each row (the lowest id on ties), runs of the same id merged, blanks (0) dropped.
    public static func ids(logits: CFPtr, frames: Int, vocab: Int) -> [Int32] {
        var out: [Int32] = []
        var previous: Int32 = -1
        for t in 0..<frames {
            let row = logits + t * vocab
            var best = 0
            for k in 1..<max(vocab, 1) where row[k] > row[best] { best = k }
            let id = Int32(best)
            if id != previous && id != CTCVocabulary.blank { out.append(id) }
            previous = id
        }
        return out
    }

    /// The best-path text of one utterance.
    public static func text(logits: CFPtr, frames: Int, vocabulary: CTCVocabulary) -> String {
        vocabulary.decode(ids(logits: logits, frames: frames, vocab: vocabulary.size))
    }
}
