import ArgumentParser
import Distributed

/// `w2vbert check mpi`: every collective of the MPI shim checked with arithmetic expectations on all ranks.
struct CheckMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi", abstract: "Check the MPI shim's collectives across all ranks (run under mpirun).")

    func run() throws {
        let comm = try makeCommunicator()
        let failures = try checkCollectives(comm)
        let status = failures.isEmpty ? "ok" : "FAILED: \(failures.joined(separator: ", "))"
        print(
            "check mpi: rank \(comm.rank)/\(comm.size) local \(comm.localRank)/\(comm.localSize) "
                + "host \(comm.hostName): \(status)")
        if let mpi = comm as? MPICommunicator { mpi.finalize() }
        if !failures.isEmpty { throw ExitCode(1) }
    }
}
