import Foundation
import Tensor
#if canImport(Glibc)
    import Glibc
#endif

extension Compute {
    /// The settings of a run from its config's compute.* keys: `compute.precision`, and the threads
    /// `threads(for:override:environment:)` resolves. Sizes the process's thread pool (see `Compute`).
    public init(
        _ c: ComputeConfig, threads override: Int? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.init(
            precision: c.precision.resolved,
            threads: Compute.threads(
                for: c, override: override,
                environment: environment))
    }

    /// Threads for this rank: `override` when > 0, else `compute.threads` when > 0, else OMP_NUM_THREADS /
    /// OPENBLAS_NUM_THREADS (what the launch scripts export per rank), else the CPUs this process may run
    /// on — divided by the ranks on this node when the process is not bound (its mask covers every online
    /// CPU), so unbound ranks do not oversubscribe.
    public static func threads(
        for c: ComputeConfig, override: Int? = nil,
        environment env: [String: String] = ProcessInfo.processInfo.environment
    ) -> Int {
        if let o = override, o > 0 { return o }
        if c.threads > 0 { return c.threads }
        for name in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"] {
            if let v = env[name].flatMap({ Int($0) }), v > 0 { return v }
        }
        let affinity = Compute.affinityCPUs
        let local =
            ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
            .compactMap { env[$0].flatMap { Int($0) } }.first ?? 1
        let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        if local > 1 && affinity >= online { return max(1, affinity / local) }
        return affinity
    }
}

extension PrecisionSetting {
    /// The precision products run in: auto → bf16 when the CPU has native bf16, else fp32.
    public var resolved: Precision {
        switch self {
        case .fp32: return .fp32
        case .bf16: return .bf16
        case .auto: return Compute.hasNativeBF16 ? .bf16 : .fp32
        }
    }

    /// The start-up line's account of an auto choice ("bf16 (auto: the CPU has avx512_bf16)"), nil otherwise.
    public var autoDescription: String? {
        guard self == .auto else { return nil }
        if let isa = Compute.nativeBF16ISA { return "bf16 (auto: the CPU has \(isa))" }
        return "fp32 (auto: the CPU has no native bf16, neither avx512_bf16 nor AMX)"
    }
}
