// The naive Double reference of `attentionForward` (tests only): every score, softmax and sum written out.

#if canImport(Glibc)
    import Glibc
#endif

public enum AttentionReference {
    public static func forward(
        q: [Double], k: [Double], v: [Double], relKey: [Double]?, lengths: [Int32],
        shape s: AttentionShape
    ) -> [Double] {
        let t = s.t, d = s.d, dh = s.dh
        var qq = q, kk = k
        if s.isRope {
            func rot(_ x: [Double]) -> [Double] {
                var y = x
                for bi in 0..<s.b {
                    for ti in 0..<t {
                        for hh in 0..<s.heads {
                            for i in 0..<(dh / 2) {
                                let ang = Double(ti) * pow(10000.0, -2.0 * Double(i) / Double(dh))
                                let o = (bi * t + ti) * d + hh * dh + i
                                y[o] = x[o] * cos(ang) - x[o + dh / 2] * sin(ang)
                                y[o + dh / 2] = x[o + dh / 2] * cos(ang) + x[o] * sin(ang)
                            }
                        }
                    }
                }
                return y
            }
            qq = rot(q)
            kk = rot(k)
        }
        var out = [Double](repeating: 0, count: s.b * t * d)
        let scale = 1 / Double(dh).squareRoot()
        for bi in 0..<s.b {
            for hh in 0..<s.heads {
                for i in 0..<t {
                    var scores = [Double](repeating: -.infinity, count: t)
                    for j in 0..<Int(lengths[bi]) {
                        var sc = 0.0
                        for e in 0..<dh {
                            sc += qq[(bi * t + i) * d + hh * dh + e] * kk[(bi * t + j) * d + hh * dh + e]
                        }
                        if case let .shaw(l, r) = s.position, let relKey {
                            let idx = min(max(j - i, -l), r) + l
                            for e in 0..<dh { sc += q[(bi * t + i) * d + hh * dh + e] * relKey[idx * dh + e] }
                        }
                        scores[j] = sc * scale
                    }
                    let p = SoftmaxReference.softmax(scores, n: 1, v: t)
                    for e in 0..<dh {
                        var acc = 0.0
                        for j in 0..<t { acc += p[j] * v[(bi * t + j) * d + hh * dh + e] }
                        out[(bi * t + i) * d + hh * dh + e] = acc
                    }
                }
            }
        }
        return out
    }
}
