import ArgumentParser
import Distributed
import Tensor
import Foundation

/// Checks and times the data-parallel plumbing on a real job: the bucketed background all-reduce gives
/// exact sums, and all-reduce bandwidth at a few sizes. `--skip-collective N --skip-rank R` is a test
/// hook: rank R silently skips collective #N, and the watchdog must abort the job naming it.
struct DistCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dist-check",
        abstract: "Check the gradient all-reduce and measure its bandwidth across the ranks of an MPI job.")

    @Option(help: "Collective watchdog timeout in seconds.") var timeout = 30.0
    @Option(help: "Floats in the gradient buffer used for the bucket check.") var floats = 1_000_000
    @Option(help: "Floats per bucket.") var bucketFloats = 250_000
    @Option(help: "Test hook: the collective sequence number a rank skips.") var skipCollective: Int?
    @Option(help: "Test hook: the rank that skips it.") var skipRank = 1
    @Flag(help: "Also time all-reduce at 1, 16 and 64 MB.") var bandwidth = false

    func run() throws {
        let comm = try makeCommunicator()
        let coll = Collectives(comm: comm, timeout: timeout)
        if let s = skipCollective, comm.rank == skipRank { coll.skipSequenceForTest = Int64(s) }
        let g = FloatBuffer(count: floats)
        let tensors = stride(from: 0, to: floats, by: 10_000).map { $0..<min(floats, $0 + 10_000) }
        let reducer = GradientBucketReducer(collectives: coll, gradients: g.ptr,
                                            buckets: GradientBucketReducer.plan(tensorRanges: tensors, bucketFloats: bucketFloats))
        var worst: Float = 0
        for step in 0..<3 {
            for i in 0..<floats { g[i] = Float((i % 1000) * (comm.rank + 1) + step) }
            reducer.begin()
            for b in reducer.buckets.indices { reducer.markReady(b) }
            try reducer.wait()
            let n = comm.size
            for i in 0..<floats {
                let expect = Float((i % 1000) * n * (n + 1) / 2 + step * n)
                worst = max(worst, abs(g[i] - expect))
            }
        }
        var line = "dist-check rank \(comm.rank)/\(comm.size): \(reducer.buckets.count) buckets, max error \(worst)"
        if bandwidth {
            for mb in [1, 16, 64] {
                let n = mb * 262_144
                let b = FloatBuffer(count: n)
                let t = medianTime(repeats: 5) { try? coll.allReduce("bandwidth \(mb) MB", b.ptr, count: n, type: .float, op: .sum) }
                line += String(format: ", %d MB %.2f GB/s", mb, Double(n * 4) / t / 1e9)
            }
        }
        try coll.barrier("final barrier")
        print(line + (worst == 0 ? ": ok" : ": FAILED"))
        coll.stop()
        if let mpi = comm as? MPICommunicator { mpi.finalize() }
        if worst != 0 { throw ExitCode(1) }
    }
}
