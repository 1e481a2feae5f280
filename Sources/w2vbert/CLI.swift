import ArgumentParser

@main
struct W2VBertCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "w2vbert",
        abstract: "Pre-train W2V-BERT speech models on CPU clusters, data-parallel over MPI.",
        subcommands: [Train.self, ShowConfig.self, Validate.self, Embed.self, ExportHF.self, ImportHF.self, Inspect.self, Compare.self, Bench.self, BenchDist.self, BenchKernels.self, MPICheck.self, DistCheck.self, Prepare.self, Features.self, BenchData.self])
}
