// The masking of CTC fine-tuning (wav2vec 2.0's fine-tuning recipe), on the encoder's frames and channels.
//   time:    spans of finetune.mask_time_span encoder frames per utterance, at least two when
//            finetune.mask_time_prob > 0; the masked frames get the mask embedding (ContextInput, as in
//            pre-training). Stream (seed, step, micro-batch, .mask).
//   channel: spans of finetune.mask_channel_span of the d channels per utterance (no minimum); the encoder
//            input x0 is zeroed at those channels for every frame of the utterance. Stream (seed, step,
//            micro-batch, .channelMask).
// Both use the span scheme of pre-training's masks (Audio's SpanMasker, the same draws in the same order),
// drawn here without allocating: u ~ U(0, 1), spans = min(L − span + 1, max(min, ⌊prob·L/span + u⌋)) distinct
// starts by a partial Fisher-Yates over 0 ..< L − span + 1; nothing when L < span.

import Tensor

/// One span scheme (probability, span, minimum spans) with a start pool carved from the arena.
struct SpanDraw {
    let prob: Double
    let span: Int
    let minSpans: Int
    let pool: UnsafeMutablePointer<Int32>  // [capacity] candidate starts

    init(prob: Float, span: Int, minSpans: Int, capacity: Int, _ a: Arena) {
        self.prob = Double(prob)
        self.span = span
        self.minSpans = minSpans
        pool = a.takeInt32(capacity)
    }

    /// Sets row[t] = 1 for t in the drawn spans of one sequence of L positions (row[0..<L] is not cleared).
    func draw(_ row: UnsafeMutablePointer<UInt8>, length L: Int, stream: inout RandomStream) {
        let u = Double(stream.nextUniform())
        let choices = L - span + 1
        if choices <= 0 { return }
        let n = min(choices, max(minSpans, Int((prob * Double(L) / Double(span) + u).rounded(.down))))
        for i in 0..<choices { pool[i] = Int32(i) }
        for i in 0..<n { pool.swapAt(i, i + stream.nextInt(choices - i)) }
        for i in 0..<n {
            let start = Int(pool[i])
            for t in start..<(start + span) { row[t] = 1 }
        }
    }
}

extension UnsafeMutablePointer where Pointee == Int32 {
    @inline(__always) fileprivate func swapAt(_ i: Int, _ j: Int) {
        let v = self[i]
        self[i] = self[j]
        self[j] = v
    }
}

/// The time and channel masks of one micro-batch.
struct CTCMasking {
    let time: SpanDraw
    let channel: SpanDraw
    let timeMask: UnsafeMutablePointer<UInt8>  // [B, T] 1 = masked frame
    let channelMask: UnsafeMutablePointer<UInt8>  // [B, d] 1 = zeroed channel
    let d: Int
    /// Whether the last `draw` zeroed any channel.
    private(set) var anyChannel = false

    init(_ a: Arena, config c: Config, capacity cap: Capacity) {
        let f = c.finetune
        d = c.model.dim
        time = SpanDraw(prob: f.maskTimeProb, span: f.maskTimeSpan, minSpans: 2, capacity: cap.t, a)
        channel = SpanDraw(prob: f.maskChannelProb, span: f.maskChannelSpan, minSpans: 0, capacity: d, a)
        timeMask = UnsafeMutableRawPointer(a.take((cap.n + 3) / 4)).assumingMemoryBound(to: UInt8.self)
        channelMask = UnsafeMutableRawPointer(a.take((cap.batch * d + 3) / 4)).assumingMemoryBound(to: UInt8.self)
    }

    /// Draws both masks of a micro-batch (training), or clears them (`enabled` false: inference, evaluation).
    mutating func draw(lengths: UnsafePointer<Int32>, _ s: BatchShape, key: RandomKey, enabled: Bool) {
        timeMask.update(repeating: 0, count: s.n)
        channelMask.update(repeating: 0, count: s.b * d)
        anyChannel = false
        guard enabled else { return }
        if time.prob > 0 {
            var rng = key.stream(.mask)
            for b in 0..<s.b { time.draw(timeMask + b * s.t, length: Int(lengths[b]), stream: &rng) }
        }
        if channel.prob > 0 {
            var rng = key.stream(.channelMask)
            for b in 0..<s.b { channel.draw(channelMask + b * d, length: d, stream: &rng) }
            for i in 0..<(s.b * d) where channelMask[i] != 0 { anyChannel = true }
        }
    }

    /// x [B, T, d] zeroed at each utterance's masked channels (forward on x0; backward on dx0).
    func zeroChannels(_ x: FPtr, _ s: BatchShape) {
        guard anyChannel else { return }
        for b in 0..<s.b {
            let m = channelMask + b * d
            for t in 0..<s.t {
                let row = x + (b * s.t + t) * d
                for k in 0..<d where m[k] != 0 { row[k] = 0 }
            }
        }
    }
}
