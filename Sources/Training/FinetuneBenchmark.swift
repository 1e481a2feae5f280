import Foundation
import Tensor
import W2VBert

extension StepBenchmark {
    /// Letters per second of speech in the synthetic transcripts (about the default corpus's rate).
    public static let lettersPerSecond = 14.0

    /// One process, CTC fine-tuning steps (`w2vbert bench finetune`): forward with time and channel masking,
    /// CTC loss, backward and AdamW over the optimizer's trainable ranges (the front end left out with
    /// finetune.freeze_frontend, as the fine-tuning recipe does; finetune.freeze_updates ignored: the encoder
    /// trains from the first step) on one synthetic micro-batch of N(0, 1) features and random transcripts of
    /// `lettersPerSecond` × seconds letters. `config` must have model.head ctc. `preset` is only reported.
    public func runFinetune(preset: String) -> BenchmarkRecord {
        var c = config
        c.finetune.freezeUpdates = 0
        let data = SyntheticBatch(config: c, batch: batch, seconds: seconds, seed: 7)
        let model = CTCModel(config: c, compute: compute, maxBatch: batch, maxFrames: data.t0)
        let (trainable, encoder) = c.finetuneRanges(model.layout)
        let opt = Optimizer(config: c, layout: model.layout, ranges: trainable, delayed: encoder, delayUpdates: 0)
        let letters = min(Int(seconds * StepBenchmark.lettersPerSecond), data.t / 2)
        var rng = RandomStream(seed: 7, microBatch: 1, purpose: .test)
        let labels = (0..<(batch * letters)).map { _ in Int32(1 + rng.nextInt(c.model.vocabSize - 1)) }
        let labelLengths = [Int32](repeating: Int32(letters), count: batch)
        var times: [Double] = []
        var loss = 0.0
        for step in 0...steps {
            let start = monotonicSeconds()
            model.zeroGrads()
            let stats = data.withView(key: RandomKey(seed: 1, step: step, microBatch: 0)) { view in
                labels.withUnsafeBufferPointer { l in
                    labelLengths.withUnsafeBufferPointer { n in
                        model.forward(view, labels: l.baseAddress!, labelLengths: n.baseAddress!, training: true)
                    }
                }
            }
            model.backward(lossScale: 1 / Float(batch))
            opt.update(params: model.params, grads: model.grads)
            if step > 0 { times.append(monotonicSeconds() - start) }
            loss = stats.lossSum / Double(batch)
        }
        let median = times.sorted()[times.count / 2]
        return BenchmarkRecord([
            ("preset", preset), ("head", "ctc"), ("vocab_size", c.model.vocabSize),
            ("parameters", model.layout.parameterCount), ("trainable_floats", opt.stateCount), ("batch", batch),
            ("seconds_per_utterance", seconds), ("letters_per_utterance", letters), ("threads", compute.threads),
            ("precision", compute.precision.rawValue), ("steps", steps), ("step_time_median", median),
            ("audio_seconds_per_second", Double(batch) * seconds / median), ("last_loss", loss),
            ("activation_bytes", model.activationBytes), ("peak_rss_bytes", peakResidentBytes()),
        ])
    }
}
