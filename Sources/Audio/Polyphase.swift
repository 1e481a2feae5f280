// The default resampler (`ResampleQuality.polyphase`): a windowed-sinc polyphase filter for the rational
// ratio T/R = L/M (reduced by gcd). libsamplerate's SINC converters evaluate their filter by interpolating a
// table for every output sample (any ratio, even a varying one), and that made resampling 22 % of all CPU
// time when training on the default corpus (22.05 kHz Ogg), more than any model kernel. With a fixed rational
// ratio the L filter phases can be tabulated once, and each output is one dot product.
//
//   output m is the signal at input time t = m·M/L:  base = ⌊m·M/L⌋, phase p = m·M mod L
//   y[m] = Σ_{i<2H} c_p[i] · x[base − H + 1 + i]        (x = 0 outside the input)
//   c_p[i] = h(p/L + H − 1 − i) / Σ_i h(…),   h(t) = 2f_c·sinc(2f_c·t)·kaiser(t / (H + 1), β)
//
// Design (same band edges as libsamplerate's MEDIUM: passband to 90 % of the lower Nyquist frequency
// f_N = min(R, T)/2, stop band from f_N): cutoff f_c = 0.95·f_N/R cycles per input sample, transition
// Δf = 0.1·f_N/R, stop-band attenuation A = 100 dB → Kaiser β = 0.1102·(A − 8.7), 2H ≥ (A − 7.95)/(2.285·2πΔf)
// taps (178 for 22.05 kHz → 16 kHz). Each phase is normalised to unit DC gain. Output m depends only on
// the input around m·M/L, with the same phase and summation order wherever the window starts on a
// multiple of M, which is what crops do (DecoderWindow): a crop stays bit-identical to the same stretch of
// the whole-file decode. Like libsamplerate's converters it streams: it keeps only the last 2H inputs.
// Ratios with L > `maxPhases` (odd rates such as 44 101 Hz) or a table over `maxTable` floats (16 MB) use
// libsamplerate's MEDIUM instead.

import Foundation

/// The tabulated filter of one (R, T) pair; built once per process and shared.
public final class PolyphaseFilter: @unchecked Sendable {
    public let L: Int, M: Int  // T/R = L/M
    let taps: Int  // 2H, a multiple of 16 (zero-padded)
    let H: Int
    let table: UnsafeMutablePointer<Float>  // [L][taps]
    public static let maxPhases = 4096
    public static let maxTable = 1 << 22
    static let attenuation = 100.0

    /// Phases L, M, half-length H and padded taps of the R → T filter.
    static func size(rate R: Int, target T: Int) -> (L: Int, M: Int, H: Int, taps: Int) {
        let g = gcd(R, T)
        let df = 0.1 * Double(min(R, T)) / 2 / Double(R)
        let n = Int(((attenuation - 7.95) / (2.285 * 2 * Double.pi * df)).rounded(.up))
        let H = (n + 1) / 2
        return (T / g, R / g, H, (2 * H + 15) / 16 * 16)
    }

    init(rate R: Int, target T: Int) {
        (L, M, H, taps) = PolyphaseFilter.size(rate: R, target: T)
        let nyquist = Double(min(R, T)) / 2
        let fc = 0.95 * nyquist / Double(R)
        let beta = 0.1102 * (PolyphaseFilter.attenuation - 8.7)
        table = .allocate(capacity: L * taps)
        table.initialize(repeating: 0, count: L * taps)
        let i0b = PolyphaseFilter.besselI0(beta), half = Double(H + 1)
        for p in 0..<L {
            var row = [Double](repeating: 0, count: 2 * H)
            for i in 0..<(2 * H) {
                let t = Double(p) / Double(L) + Double(H - 1 - i)  // input time of tap i relative to the output
                let u = t / half
                let w = abs(u) >= 1 ? 0 : PolyphaseFilter.besselI0(beta * (1 - u * u).squareRoot()) / i0b
                let x = 2 * fc * t
                row[i] = 2 * fc * (x == 0 ? 1 : sin(Double.pi * x) / (Double.pi * x)) * w
            }
            let sum = row.reduce(0, +)
            for i in 0..<(2 * H) { table[p * taps + i] = Float(row[i] / sum) }
        }
    }
    deinit { table.deallocate() }

