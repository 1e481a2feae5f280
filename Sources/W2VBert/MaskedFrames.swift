// The masked frames of a micro-batch in (b, t) order: the rows the quantizer, the masking and both losses
// work on. S = count; row i is frame rows[i] = b·T + t of the [N, d] sequence tensors.

import Tensor

struct MaskedFrames {
    let rows: UnsafeMutablePointer<Int32>  // [S] row b·T + t
    let utterance: UnsafeMutablePointer<Int32>  // [S] b of each row
    let uttStart: UnsafeMutablePointer<Int32>  // [B] first masked row of utterance b
    let uttCount: UnsafeMutablePointer<Int32>  // [B] masked rows of utterance b
    let encoderLengths: UnsafeMutablePointer<Int32>  // [B] T of each utterance (≤ padded T)
    private(set) var count = 0

    init(_ a: Arena, capacity cap: Capacity) {
        rows = a.takeInt32(cap.masked)
        utterance = a.takeInt32(cap.masked)
        uttStart = a.takeInt32(cap.batch)
        uttCount = a.takeInt32(cap.batch)
        encoderLengths = a.takeInt32(cap.batch)
    }

    /// Encoder lengths min(T, encoderLength(lengths[b])) of a micro-batch.
    func setLengths(_ lengths: UnsafePointer<Int32>, _ s: BatchShape, config c: Config) {
        for b in 0..<s.b { encoderLengths[b] = Int32(min(s.t, c.encoderLength(t0: Int(lengths[b])))) }
    }

    /// Collects the frames t < encoderLengths[b] with mask[b·T + t] ≠ 0.
    mutating func collect(mask: UnsafePointer<UInt8>, _ s: BatchShape) {
        count = 0
        for b in 0..<s.b {
            uttStart[b] = Int32(count)
            for t in 0..<Int(encoderLengths[b]) where mask[b * s.t + t] != 0 {
                rows[count] = Int32(b * s.t + t)
                utterance[count] = Int32(b)
                count += 1
            }
            uttCount[b] = Int32(count) - uttStart[b]
        }
    }

    /// No masked frames (embedding whole utterances).
    mutating func clear() { count = 0 }

    /// dst[i] = src[rows[i]] for every masked frame (rows of width w).
    func gather(_ dst: FPtr, from src: CFPtr, width w: Int) {
        for i in 0..<count { (dst + i * w).update(from: src + Int(rows[i]) * w, count: w) }
    }

    /// dst[rows[i]] += src[i] for every masked frame.
    func scatterAdd(_ dst: FPtr, from src: CFPtr, width w: Int) {
        for i in 0..<count { axpy(dst + Int(rows[i]) * w, src + i * w, n: w) }
    }
}
