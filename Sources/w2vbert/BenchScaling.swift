import ArgumentParser
import Foundation
import W2VBert
#if canImport(Glibc)
    import Glibc
#endif

/// `w2vbert bench scaling`: data-parallel scaling on this machine. Starts `bench dist` under mpirun with 1
/// rank and with N ranks (one thread each, not bound, synthetic features), prints both JSON lines and the
/// throughput ratio with the share of all-reduce time hidden behind backward.
struct BenchScaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Run `bench dist` under mpirun with 1 rank and with N ranks; print both JSON lines and the ratio.",
        discussion: "mpirun must be on PATH. Every rank runs one thread (OMP_NUM_THREADS=1).")

    @Option(help: "Ranks of the second run.") var ranks = 2
    @Option(help: "Preset: tiny, small, base, xl.") var preset = "small"
    @Option(help: "Utterances per micro-batch per rank.") var batch = 4
    @Option(help: "Seconds of audio per utterance.") var seconds = 10.0
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
    @Option(name: .customLong("set"), help: "Config override section.key=value (repeatable).")
    var overrides: [String] = []

    func validate() throws {
        guard ranks >= 2 else { throw ValidationError("--ranks must be ≥ 2") }
        guard batch > 0, seconds >= 1, steps > 0 else {
            throw ValidationError("--batch and --steps must be ≥ 1, --seconds ≥ 1")
        }
    }

    func run() throws {
        do {
            _ = try Config.load(preset: preset, overrides: overrides)
        } catch {
            throw UsageError("\(error)")
        }
        let one = try benchDist(ranks: 1)
        print(one.line)
        let many = try benchDist(ranks: ranks)
        print(many.line)
        let ratio = many.throughput / one.throughput
        print(
            String(
                format: "scaling: %d ranks reach %.2fx the throughput of 1 rank; %.0f%% of all-reduce time "
                    + "hidden behind backward", ranks, ratio, 100 * many.hidden))
    }

    /// `mpirun -np N w2vbert bench dist …`: rank 0's JSON line, its audio seconds per second and hidden share.
    func benchDist(ranks n: Int) throws -> (line: String, throughput: Double, hidden: Double) {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var args = ["-np", "\(n)", "--oversubscribe", "--bind-to", "none"]
        if getuid() == 0 { args.append("--allow-run-as-root") }
        args +=
            [
                exe, "bench", "dist", "--preset", preset, "--batch", "\(batch)", "--seconds", "\(seconds)",
                "--steps", "\(steps)"
            ] + overrides.flatMap { ["--set", $0] }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["mpirun"] + args
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        FileHandle.standardError.write(Data(("+ mpirun " + args.joined(separator: " ") + "\n").utf8))
        do {
            try p.run()
        } catch {
            throw RuntimeError("mpirun: cannot start: \(error)")
        }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw RuntimeError("mpirun -np \(n) \(exe) bench dist: exit status \(p.terminationStatus)")
        }
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("{") }).map(String.init),
            let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let throughput = json["audio_seconds_per_second"] as? Double,
            let hidden = json["allreduce_hidden_fraction"] as? Double
        else {
            throw RuntimeError("mpirun -np \(n) \(exe) bench dist: no JSON line in its output")
        }
        return (line, throughput, hidden)
    }
}
