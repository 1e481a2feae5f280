// Kaldi-compatible log-mel filterbank and per-utterance CMVN.
//
// Matches Kaldi's compute-fbank-feats (src/feat/feature-window.cc, feature-fbank.cc, mel-computations.cc)
// and kaldi-native-fbank with: samp_freq 16000, frame_length 25 ms, frame_shift 10 ms, dither 0,
// snip_edges true, remove_dc_offset true, preemph_coeff 0.97, window_type povey, round_to_power_of_two,
// num_bins 80, low_freq 20, high_freq 8000, use_energy false, use_power true, use_log_fbank true.
// Input samples are scaled to the int16 range (×32768) first, as Kaldi reads int16 WAVs.
//
//   frames (snip_edges, feature-window.cc NumFrames):  T0 = N < 400 ? 0 : 1 + ⌊(N − 400) / 160⌋
//   frame t: w[i] = 32768·x[160t + i], i < 400
//   ExtractWindow/ProcessWindow, in order:
//     DC:        w[i] −= mean(w)
//     Preemphasize (in-frame): for i = 399 … 1: w[i] −= 0.97·w[i−1];  w[0] −= 0.97·w[0]
//     Povey:     w[i] *= (0.5 − 0.5·cos(2πi / 399))^0.85
//     zero-pad to 512
//   ComputePowerSpectrum: p[k] = |FFT_512(w)[k]|², k = 0 … 256 (RealFFT)
//   MelBanks (mel-computations.cc, in float as Kaldi computes them):
//     mel(f) = 1127·ln(1 + f/700); Δ = (mel(8000) − mel(20)) / 81
//     bin b: left = mel(20) + b·Δ, center = left + Δ, right = left + 2Δ
//     FFT bin i < 256 (f_i = 31.25·i), μ = mel(f_i): weight = (μ − left)/(center − left) if left < μ ≤ center,
//       (right − μ)/(right − center) if center < μ < right, else 0 (stored as a sparse [first, count] range)
//     e_b = Σ_i weight_b[i]·p[i]
//   out[t, b] = ln(max(e_b, FLT_EPSILON))      (no energy column; a NaN e_b, which only non-finite input
//                                               can give, stays NaN: the decoder refuses such input)
//
// CMVN (per utterance and bin over its true frames): y = (x − μ) / sqrt(σ² + 1e-5), σ² the
// population variance.
//
// Arithmetic: frame, FFT and mel sums in Double (see FFT.swift); mel weights are Kaldi's float values.
// Speed: window, mel ranges and FFT tables are precomputed; the frame loop allocates nothing
// (≈ 3000× real time on one core, see `w2vbert bench data`). A KaldiFbank holds scratch buffers: use one
// per thread.

import Foundation

public struct FbankOptions: Sendable, Equatable, Codable {
    public var sampleRate = 16_000
    public var frameLength = 400  // samples (25 ms)
    public var frameShift = 160  // samples (10 ms)
    public var fftSize = 512  // frame zero-padded to this (Kaldi round_to_power_of_two)
    public var numBins = 80
    public var lowFreq: Float = 20
    public var highFreq: Float = 8000  // > 0: absolute; ≤ 0: offset from Nyquist (Kaldi)
    public var preemphasis: Float = 0.97
    public var scale: Float = 32768  // samples in [-1, 1) → int16 range
    public init() {}
}

public final class KaldiFbank: @unchecked Sendable {
    public let options: FbankOptions
    public var numBins: Int { options.numBins }
    let window: UnsafeMutablePointer<Double>  // [frameLength] Povey
    let melFirst: UnsafeMutablePointer<Int32>  // [numBins] first FFT bin with non-zero weight
    let melCount: UnsafeMutablePointer<Int32>  // [numBins] number of weights
    let melOffset: UnsafeMutablePointer<Int32>  // [numBins] offset of bin b's weights in melWeights
    let melWeights: UnsafeMutablePointer<Double>  // Kaldi's float weights, widened
    let frame: UnsafeMutablePointer<Double>  // [fftSize] scratch
    let power: UnsafeMutablePointer<Double>  // [fftSize/2 + 1] scratch
    let fft: RealFFT

    /// Kaldi's MelScale, in float as mel-computations.h computes it.
    @inline(__always) static func mel(_ f: Float) -> Float { 1127 * logf(1 + f / 700) }

