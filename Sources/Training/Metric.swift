// Metrics: every logged number is one `Metric` — a name, a console label and how it is computed from a
// `MetricWindow` (the sums and latest values since the last log line, or of one validation pass). One
// list per record kind renders to metrics.jsonl, TensorBoard (`train/NAME`, `valid/NAME`) and the
// console. To add a metric, add one line to `Metric.train` or `Metric.valid` (and, if it needs a new
// input, one field to `MetricWindow` filled where the window is).

import Foundation
import W2VBert
import Audio

/// Per-step sums (this rank's, then all-reduced) that the metrics are computed from.
public struct StepSums: Sendable {
    public var contrastive = 0.0, mlm = 0.0, correctContrastive = 0.0, correctMLM = 0.0, masked = 0.0
    public var audioSeconds = 0.0, utterances = 0.0
    public init() {}
    var array: [Double] { [contrastive, mlm, correctContrastive, correctMLM, masked, audioSeconds, utterances] }
    init(_ a: [Double]) {
        contrastive = a[0]
        mlm = a[1]
        correctContrastive = a[2]
        correctMLM = a[3]
        masked = a[4]
        audioSeconds = a[5]
        utterances = a[6]
    }
    mutating func add(_ o: StepSums) {
        contrastive += o.contrastive
        mlm += o.mlm
        correctContrastive += o.correctContrastive
        correctMLM += o.correctMLM
        masked += o.masked
        audioSeconds += o.audioSeconds
        utterances += o.utterances
    }
    mutating func add(_ s: StepStats, audioSeconds audio: Double, utterances u: Int) {
        contrastive += s.contrastiveLossSum
        mlm += s.mlmLossSum
        correctContrastive += Double(s.contrastiveCorrect)
        correctMLM += Double(s.mlmCorrect)
        masked += Double(s.masked)
        audioSeconds += audio
        utterances += Double(u)
    }
}

/// What a record is computed from.
public struct MetricWindow: Sendable {
    public var sums = StepSums()
    public var steps = 0
    public var diversityLoss = 0.0, probPerplexity = 0.0, codePerplexity = 0.0
    public var tau = 0.0, lr = 0.0, gradNorm = 0.0
    public var seconds = 0.0  // wall time of the window
    public var computeSeconds = 0.0, allReduceWaitSeconds = 0.0, allReduceSeconds = 0.0, dataWaitSeconds = 0.0
    public var weights = (contrastive: 1.0, mlm: 1.0, diversity: 0.2)
    /// CTC fine-tuning: the step sums and, for a validation record, the greedy transcripts' errors.
    public var ctc = CTCSums()
    public var characterErrors = ErrorRate(), wordErrors = ErrorRate()
    public var groups = 1
    public init() {}
    public init(config c: Config) {
        weights = (Double(c.loss.contrastiveWeight), Double(c.loss.mlmWeight), Double(c.loss.diversityWeight))
        groups = c.quantizer.groups
    }

    var masked: Double { max(sums.masked, 1) }
    var lossContrastive: Double { sums.contrastive / masked }
    var lossMLM: Double { sums.mlm / masked }
    var loss: Double {
        weights.contrastive * lossContrastive + weights.mlm * lossMLM + weights.diversity * diversityLoss
    }

    /// Adds one optimizer step.
    mutating func add(_ r: StepResult) {
        sums.add(r.sums)
        ctc.add(r.ctc)
        steps += 1
        diversityLoss = r.diversityLoss
        probPerplexity = r.probPerplexity
        codePerplexity = r.codePerplexity
        tau = Double(r.tau)
        lr = Double(r.lr)
        gradNorm = r.gradNorm
        computeSeconds += r.computeSeconds
        allReduceWaitSeconds += r.allReduceWaitSeconds
        allReduceSeconds += r.allReduceSeconds
    }
}

/// One logged number.
public struct Metric: Sendable {
    public let name: String
    /// Console label and printf format, e.g. "loss %.3f"; nil: not on the console.
    public let console: String?
    public let value: @Sendable (MetricWindow) -> Double
    public init(_ name: String, _ console: String?, _ value: @escaping @Sendable (MetricWindow) -> Double) {
        self.name = name
        self.console = console
        self.value = value
    }

