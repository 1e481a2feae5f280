import Audio
import XCTest

// Hand-computed cases; jiwer's `wer` and `cer` give the same rates on them.

final class ErrorRateTests: XCTestCase {
    func testLevenshtein() {
        func chars(_ a: String, _ b: String) -> Int { EditDistance.levenshtein(Array(a), Array(b)) }
        XCTAssertEqual(chars("kitten", "sitting"), 3)  // k→s, e→i, +g
        XCTAssertEqual(chars("flaw", "lawn"), 2)  // −f, +n
        XCTAssertEqual(chars("", "abc"), 3)
        XCTAssertEqual(chars("abc", ""), 3)
        XCTAssertEqual(chars("same", "same"), 0)
        XCTAssertEqual(chars("ab", "ba"), 2)  // no transpositions
    }

    func testWordErrorRate() {
        // "sat" → "sit" (substitution), "the" before "mat" deleted: 2 edits over 6 words.
        let w = ErrorRate.words(reference: "the cat sat on the mat", hypothesis: "the cat sit on mat")
        XCTAssertEqual(w, ErrorRate(edits: 2, referenceLength: 6))
        XCTAssertEqual(w.rate!, 2.0 / 6.0, accuracy: 1e-15)
        // Insertions count too, so a rate can exceed 1.
        XCTAssertEqual(ErrorRate.words(reference: "a", hypothesis: "b c d").rate, 3)
    }

    func testCharacterErrorRateCountsSpacesAndScalars() {
        // The space is a character: "ab cd" → "abcd" is one deletion over 5.
        XCTAssertEqual(
            ErrorRate.characters(reference: "ab cd", hypothesis: "abcd"),
            ErrorRate(edits: 1, referenceLength: 5))
        // Czech letters are single scalars (NFC): "kůň" → "kun" is two substitutions over 3.
        XCTAssertEqual(
            ErrorRate.characters(reference: "kůň", hypothesis: "kun"),
            ErrorRate(edits: 2, referenceLength: 3))
    }

    func testCorpusRateIsSumOverSum() {
        var total = ErrorRate()
        total.add(ErrorRate.words(reference: "a b c d", hypothesis: "a b c d"))  // 0 / 4
        total.add(ErrorRate.words(reference: "e", hypothesis: "f"))  // 1 / 1
        XCTAssertEqual(total.rate!, 0.2, accuracy: 1e-15, "not the mean of the rates (0.5)")
        let empty = ErrorRate.words(reference: "", hypothesis: "x y")
        XCTAssertEqual(empty, ErrorRate(edits: 2, referenceLength: 0))
        XCTAssertNil(empty.rate)
        total.add(empty)
        XCTAssertEqual(total.rate!, 3.0 / 5.0, accuracy: 1e-15)
    }

    func testGreedyDecoding() {
        let vocab = CTCVocabulary(symbols: ["|", "b", "a", "c"], counts: [1, 1, 1, 1])
        // Frame argmaxes: ∅ b b ∅ b | | a ∅ ∅ (then a padding row whose argmax would be c).
        let best: [Int] = [0, 2, 2, 0, 2, 1, 1, 3, 0, 0, 4]
        var logits = [Float](repeating: 0, count: best.count * vocab.size)
        for (t, k) in best.enumerated() {
            for j in 0..<vocab.size { logits[t * vocab.size + j] = Float((t * 7 + j * 3) % 5) * 0.1 }
            logits[t * vocab.size + k] = 2
        }
        logits.withUnsafeBufferPointer { p in
            XCTAssertEqual(CTCGreedyDecoding.ids(logits: p.baseAddress!, frames: 10, vocab: vocab.size), [2, 2, 1, 3])
            XCTAssertEqual(CTCGreedyDecoding.text(logits: p.baseAddress!, frames: 10, vocabulary: vocab), "bb a")
            XCTAssertEqual(CTCGreedyDecoding.text(logits: p.baseAddress!, frames: 11, vocabulary: vocab), "bb ac")
        }
        // Ties go to the lowest id (| over b), a blank separates two a's, the leading boundary is trimmed.
        let tie: [Float] = [0, 1, 1, 0, 0, 0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0, 0, 0, 5, 0]
        tie.withUnsafeBufferPointer { p in
            XCTAssertEqual(CTCGreedyDecoding.ids(logits: p.baseAddress!, frames: 4, vocab: 5), [1, 3, 3])
            XCTAssertEqual(CTCGreedyDecoding.text(logits: p.baseAddress!, frames: 4, vocabulary: vocab), "aa")
        }
        XCTAssertEqual(vocab.decode([Int32]([1, 3, 1, 0, 1, 4, 1])), "a c")
    }
}
