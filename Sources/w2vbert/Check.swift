import ArgumentParser

/// `w2vbert check …`: checks of the MPI job a command runs in (run them under mpirun or srun).
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check MPI and the gradient all-reduce across the ranks of a job.",
        subcommands: [CheckMPI.self, CheckDist.self])
}