    static let losses: [Metric] = [
        Metric("loss", "loss %.3f") { $0.loss },
        Metric("loss_contrastive", "w %.3f") { $0.lossContrastive },
        Metric("loss_mlm", "m %.3f") { $0.lossMLM },
        Metric("loss_diversity", "d %.3f") { $0.diversityLoss },
        Metric("accuracy_contrastive", "acc c %.3f") { $0.sums.correctContrastive / $0.masked },
        Metric("accuracy_mlm", "acc m %.3f") { $0.sums.correctMLM / ($0.masked * Double($0.groups)) },
        Metric("prob_perplexity", "ppl %.1f") { $0.probPerplexity },
        Metric("code_perplexity", "code ppl %.1f") { $0.codePerplexity },
    ]

    /// A training log line (per `train.log_interval` steps).
    public static let train: [Metric] =
        losses + [
            Metric("temperature", "τ %.3f") { $0.tau },
            Metric("lr", "lr %.2e") { $0.lr },
            Metric("grad_norm", "|g| %.3f") { $0.gradNorm },
            Metric("audio_seconds_per_second", "%.0f audio s/s") { $0.sums.audioSeconds / max($0.seconds, 1e-9) },
            Metric("utterances_per_second", nil) { $0.sums.utterances / max($0.seconds, 1e-9) },
            Metric("masked_frames", nil) { $0.sums.masked },
            Metric("allreduce_hidden_fraction", nil) {
                $0.allReduceSeconds > 0 ? max(0, 1 - $0.allReduceWaitSeconds / $0.allReduceSeconds) : 1
            },
            Metric("data_wait_seconds", "data wait %.3f s") { $0.dataWaitSeconds / Double(max($0.steps, 1)) },
        ]

    /// A validation record.
    public static let valid: [Metric] = losses + [Metric("masked_frames", "%.0f masked frames") { $0.sums.masked }]
}

/// One record: `kind` train or valid, rendered three ways from the same values.
public struct StepMetrics {
    public let kind: String
    public let step: Int
    public let values: [(metric: Metric, value: Double)]
    /// JSON-only fields (per-rank timings, epoch).
    public var extra: [String: Any] = [:]

    public init(kind: String, step: Int, metrics: [Metric], window: MetricWindow) {
        self.kind = kind
        self.step = step
        values = metrics.map { ($0, $0.value(window)) }
    }

    public func value(_ name: String) -> Double? { values.first { $0.metric.name == name }?.value }

    public var jsonRecord: [String: Any] {
        var r = extra
        r["kind"] = kind
        r["step"] = step
        for (m, v) in values { r[m.name] = v }
        return r
    }

    public var scalars: [(String, Double)] { values.map { ("\(kind)/\($0.metric.name)", $0.value) } }

    /// "step 5/100 | loss 9.123 | …" (train) or "valid step 5 | loss 9.123 | …".
    public func consoleLine(maxSteps: Int? = nil) -> String {
        let head = kind == "train" ? "step \(step)" + (maxSteps.map { "/\($0)" } ?? "") : "\(kind) step \(step)"
        return ([head] + values.compactMap { m, v in m.console.map { String(format: $0, v) } }).joined(separator: " | ")
    }
}

/// Where records go: metrics.jsonl, TensorBoard and the console (rank 0 only).
public struct MetricSinks {
    let log: MetricsLog?
    let tensorboard: TensorBoardWriter?
    let console: ((String) -> Void)?

    public func write(_ m: StepMetrics, consoleSuffix: String = "", maxSteps: Int? = nil) throws {
        try log?.write(m.jsonRecord)
        tensorboard?.add(step: m.step, scalars: m.scalars)
        tensorboard?.flush()
        console?(m.consoleLine(maxSteps: maxSteps) + consoleSuffix)
    }

    /// An event record (kind "event") in metrics.jsonl.
    public func event(_ name: String, step: Int, _ fields: [String: Any] = [:]) throws {
        var r = fields
        r["kind"] = "event"
        r["event"] = name
        r["step"] = step
        try log?.write(r)
    }
}