    public init(options: FbankOptions = FbankOptions()) {
        precondition(options.fftSize >= options.frameLength && options.fftSize & (options.fftSize - 1) == 0)
        self.options = options
        let N = options.frameLength
        window = .allocate(capacity: N)
        let a = 2 * Double.pi / Double(N - 1)
        for i in 0..<N { window[i] = pow(0.5 - 0.5 * cos(a * Double(i)), 0.85) }

        // Mel filters (MelBanks::MelBanks), sparse.
        let nb = options.numBins
        let numFftBins = options.fftSize / 2
        let nyquist = 0.5 * Float(options.sampleRate)
        let high = options.highFreq > 0 ? options.highFreq : nyquist + options.highFreq
        precondition(options.lowFreq >= 0 && high <= nyquist && options.lowFreq < high, "fbank: bad mel range")
        let binWidth = Float(options.sampleRate) / Float(options.fftSize)
        let melLow = KaldiFbank.mel(options.lowFreq), melHigh = KaldiFbank.mel(high)
        let delta = (melHigh - melLow) / Float(nb + 1)
        var first = [Int32](), count = [Int32](), offset = [Int32](), weights = [Float]()
        for b in 0..<nb {
            let left = melLow + Float(b) * delta
            let center = melLow + Float(b + 1) * delta
            let right = melLow + Float(b + 2) * delta
            var f0 = -1, w = [Float]()
            for i in 0..<numFftBins {
                let m = KaldiFbank.mel(binWidth * Float(i))
                if m > left && m < right {
                    if f0 < 0 { f0 = i }
                    w.append(m <= center ? (m - left) / (center - left) : (right - m) / (right - center))
                } else if f0 >= 0 {
                    break
                }
            }
            precondition(f0 >= 0, "fbank: mel bin \(b) is empty (too many bins for the FFT size)")
            first.append(Int32(f0))
            count.append(Int32(w.count))
            offset.append(Int32(weights.count))
            weights += w
        }
        melFirst = .allocate(capacity: nb)
        melFirst.initialize(from: first, count: nb)
        melCount = .allocate(capacity: nb)
        melCount.initialize(from: count, count: nb)
        melOffset = .allocate(capacity: nb)
        melOffset.initialize(from: offset, count: nb)
        melWeights = .allocate(capacity: weights.count)
        melWeights.initialize(from: weights.map(Double.init), count: weights.count)
        frame = .allocate(capacity: options.fftSize)
        power = .allocate(capacity: options.fftSize / 2 + 1)
        fft = RealFFT(n: options.fftSize)
    }

    deinit {
        window.deallocate()
        melFirst.deallocate()
        melCount.deallocate()
        melOffset.deallocate()
        melWeights.deallocate()
        frame.deallocate()
        power.deallocate()
    }

    /// T0 for N samples (snip_edges).
    public func numFrames(samples n: Int) -> Int {
        n < options.frameLength ? 0 : 1 + (n - options.frameLength) / options.frameShift
    }

    /// Log-mel energies of `count` samples → out [T0, numBins]. Returns T0.
    @discardableResult
    public func compute(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>) -> Int {
        let T0 = numFrames(samples: count)
        let N = options.frameLength, shift = options.frameShift, P = options.fftSize, nb = options.numBins
        let scale = Double(options.scale), c = Double(options.preemphasis)
        let frame = self.frame, power = self.power, window = self.window
        let floor = Double(Float.ulpOfOne)  // FLT_EPSILON
        for i in N..<P { frame[i] = 0 }
        for t in 0..<T0 {
            let src = x + t * shift
            // int16 scaling and DC removal
            var sum: Double = 0
            for i in 0..<N {
                let v = Double(src[i]) * scale
                frame[i] = v
                sum += v
            }
            let mean = sum / Double(N)
            for i in 0..<N { frame[i] -= mean }
            // pre-emphasis, Kaldi's in-frame form
            var i = N - 1
            while i > 0 {
                frame[i] -= c * frame[i - 1]
                i -= 1
            }
            frame[0] -= c * frame[0]
            // Povey window
            for i in 0..<N { frame[i] *= window[i] }
            fft.powerSpectrum(frame, power)
            let o = out + t * nb
            for b in 0..<nb {
                let w = melWeights + Int(melOffset[b])
                let p = power + Int(melFirst[b])
                var e: Double = 0
                for j in 0..<Int(melCount[b]) { e += w[j] * p[j] }
                o[b] = Float(log(e < floor ? floor : e))  // NaN stays NaN (never floored to a number)
            }
        }
        return T0
    }

    /// Convenience: [T0 · numBins] for an array of samples.
    public func compute(_ samples: [Float]) -> [Float] {
        let T0 = numFrames(samples: samples.count)
        var out = [Float](repeating: 0, count: T0 * numBins)
        samples.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                _ = compute(s.baseAddress!, count: s.count, into: o.baseAddress!)
            }
        }
        return out
    }
}

/// Per-utterance CMVN in place: x [frames, bins]; per bin, (x − mean)/sqrt(var + eps), population variance
/// (sums in Double).
public func applyCMVN(_ x: UnsafeMutablePointer<Float>, frames: Int, bins: Int, eps: Double = 1e-5) {
    if frames == 0 { return }
    let sum = UnsafeMutablePointer<Double>.allocate(capacity: 2 * bins)
    defer { sum.deallocate() }
    let sq = sum + bins
    sum.initialize(repeating: 0, count: 2 * bins)
    for t in 0..<frames {
        let r = x + t * bins
        for b in 0..<bins {
            let v = Double(r[b])
            sum[b] += v
            sq[b] += v * v
        }
    }
    let invT = 1 / Double(frames)
    for b in 0..<bins {
        let mean = sum[b] * invT
        let variance = max(0, sq[b] * invT - mean * mean)
        sum[b] = mean
        sq[b] = 1 / (variance + eps).squareRoot()
    }
    for t in 0..<frames {
        let r = x + t * bins
        for b in 0..<bins { r[b] = Float((Double(r[b]) - sum[b]) * sq[b]) }
    }
}

public func applyCMVN(_ x: inout [Float], frames: Int, bins: Int) {
    x.withUnsafeMutableBufferPointer { applyCMVN($0.baseAddress!, frames: frames, bins: bins) }
}
