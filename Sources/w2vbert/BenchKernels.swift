import ArgumentParser
import Tensor

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels", abstract: "Time the kernels at a preset's sizes (placeholder until the kernels land).")
    func run() throws { throw ValidationError("bench-kernels: not yet") }
}