    /// Modified Bessel function of the first kind, order 0 (power series; converges fast for β ≤ 20).
    static func besselI0(_ x: Double) -> Double {
        var sum = 1.0, term = 1.0, k = 1.0
        let q = x * x / 4
        while term > 1e-17 * sum {
            term *= q / (k * k)
            sum += term
            k += 1
        }
        return sum
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [Int: PolyphaseFilter] = [:]

    /// The shared filter for R → T, or nil when the ratio needs more than `maxPhases` phases or the table
    /// more than `maxTable` floats (odd rates; header fields must not size large tables).
    public static func shared(rate R: Int, target T: Int) -> PolyphaseFilter? {
        let z = size(rate: R, target: T)
        if z.L > maxPhases || z.L * z.taps > maxTable { return nil }
        lock.lock()
        defer { lock.unlock() }
        let key = R &* 1_000_003 &+ T
        if let f = cache[key] { return f }
        let f = PolyphaseFilter(rate: R, target: T)
        cache[key] = f
        return f
    }
}

/// Streaming polyphase resampler with `StreamResampler`'s interface: output 0 is at input time 0.
public final class PolyphaseResampler {
    let filter: PolyphaseFilter
    /// Inputs [bufStart, bufStart + buf.count) (earlier ones are no longer needed).
    private var buf: [Float] = []
    private var bufStart = 0
    private var next = 0  // next output index m
    private var total = 0  // inputs received

    public init(filter: PolyphaseFilter) { self.filter = filter }

    /// Feeds `count` inputs and appends every output whose taps are all available; with `endOfInput`, also
    /// the outputs at input times before the end (taps past it read 0).
    public func process(_ input: UnsafePointer<Float>, count: Int, endOfInput: Bool, into out: inout [Float]) {
        buf.append(contentsOf: UnsafeBufferPointer(start: input, count: count))
        total += count
        let L = filter.L, M = filter.M, H = filter.H
        buf.withUnsafeBufferPointer { b in
            while true {
                let base = next * M / L
                if endOfInput ? base >= total : base + H >= total { break }
                out.append(output(base: base, phase: next * M % L, b))
                next += 1
            }
        }
        let keep = next * M / L - H + 1 - bufStart  // first input the next output reads
        if keep > 0 && keep <= buf.count {
            buf.removeFirst(keep)
            bufStart += keep
        }
    }

    @inline(__always)
    private func output(base: Int, phase p: Int, _ b: UnsafeBufferPointer<Float>) -> Float {
        let taps = filter.taps, H = filter.H
        let c = filter.table + p * taps
        let first = base - H + 1 - bufStart  // buffer index of tap 0
        if first >= 0 && first + taps <= b.count {
            // Interior: 16-wide FMAs over the taps (the zero-padded tail multiplies real inputs by 0).
            let x = UnsafeRawPointer(b.baseAddress! + first), cr = UnsafeRawPointer(c)
            var acc = SIMD16<Float>()
            for k in stride(from: 0, to: taps, by: 16) {
                acc.addProduct(
                    x.loadUnaligned(fromByteOffset: 4 * k, as: SIMD16<Float>.self),
                    cr.loadUnaligned(fromByteOffset: 4 * k, as: SIMD16<Float>.self))
            }
            return acc.sum()
        }
        // Edges (start of input, end of input, or the padded tail past the buffer): the same sum in the
        // same 16-lane order, with missing inputs as 0.
        var acc = SIMD16<Float>()
        for k in stride(from: 0, to: taps, by: 16) {
            var xv = SIMD16<Float>(), cv = SIMD16<Float>()
            for l in 0..<16 {
                let j = first + k + l
                xv[l] = j >= 0 && j < b.count ? b[j] : 0
                cv[l] = c[k + l]
            }
            acc.addProduct(xv, cv)
        }
        return acc.sum()
    }
}
