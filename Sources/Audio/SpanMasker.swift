// Span masking over encoder frames, the wav2vec 2.0 / w2v-BERT scheme.
//
// For utterance b of true length L (encoder frames; padding excluded), u ~ U(0, 1) from the stream:
//   choices = L − span + 1                      (starts from the inclusive range [0, L − span])
//   spans   = min(choices, max(min_spans, ⌊mask_prob·L/span + u⌋))
//   starts  = `spans` distinct values of 0 ..< choices (partial Fisher-Yates: without replacement)
//   mask[b, t] = 1 for t in ∪ [start, start + span)     (spans may overlap; never past L)
// Frames t ≥ L (padding) are never masked. An utterance with L < span (choices ≤ 0) gets no mask; the data
// pipeline drops those before they get here (DataOrder, L < span + min_spans).
// Defaults mask_prob 0.65, span 10, min_spans 2 mask ≈ 49 % of the frames of long utterances.
//
// Randomness: the caller passes RandomStream(seed, step, micro-batch global index, .mask) — see
// MicroBatch.randomStream — so a mask does not depend on the rank that computes it. Draw order per
// utterance, b = 0 … B−1: u, then the start draws.

import Tensor

public struct SpanMasker: Sendable {
    public let maskProb: Double
    public let span: Int
    public let minSpans: Int

    public init(maskProb: Double = 0.65, span: Int = 10, minSpans: Int = 2) {
        precondition(maskProb >= 0 && span >= 1 && minSpans >= 0)
        self.maskProb = maskProb
        self.span = span
        self.minSpans = minSpans
    }

    /// Number of spans for an utterance of L frames given u ∈ (0, 1) (before the cap to the choices).
    @inline(__always)
    public func spanCount(length L: Int, u: Double) -> Int {
        max(minSpans, Int((maskProb * Double(L) / Double(span) + u).rounded(.down)))
    }

    /// The span starts of one utterance of L frames (distinct, in draw order); consumes u then the
    /// start draws from `stream`. Empty when L < span.
    public func drawStarts(length L: Int, stream: inout RandomStream) -> [Int] {
        let u = Double(stream.nextUniform())
        let choices = L - span + 1
        if choices <= 0 { return [] }
        let n = min(choices, spanCount(length: L, u: u))
        var pool = Array(0..<choices)  // partial Fisher-Yates: n draws without replacement
        for i in 0..<n { pool.swapAt(i, i + stream.nextInt(choices - i)) }
        return Array(pool.prefix(n))
    }

    /// mask [B, paddedLength] of 0/1, row b masked within [0, lengths[b]).
    public func mask(lengths: [Int], paddedLength T: Int, stream: inout RandomStream) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: lengths.count * T)
        out.withUnsafeMutableBufferPointer { buf in
            let m = buf.baseAddress!
            for (b, L) in lengths.enumerated() {
                precondition(L >= 0 && L <= T, "SpanMasker: length \(L) outside 0...\(T)")
                let row = m + b * T
                for s in drawStarts(length: L, stream: &stream) {
                    for t in s..<(s + span) { row[t] = 1 }
                }
            }
        }
        return out
    }
}
