import ArgumentParser
import Foundation
import Distributed
import Training
import W2VBert
import Tensor
import CProcess

/// Runs a trainer-like body on this process's communicator with the compute settings of `compute` (created
/// once here, after MPI starts, and announced on rank 0) and maps its errors to exit statuses: a
/// `TrainError` to its own status, anything else to 1. On more than one rank an error ends the job (a
/// rank that failed must not leave the others waiting in a collective).
func runDistributed(compute: ComputeConfig, _ body: (Communicator, Compute) throws -> TrainExit) throws {
    // Before MPI starts: a SIGUSR1/SIGTERM that arrives early must set the stop flag, not kill the rank.
    w2v_install_stop_handlers()
    let comm: Communicator
    do {
        comm = try makeCommunicator()
    } catch {
        throw RuntimeError("cannot start MPI: \(error)")
    }
    let settings = startCompute(compute, announce: comm.rank == 0)
    let code: TrainExit
    do {
        code = try body(comm, settings)
    } catch let e as TrainError {
        FileHandle.standardError.write(Data("w2vbert: rank \(comm.rank): error: \(e.message)\n".utf8))
        code = e.exit
        if comm.size > 1 && e.exit == .error { comm.abort(code: e.exit.rawValue) }
    } catch {
        FileHandle.standardError.write(Data("w2vbert: rank \(comm.rank): error: \(error)\n".utf8))
        if comm.size > 1 { comm.abort(code: 1) }
        code = .error
    }
    if let mpi = comm as? MPICommunicator { mpi.finalize() }
    if code != .finished { throw ExitCode(code.rawValue) }
}
