import ArgumentParser

/// `w2vbert bench …`: the benchmarks. Each prints what it measured (JSON lines, or report lines for data).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: training steps, kernels, the data path, data-parallel steps and their scaling.",
        subcommands: [
            BenchModel.self, BenchFinetune.self, BenchKernels.self, BenchData.self, BenchDist.self, BenchScaling.self,
        ])
}
