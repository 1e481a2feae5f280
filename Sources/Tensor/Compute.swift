import CBLAS
import CCompute
#if canImport(Glibc)
    import Glibc
#endif

/// Operand precision of the matrix products. Everything that is not a GEMM operand stays f32.
public enum Precision: String, Sendable, CaseIterable { case fp32, bf16 }

/// The library behind `gemm` for f32 products (bf16 products always use oneDNN).
public enum GemmEngine: String, Sendable, CaseIterable { case onednn, openblas }

/// The compute settings every matrix product runs with: operand precision, the f32 library, and the threads
/// of the rank. Created once (by the trainer or a command, from the config's compute.* keys) and passed to
/// what needs it: the model and its kernels, `gemm`, the optimizer. Creating one sizes the process's
/// thread pool to `threads` (the pool is process-wide; the value records the size it was given). GEMMs
/// split their work by `threads`, so results depend on the value only, not on the pool's current size.
public struct Compute: Sendable {
    /// The precision products run in: bf16 only on a CPU with native bf16 (else fp32, with `warning`).
    public let precision: Precision
    public let f32Engine: GemmEngine
    /// Threads inside this rank (1 = everything on the calling thread).
    public let threads: Int
    /// Set when bf16 was asked for on a CPU without native bf16 (the value runs fp32).
    public let warning: String?
    /// Operands shared by nested bf16 products (`withSharedOperand`).
    let shared = SharedOperands()

    /// Resolves the settings and sizes the thread pool to `threads`. `f32Engine` nil: oneDNN when it has
    /// AVX-512 kernels for this CPU (it beats Debian's OpenBLAS 0.3.21, which falls back to its Haswell
    /// kernels on Zen 4/5), else OpenBLAS; `W2VBERT_F32_GEMM=openblas|onednn` overrides the default.
    public init(precision wanted: Precision, threads: Int, f32Engine engine: GemmEngine? = nil) {
        if wanted == .bf16 && !Self.hasNativeBF16 {
            warning =
                "compute.precision bf16 needs a CPU with native bf16 (avx512_bf16 or AMX) and this one has none; "
                + "running in fp32"
            precision = .fp32
        } else {
            warning = nil
            precision = wanted
        }
        var e = engine ?? Self.defaultF32Engine
        if e == .onednn && w2v_dnnl_has_avx512() == 0 && engine == nil { e = .openblas }
        f32Engine = e
        self.threads = max(1, threads)
        w2v_pool_set_threads(Int32(self.threads))
        // GEMMs are split over the pool by Tensor itself; the libraries run one thread per caller.
        openblas_set_num_threads(1)
        w2v_dnnl_set_threads(1)
    }

    /// Single-threaded fp32 with the default f32 library (references and tests).
    public static func fp32(threads: Int = 1) -> Compute { Compute(precision: .fp32, threads: threads) }

    /// The start-up line naming the libraries and oneDNN's kernel (runs one small product to find it).
    public var description: String {
        var impl = ""
        if precision == .bf16 || f32Engine == .onednn {
            let a = FloatBuffer(count: 64 * 64), c = FloatBuffer(count: 64 * 64)
            gemm(
                self, transA: false, transB: false, m: 64, n: 64, k: 64, alpha: 1, a: a.ptr, lda: 64, b: a.ptr,
                ldb: 64, beta: 0, c: c.ptr, ldc: 64)
            impl = String(cString: w2v_dnnl_last_impl())
        }
        let version = Self.oneDNNVersion
        let f32 = f32Engine == .onednn ? "oneDNN \(version) matmul" : "OpenBLAS sgemm"
        if precision == .bf16 {
            return "compute: precision bf16 (oneDNN \(version) matmul \(impl), f32 accumulation), f32 GEMMs \(f32), "
                + "\(threads) thread(s)"
        }
        return "compute: precision fp32, GEMMs \(f32)\(impl.isEmpty ? "" : " \(impl)"), \(threads) thread(s)"
    }

    /// True when the CPU multiplies bf16 natively (avx512_bf16 or AMX), as oneDNN sees it.
    public static var hasNativeBF16: Bool { w2v_dnnl_has_bf16() != 0 }
    /// The instruction set behind native bf16 ("amx" or "avx512_bf16"), nil without one.
    public static var nativeBF16ISA: String? {
        let s = String(cString: w2v_dnnl_bf16_isa())
        return s.isEmpty ? nil : s
    }
    /// CPUs this process may run on (its affinity mask).
    public static var affinityCPUs: Int { Int(w2v_affinity_cpus()) }
    public static var oneDNNVersion: String { String(cString: w2v_dnnl_version()) }

    static var defaultF32Engine: GemmEngine {
        if let e = getenv("W2VBERT_F32_GEMM").flatMap({ GemmEngine(rawValue: String(cString: $0)) }) { return e }
        return w2v_dnnl_has_avx512() != 0 ? .onednn : .openblas
    }
}
