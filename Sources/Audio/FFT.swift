// Real FFT of a power-of-two length n, radix-2, for the fbank's power spectrum. Double precision: the
// log of low-energy mel bins is sensitive to FFT rounding (float FFTs differ from an exact DFT by up to
// 6e-4 in log-mel on real speech; in Double the fbank stays within 7e-5 of a float64 NumPy reference, so
// agreement with a float oracle is limited by the oracle), at no measurable cost for 512 points.
//
// n real samples x are packed as m = n/2 complex values z[k] = x[2k] + i·x[2k+1]; Z = DFT_m(z) by an
// iterative decimation-in-time radix-2 FFT (bit-reversed load, log2 m butterfly stages, twiddles
// w_m^j = e^{−2πij/m} from a table); then the split step recovers the n-point spectrum:
//   E_k = (Z_k + conj Z_{m−k}) / 2,  O_k = (Z_k − conj Z_{m−k}) / (2i),  X_k = E_k + e^{−2πik/n}·O_k
//   X_0 = Re Z_0 + Im Z_0,  X_m = Re Z_0 − Im Z_0   (k = 1 … m−1 otherwise)
// and the power spectrum |X_k|², k = 0 … m (Kaldi's ComputePowerSpectrum: m + 1 bins, DC and Nyquist
// included). Tables are built once in init; `powerSpectrum` allocates nothing.
// `referencePowerSpectrum` is the O(n²) DFT in Double that the tests check it against.

import Foundation

public final class RealFFT: @unchecked Sendable {
    public let n: Int
    let m: Int
    let rev: UnsafeMutablePointer<Int32>  // [m] bit reversal of log2(m) bits
    let twRe, twIm: UnsafeMutablePointer<Double>  // [m/2] e^{−2πij/m}
    let spRe, spIm: UnsafeMutablePointer<Double>  // [m]   e^{−2πik/n} for the split step
    let re, im: UnsafeMutablePointer<Double>  // [m] scratch; one RealFFT per thread

    public init(n: Int) {
        precondition(n >= 4 && n & (n - 1) == 0, "RealFFT: n must be a power of two ≥ 4")
        self.n = n
        m = n / 2
        var bits = 0
        while 1 << bits < m { bits += 1 }
        rev = .allocate(capacity: m)
        for k in 0..<m {
            var r = 0
            for b in 0..<bits where k & (1 << b) != 0 { r |= 1 << (bits - 1 - b) }
            rev[k] = Int32(r)
        }
        twRe = .allocate(capacity: max(1, m / 2))
        twIm = .allocate(capacity: max(1, m / 2))
        for j in 0..<(m / 2) {
            let a = -2 * Double.pi * Double(j) / Double(m)
            twRe[j] = cos(a)
            twIm[j] = sin(a)
        }
        spRe = .allocate(capacity: m)
        spIm = .allocate(capacity: m)
        for k in 0..<m {
            let a = -2 * Double.pi * Double(k) / Double(n)
            spRe[k] = cos(a)
            spIm[k] = sin(a)
        }
        re = .allocate(capacity: m)
        im = .allocate(capacity: m)
    }

    deinit {
        rev.deallocate()
        twRe.deallocate()
        twIm.deallocate()
        spRe.deallocate()
        spIm.deallocate()
        re.deallocate()
        im.deallocate()
    }

    /// power[k] = |DFT_n(x)[k]|², k = 0 … n/2.   x: [n] (read only), power: [n/2 + 1].
    @inline(__always)
    public func powerSpectrum(_ x: UnsafePointer<Double>, _ power: UnsafeMutablePointer<Double>) {
        let m = self.m, re = self.re, im = self.im
        // Bit-reversed load of the packed complex sequence.
        for k in 0..<m {
            let r = Int(rev[k])
            re[r] = x[2 * k]
            im[r] = x[2 * k + 1]
        }
        // Radix-2 butterflies.
        var len = 2
        while len <= m {
            let half = len / 2, step = m / len
            for j in 0..<half {
                let wr = twRe[j * step], wi = twIm[j * step]
                var a = j
                while a < m {
                    let b = a + half
                    let tr = re[b] * wr - im[b] * wi
                    let ti = re[b] * wi + im[b] * wr
                    re[b] = re[a] - tr
                    im[b] = im[a] - ti
                    re[a] += tr
                    im[a] += ti
                    a += len
                }
            }
            len *= 2
        }
        // Split step.
        let x0 = re[0] + im[0], xm = re[0] - im[0]
        power[0] = x0 * x0
        power[m] = xm * xm
        for k in 1..<m {
            let ar = re[k], ai = im[k], br = re[m - k], bi = im[m - k]
            let er = 0.5 * (ar + br), ei = 0.5 * (ai - bi)
            let or = 0.5 * (ai + bi), oi = -0.5 * (ar - br)
            let cr = spRe[k], ci = spIm[k]
            let xr = er + cr * or - ci * oi
            let xi = ei + cr * oi + ci * or
            power[k] = xr * xr + xi * xi
        }
    }

    /// The O(n²) DFT in Double: the reference the tests compare `powerSpectrum` to.
    public static func referencePowerSpectrum(_ x: [Float]) -> [Double] {
        let n = x.count
        return (0...(n / 2)).map { k in
            var sr = 0.0, si = 0.0
            for t in 0..<n {
                let a = -2 * Double.pi * Double(k * t % n) / Double(n)
                sr += Double(x[t]) * cos(a)
                si += Double(x[t]) * sin(a)
            }
            return sr * sr + si * si
        }
    }
}
