import ArgumentParser
import Foundation
import Distributed
import Training

/// `w2vbert check dist`: the bucketed background all-reduce gives exact sums on a real job, and (optionally)
/// its bandwidth at a few sizes. `--skip-collective N --skip-rank R` is a test hook: rank R silently skips
/// collective #N, and the watchdog must abort the job naming it (status 78).
struct CheckDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dist",
        abstract: "Check the gradient all-reduce and measure its bandwidth across the ranks of an MPI job.")

    @Option(help: "Collective watchdog timeout in seconds.") var timeout = 30.0
    @Option(help: "Floats in the gradient buffer used for the bucket check.") var floats = 1_000_000
    @Option(help: "Floats per bucket.") var bucketFloats = 250_000
    @Option(help: "Test hook: the collective sequence number a rank skips.") var skipCollective: Int?
    @Option(help: "Test hook: the rank that skips it.") var skipRank = 1
    @Flag(help: "Also time all-reduce at 1, 16 and 64 MB.") var bandwidth = false

    func validate() throws {
        guard floats > 0, bucketFloats > 0, timeout > 0 else {
            throw ValidationError("--floats, --bucket-floats and --timeout must be positive")
        }
    }

    func run() throws {
        let comm = try makeCommunicator()
        let coll = Collectives(comm: comm, timeout: timeout)
        if let s = skipCollective, comm.rank == skipRank { coll.skipSequenceForTest = Int64(s) }
        var check = GradientReductionCheck()
        check.floats = floats
        check.bucketFloats = bucketFloats
        check.bandwidth = bandwidth
        let r = try check.run(coll)
        var line = "check dist: rank \(comm.rank)/\(comm.size): \(r.buckets) buckets, max error \(r.maxError)"
        for b in r.bandwidth { line += String(format: ", %d MB %.2f GB/s", b.megabytes, b.gigabytesPerSecond) }
        print(line + (r.maxError == 0 ? ": ok" : ": FAILED"))
        coll.stop()
        if let mpi = comm as? MPICommunicator { mpi.finalize() }
        if r.maxError != 0 { throw ExitCode(1) }
    }
}
