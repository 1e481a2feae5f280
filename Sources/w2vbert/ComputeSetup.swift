import Foundation
import Tensor
import W2VBert
#if canImport(Glibc)
import Glibc
#endif

/// Threads for this rank: `compute.threads` when > 0, else OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (what the
/// launch scripts export per rank), else the CPUs this process may run on — divided by the ranks on this
/// node when the process is not bound (its mask covers every online CPU), so unbound ranks do not oversubscribe.
func resolvedThreads(_ c: ComputeConfig, override: Int? = nil) -> Int {
    if let o = override, o > 0 { return o }
    if c.threads > 0 { return c.threads }
    let env = ProcessInfo.processInfo.environment
    for name in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"] {
        if let v = env[name].flatMap({ Int($0) }), v > 0 { return v }
    }
    let affinity = Compute.affinityCPUs
    let local = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
        .compactMap { env[$0].flatMap { Int($0) } }.first ?? 1
    let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    if local > 1 && affinity >= online { return max(1, affinity / local) }
    return affinity
}

/// Applies compute.precision and the thread count once at start-up; `announce` prints the engine line
/// (rank 0). A bf16 request on a CPU without native bf16 prints a warning and runs in fp32.
@discardableResult
func startCompute(_ c: ComputeConfig, threads override: Int? = nil, announce: Bool) -> Int {
    let n = resolvedThreads(c, override: override)
    let (log, warning) = Compute.configure(precision: c.precision, threads: n)
    if announce { FileHandle.standardError.write(Data("w2vbert: \(log)\n".utf8)) }
    if let warning, announce { FileHandle.standardError.write(Data("w2vbert: warning: \(warning)\n".utf8)) }
    return Compute.threads
}
