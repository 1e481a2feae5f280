import ArgumentParser
import Foundation
import Tensor
import Distributed
import W2VBert
import Training
import CProcess

/// Config options shared by train, validate and embed.
struct ConfigOptions: ParsableArguments {
    @Option(help: "Built-in preset: tiny, small, base, xl, or the Hugging Face family tiny2, small2, base2, w2v-bert-2.0.") var preset: String?
    @Option(help: "YAML config file (sections model, quantizer, mask, loss, optimizer, train, dist, codebook; an optional `preset:` key).")
    var config: String?
    @Option(name: .customLong("set"), help: "Override one key, section.key=value (repeatable).") var overrides: [String] = []

    func validate() throws {
        if preset != nil && config != nil { throw ValidationError("give --preset or --config, not both") }
    }

    func load() throws -> Config {
        var yaml: [String] = []
        if let path = config {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw UsageError("\(path): cannot read the config file")
            }
            yaml.append(text)
        }
        do { return try Config.load(preset: preset ?? "tiny", yaml: yaml, overrides: overrides) }
        catch { throw UsageError("\(config.map { $0 + ": " } ?? "")\(error)") }
    }
}

/// Runs a trainer-like body on this process's communicator and maps errors to exit statuses.
func runDistributed(compute: ComputeConfig, _ body: (Communicator) throws -> TrainExit) throws {
    // Before MPI starts: a SIGUSR1/SIGTERM that arrives early must set the stop flag, not kill the rank.
    w2v_install_stop_handlers()
    let comm: Communicator
    do { comm = try makeCommunicator() } catch { throw RuntimeError("cannot start MPI: \(error)") }
    startCompute(compute, announce: comm.rank == 0)
    let code: TrainExit
    do {
        code = try body(comm)
    } catch let e as TrainError {
        FileHandle.standardError.write(Data("w2vbert: rank \(comm.rank): error: \(e.message)\n".utf8))
        code = e.exit
        if comm.size > 1 && (e.exit == .error) {
            // A failure on one rank must end the job rather than leave the others in a collective.
            comm.abort(code: e.exit.rawValue)
        }
    } catch {
        FileHandle.standardError.write(Data("w2vbert: rank \(comm.rank): error: \(error)\n".utf8))
        if comm.size > 1 { comm.abort(code: 1) }
        code = .error
    }
    if let mpi = comm as? MPICommunicator { mpi.finalize() }
    if code != .finished { throw ExitCode(code.rawValue) }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Pre-train W2V-BERT; under mpirun/srun every rank trains a replica on its shard.",
        discussion: """
        Resumes from RUN/checkpoints when it holds one (--no-resume refuses). Exit statuses: 0 finished, 1 error, \
        2 bad command line or config, 75 stopped by SIGTERM/SIGUSR1 after a checkpoint (run the same command again \
        to resume), 76 too many non-finite steps, 77 replica divergence, 78 collective watchdog timeout.
        """)

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Training manifest (fairseq TSV from `w2vbert prepare`).") var train: String
    @Option(help: "Validation manifest.") var valid: String?
    @Option(help: "Run folder: checkpoints, metrics.jsonl, tensorboard/, config.yaml.") var runDir: String
    @Option(help: "Stop after this many optimizer steps (overrides optimizer.max_steps).") var maxSteps: Int?
    @Flag(help: "Refuse to resume when the run folder already holds checkpoints.") var noResume = false
    @Option(help: "Start a new run (step 0, fresh optimizer) from the weights of a checkpoint, run folder or Hugging Face model folder; quantizer and heads stay fresh where the source has none. Ignored when the run folder already holds checkpoints (it resumes).")
    var initFrom: String?
    @Flag(help: "Only warnings and errors on the console.") var quiet = false
    @Option(help: "Decoding threads per rank (2: enough for the tiny preset at its bf16 step rate, README \"Data\").") var loaderWorkers = 2
    // Test hooks.
    @Option(help: .hidden) var testDivergeRank: Int?
    @Option(help: .hidden) var testDivergeStep: Int?
    @Option(help: .hidden) var testSkipCollective: Int?
    @Option(help: .hidden) var testSkipRank = 1
    @Option(help: .hidden) var testStopAfterStep: Int?

    func validate() throws {
        if let m = maxSteps, m < 1 { throw ValidationError("--max-steps must be ≥ 1") }
        if loaderWorkers < 1 { throw ValidationError("--loader-workers must be ≥ 1") }
    }

    func run() throws {
        let config = try configOptions.load()   // bad config is rejected before any MPI work (status 2)
        for m in [train] + (valid.map { [$0] } ?? []) where !FileManager.default.fileExists(atPath: m) {
            throw RuntimeError("\(m): no such manifest")   // an input file: status 1, no usage
        }
        if let i = initFrom, !FileManager.default.fileExists(atPath: i) { throw RuntimeError("--init-from \(i): no such folder") }
        var o = TrainOptions(trainManifest: train, validManifest: valid, runDirectory: runDir)
        o.maxSteps = maxSteps; o.resume = !noResume; o.quiet = quiet; o.loaderWorkers = loaderWorkers
        o.initFrom = initFrom
        o.divergeRank = testDivergeRank; o.divergeStep = testDivergeStep
        o.skipCollective = testSkipCollective.map(Int64.init); o.skipRank = testSkipRank; o.stopAfterStep = testStopAfterStep
        try runDistributed(compute: config.compute) { comm in try Trainer(config: config, options: o, comm: comm).run() }
    }
}

struct ShowConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the resolved config (preset, then YAML, then --set overrides) as YAML, validated.")
    @OptionGroup var configOptions: ConfigOptions
    @Flag(help: "List every key name instead.") var keys = false

    func run() throws {
        if keys { print(Config.keyNames.joined(separator: "\n")); return }
        let c = try configOptions.load()
        print(c.yaml, terminator: "")
        print("# \(ParameterLayout(config: c).parameterCount) parameters")
    }
}
