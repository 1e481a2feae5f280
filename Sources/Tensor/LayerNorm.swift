#if canImport(Glibc)
import Glibc
#endif

/// LayerNorm over the last dimension: y = (x − μ)·rstd·γ + β, rstd = 1/√(var + eps), population var.
/// x, y: [N, C]; saves mean[N] and rstd[N] for backward.
public func layerNormForward(y: FPtr, mean: FPtr, rstd: FPtr, x: CFPtr, weight: CFPtr, bias: CFPtr,
                             n: Int, c: Int, eps: Float = 1e-5) {
    let invC = 1 / Float(c)
    parallelFor(n, grain: max(1, 4096 / max(c, 1))) { lo, hi in
    for i in lo..<hi {
        let xr = x + i * c, yr = y + i * c
        let m = laneSum(c) { load8(xr + $0) } tail: { xr[$0] } * invC
        let v = laneSum(c) { let t = load8(xr + $0) - m; return t * t } tail: { let t = xr[$0] - m; return t * t }
        let r = 1 / (v * invC + eps).squareRoot()
        for j in 0..<c { yr[j] = (xr[j] - m) * r * weight[j] + bias[j] }
        mean[i] = m
        rstd[i] = r
    }
    }
}

/// Accumulates dx, dγ, dβ. With x̂ = (x − μ)·rstd and g = dy·γ:
/// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
/// Threads: dx by rows; dγ, dβ by columns, each column summed over the rows in order (same sums as one thread).
public func layerNormBackward(dx: FPtr, dWeight: FPtr, dBias: FPtr, dy: CFPtr, x: CFPtr, weight: CFPtr,
                              mean: CFPtr, rstd: CFPtr, n: Int, c: Int) {
    if Compute.threads > 1 {
        layerNormBackwardThreaded(dx: dx, dWeight: dWeight, dBias: dBias, dy: dy, x: x, weight: weight,
                                  mean: mean, rstd: rstd, n: n, c: c)
        return
    }
    let invC = 1 / Float(c)
    for i in 0..<n {
        let xr = x + i * c, dyr = dy + i * c, dxr = dx + i * c
        let m = mean[i], r = rstd[i]
        let (sg, sgx) = lnBackwardSums(xr, dyr, weight, m, r, c, invC)
        for j in 0..<c {
            let xh = (xr[j] - m) * r
            dBias[j] += dyr[j]
            dWeight[j] += dyr[j] * xh
        }
        lnBackwardRow(dxr, xr, dyr, weight, m, r, sg, sgx, c)
    }
}

/// Intended mirror of the serial row loop above: the same dx math split by rows, while dγ/dβ are summed by
/// columns (so every output element is computed by one thread and results equal one thread bit for bit).
func layerNormBackwardThreaded(dx: FPtr, dWeight: FPtr, dBias: FPtr, dy: CFPtr, x: CFPtr, weight: CFPtr,
                               mean: CFPtr, rstd: CFPtr, n: Int, c: Int) {
    let invC = 1 / Float(c)
    parallelFor(n, grain: max(1, 4096 / max(c, 1))) { lo, hi in
        for i in lo..<hi {
            let xr = x + i * c, dyr = dy + i * c, dxr = dx + i * c
            let m = mean[i], r = rstd[i]
            let (sg, sgx) = lnBackwardSums(xr, dyr, weight, m, r, c, invC)
            lnBackwardRow(dxr, xr, dyr, weight, m, r, sg, sgx, c)
        }
    }
    // Column blocks of 16: each dγ[j], dβ[j] is summed over i = 0..<n in order, as in the serial loop.
    parallelFor((c + 15) / 16, grain: 1) { lo, hi in
        let j0 = lo * 16, j1 = min(hi * 16, c)
        for i in 0..<n {
            let xr = x + i * c, dyr = dy + i * c
            let m = mean[i], r = rstd[i]
            lanes8(j0, j1, { j in
                let dyv = load8(dyr + j)
                store8(load8(dBias + j) + dyv, dBias + j)
                store8(load8(dWeight + j) + dyv * ((load8(xr + j) - m) * r), dWeight + j)
            }, { j in
                dBias[j] += dyr[j]
                dWeight[j] += dyr[j] * ((xr[j] - m) * r)
            })
        }
    }
}

/// dx_j += rstd·(dy_j·γ_j − mean(g) − x̂_j·mean(g·x̂)) over one row (eight lanes; shared by both backward paths).
@inline(__always)
func lnBackwardRow(_ dxr: FPtr, _ xr: CFPtr, _ dyr: CFPtr, _ weight: CFPtr, _ m: Float, _ r: Float, _ sg: Float, _ sgx: Float, _ c: Int) {
    lanes8(0, c, { j in
        let xh = (load8(xr + j) - m) * r
        store8(load8(dxr + j) + r * (load8(dyr + j) * load8(weight + j) - sg - xh * sgx), dxr + j)
    }, { j in
        let xh = (xr[j] - m) * r
        dxr[j] += r * (dyr[j] * weight[j] - sg - xh * sgx)
    })
}

/// mean_j(g) and mean_j(g·x̂) of one row, g = dy·γ, x̂ = (x − μ)·rstd (shared by the serial and threaded
/// backward, so both give the same bits).
@inline(__always)
func lnBackwardSums(_ xr: CFPtr, _ dyr: CFPtr, _ weight: CFPtr, _ m: Float, _ r: Float, _ c: Int, _ invC: Float) -> (Float, Float) {
    let sg = laneSum(c) { load8(dyr + $0) * load8(weight + $0) } tail: { dyr[$0] * weight[$0] }
    let sgx = laneSum(c) { (load8(dyr + $0) * load8(weight + $0)) * ((load8(xr + $0) - m) * r) }
        tail: { (dyr[$0] * weight[$0]) * ((xr[$0] - m) * r) }
    return (sg * invC, sgx * invC)
}

public enum LayerNormReference {
    public static func forward(x: [Double], weight: [Double], bias: [Double], n: Int, c: Int, eps: Double = 1e-5) -> [Double] {
        var y = x
        for i in 0..<n {
            let row = x[(i * c)..<(i * c + c)]
            let m = row.reduce(0, +) / Double(c)
            let v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(c)
            for j in 0..<c { y[i * c + j] = (x[i * c + j] - m) / (v + eps).squareRoot() * weight[j] + bias[j] }
        }
        return y
    }
}
