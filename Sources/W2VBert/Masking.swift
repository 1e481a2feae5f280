// Span masking of SPEC §4 (and §14.3), for benchmarks, tests and tools. The data pipeline owns the
// training masks; this is the same rule, drawn from RandomStream(seed, step, micro-batch, .mask).

import Tensor

/// Fills mask [B, T] (1 = masked) for utterances of `lengths[b]` encoder frames (≤ T): per utterance
/// spans = min(max(min_spans, ⌊prob·L/span + u⌋), L − span + 1) starts drawn without replacement from
/// [0, L − span]; masked set = union of the spans. Utterances with L < span are left unmasked.
public func spanMask(_ mask: UnsafeMutablePointer<UInt8>, lengths: [Int], t: Int, config c: Config, rng: inout RandomStream) {
    mask.update(repeating: 0, count: lengths.count * t)
    let span = c.mask.span
    for (b, len) in lengths.enumerated() {
        let choices = len - span + 1
        if choices < 1 { continue }
        let u = Double(rng.nextUniform())
        let n = min(max(c.mask.minSpans, Int(Double(c.mask.prob) * Double(len) / Double(span) + u)), choices)
        // Partial Fisher-Yates over the start positions: the first n of a random permutation.
        var starts = Array(0..<choices)
        for i in 0..<n {
            let j = i + rng.nextInt(choices - i)
            starts.swapAt(i, j)
            for k in starts[i]..<(starts[i] + span) { mask[b * t + k] = 1 }
        }
    }
}
