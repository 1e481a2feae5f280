#if canImport(Glibc)
    import Glibc
#endif

/// LayerNorm over the last dimension: y = (x − μ)·rstd·γ + β, rstd = 1/√(var + eps), population var.
/// x, y: [N, C]; saves mean[N] and rstd[N] for backward.
public func layerNormForward(
    y: FPtr, mean: FPtr, rstd: FPtr, x: CFPtr, weight: CFPtr, bias: CFPtr,
    n: Int, c: Int, eps: Float = 1e-5
) {
    let invC = 1 / Float(c)
    parallelFor(n, grain: max(1, 4096 / max(c, 1))) { lo, hi in
        for i in lo..<hi {
            let xr = x + i * c, yr = y + i * c
            let m =
                laneSum(c) {
                    load8(xr + $0)
                } tail: {
                    xr[$0]
                } * invC
            let v = laneSum(c) {
                let t = load8(xr + $0) - m
                return t * t
            } tail: {
                let t = xr[$0] - m
                return t * t
            }
            let r = 1 / (v * invC + eps).squareRoot()
            layerNormRow(yr, xr, m, r, weight, bias, c)
            mean[i] = m
            rstd[i] = r
        }
    }
}

/// y = (x − μ)·rstd·γ + β from the mean and rstd forward saved: the output of `layerNormForward` again, bit for
/// bit (the same row arithmetic), for callers that keep x, mean and rstd instead of y.
public func layerNormApply(
    y: FPtr, x: CFPtr, mean: CFPtr, rstd: CFPtr, weight: CFPtr, bias: CFPtr, n: Int, c: Int
) {
    parallelFor(n, grain: max(1, 4096 / max(c, 1))) { lo, hi in
        for i in lo..<hi { layerNormRow(y + i * c, x + i * c, mean[i], rstd[i], weight, bias, c) }
    }
}

@inline(__always)
func layerNormRow(_ yr: FPtr, _ xr: CFPtr, _ m: Float, _ r: Float, _ weight: CFPtr, _ bias: CFPtr, _ c: Int) {
    for j in 0..<c { yr[j] = (xr[j] - m) * r * weight[j] + bias[j] }
}

/// Accumulates dx, dγ, dβ. With x̂ = (x − μ)·rstd and g = dy·γ:
/// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
/// One pass over the rows in fixed blocks of `reductionRows` spread over the threads: each block writes its
/// dx rows and its own partial dβ, dγ; the partials are then added in block order (`blockSums`), so the
/// result is the same on any number of threads.
public func layerNormBackward(
    dx: FPtr, dWeight: FPtr, dBias: FPtr, dy: CFPtr, x: CFPtr, weight: CFPtr,
    mean: CFPtr, rstd: CFPtr, n: Int, c: Int, write: GradientWrite = .accumulate
) {
    let invC = 1 / Float(c)
    let sums = rowBlockSums(rows: n, width: 2 * c) { part, block in
        let pg = part + c
        for i in block {
            let xr = x + i * c, dyr = dy + i * c, dxr = dx + i * c
            let m = mean[i], r = rstd[i]
            let (sg, sgx) = lnBackwardSums(xr, dyr, weight, m, r, c, invC)
            lanes8(
                0, c,
                { j in
                    let dyv = load8(dyr + j)
                    store8(load8(part + j) + dyv, part + j)
                    store8(load8(pg + j) + dyv * ((load8(xr + j) - m) * r), pg + j)
                },
                { j in
                    part[j] += dyr[j]
                    pg[j] += dyr[j] * ((xr[j] - m) * r)
                })
            lnBackwardRow(dxr, xr, dyr, weight, m, r, sg, sgx, c, write)
        }
    }
    addSums(dBias, sums, c)
    addSums(dWeight, sums + c, c)
}

/// dx_j += rstd·(dy_j·γ_j − mean(g) − x̂_j·mean(g·x̂)) over one row (eight lanes).
@inline(__always)
func lnBackwardRow(
    _ dxr: FPtr, _ xr: CFPtr, _ dyr: CFPtr, _ weight: CFPtr, _ m: Float, _ r: Float, _ sg: Float, _ sgx: Float,
    _ c: Int, _ write: GradientWrite
) {
    lanes8(
        0, c,
        { j in
            let xh = (load8(xr + j) - m) * r
            put8(r * (load8(dyr + j) * load8(weight + j) - sg - xh * sgx), dxr + j, write)
        },
        { j in
            let xh = (xr[j] - m) * r
            put1(r * (dyr[j] * weight[j] - sg - xh * sgx), dxr + j, write)
        })
}

/// mean_j(g) and mean_j(g·x̂) of one row, g = dy·γ, x̂ = (x − μ)·rstd.
@inline(__always)
func lnBackwardSums(
    _ xr: CFPtr, _ dyr: CFPtr, _ weight: CFPtr, _ m: Float, _ r: Float, _ c: Int, _ invC: Float
) -> (Float, Float) {
    let sg = laneSum(c) {
        load8(dyr + $0) * load8(weight + $0)
    } tail: {
        dyr[$0] * weight[$0]
    }
    let sgx = laneSum(c) {
        (load8(dyr + $0) * load8(weight + $0)) * ((load8(xr + $0) - m) * r)
    } tail: {
        (dyr[$0] * weight[$0]) * ((xr[$0] - m) * r)
    }
    return (sg * invC, sgx * invC)
}

public enum LayerNormReference {
    public static func forward(
        x: [Double], weight: [Double], bias: [Double], n: Int, c: Int, eps: Double = 1e-5
    ) -> [Double] {
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
