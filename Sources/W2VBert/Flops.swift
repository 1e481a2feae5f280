// Analytic matmul FLOPs of one training step (forward + backward), for throughput reports. Counts every
// GEMM of the model (2·m·n·k each); elementwise work, depthwise convolution and cosine are not counted.

extension Config {
    /// Matmul FLOPs of forward + backward for B utterances of T0 fbank frames with S masked frames in all.
    public func trainingMatmulFlops(batch b: Int, t0: Int, masked s: Int) -> Double {
        let m = model, t = Double(encoderLength(t0: t0)), bb = Double(b), n = bb * t
        let d = Double(m.dim), f = Double(m.ffnDim), S = Double(s)
        let gv = Double(quantizer.groups * quantizer.entries), D = Double(quantizer.dim), F = Double(m.finalDim)
        var total = 0.0
        func lin(_ rows: Double, _ i: Double, _ o: Double, dx: Bool = true) { total += 2 * rows * i * o * (dx ? 3 : 2) }
        switch m.frontend {
        case .conv2d:
            let c = Double(m.frontendChannels), h1 = Double((t0 - 3) / 2 + 1)
            total += 2 * bb * c * 9 * h1 * Double(Config.convFreq1) * 2  // conv1: fwd + dW
            total += 2 * bb * c * c * 9 * t * Double(Config.convFreq) * 3  // conv2: fwd + dW + dx
            lin(n, c * Double(Config.convFreq), d)
        case .stack, .embed:
            lin(n, Double(stackedWidth), d)
        }
        if m.contextProj { lin(n, d, d) }  // context_proj
        if m.position == .conv {
            total += 2 * n * d * (d / Double(m.posConvGroups)) * Double(m.posConvKernel) * 3
        }
        let blocks = Double(m.contrastiveBlocks + m.mlmBlocks)
        var perBlock = 2 * n * (4 * d * f + 7 * d * d) * 3  // ffn1, ffn2, q k v out, pw1, pw2
        perBlock += 12 * bb * t * t * d  // QKᵀ, PV and their backward
        if m.position == .shaw { perBlock += 6 * n * Double(m.shawLeft + m.shawRight + 1) * d }
        total += blocks * perBlock
        lin(S, d, gv)  // quantizer.proj
        total += 2 * S * D * Double(quantizer.entries)  // dq·Eᵀ (straight-through backward)
        lin(S, d, F)
        lin(S, D, F)
        lin(S, d, gv)  // heads
        return total
    }
}
