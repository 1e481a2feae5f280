import ArgumentParser
import Audio

/// `w2vbert bench data`: fbank throughput (× real time, one core) and loader throughput / consumer wait.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Measure feature extraction speed (× real time on one core) and the background loader's throughput "
            + "and wait time.")

    @Option(help: "Manifest (train.tsv) for the loader benchmark (without it only the fbank is timed).")
    var manifest: String?
    @Option(help: "Seconds of audio for the fbank timing.") var seconds: Double = 600
    @Option(help: "Micro-batches to load.") var batches: Int = 40
    @Option(help: "Simulated model compute per micro-batch, in milliseconds (the consumer sleeps this long).")
    var computeMs: Double = 0
    @Option(help: "Crop length in 16 kHz samples.") var maxSamples: Int = 250_000
    @Option(help: "Padded fbank frames per micro-batch.") var maxFrames: Int = 6_000
    @Option(help: "Micro-batches decoded ahead.") var prefetch: Int = 4
    @Option(help: "Loader decoding threads.") var workers: Int = 1

    func validate() throws {
        if workers < 1 || prefetch < 1 || batches < 1 {
            throw ValidationError("--workers, --prefetch and --batches must be ≥ 1")
        }
        if seconds < 1 { throw ValidationError("--seconds must be ≥ 1") }
    }

    func run() throws {
        var bench = DataBenchmark()
        bench.seconds = seconds
        bench.batches = batches
        bench.computeMilliseconds = computeMs
        bench.maxSamples = maxSamples
        bench.maxFrames = maxFrames
        bench.prefetch = prefetch
        bench.workers = workers
        print(bench.fbank())
        guard let manifest else { return }
        let m = try Manifest.read(path: manifest)
        for line in try bench.decode(m) { print(line) }
        for line in try bench.loader(m) { print(line) }
    }
}
