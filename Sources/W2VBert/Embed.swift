// Hidden states for whole utterances: no masking, no noise, no dropout, no layer drop.

import Tensor

extension W2VBertModel {
    /// Which hidden states `embed` returns.
    public enum EmbedLayer: String, Sendable { case contrastive, mlm, speaker }

    /// The output of the last contrastive block or of the last MLM block (each after its final LayerNorm),
    /// [B, T, d] with T = encoderLength(frames), rows t ≥ encoderLength(lengths[b]) padding; or (layer
    /// .speaker) the per-utterance vectors a model option makes, [B, dim] (hyper-lora: the speaker vectors,
    /// dim = adapter.speaker_dim). The pointer is valid until the next forward or embed. `conditioning` [B]:
    /// per-utterance conditioning index, −1 = none (hyper-lora's speaker table: the row; nil or −1: unknown).
    public func embed(
        features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, batch: Int, frames t0: Int,
        layer: EmbedLayer = .mlm, conditioning: UnsafePointer<Int32>? = nil
    ) -> UnsafePointer<Float> {
        begin(features: features, lengths: lengths, batch: batch, frames: t0, mask: nil)
        training = false
        encoder.forward(features, shape)
        // The model options' per-micro-batch work (e.g. the speaker vectors and the blocks' factors).
        stack.generate(
            StepConditioning(
                z: encoder.z, lengths: frames.encoderLengths, conditioning: conditioning,
                batch: shape.b, t: shape.t))
        if layer == .speaker {
            guard let vectors = stack.extensions.utteranceVectors else {
                preconditionFailure("layer speaker needs a model option with per-utterance vectors (hyper-lora)")
            }
            return vectors.values
        }
        context.project(encoder.z, frames, shape)
        stack.drawLayerDrop(
            key: RandomKey(seed: 0, step: 0, microBatch: 0), probability: 0, training: false,
            given: nil)
        // Unused: dropout is off.
        var rng = DropoutSource(stream: RandomStream(seed: 0, purpose: .dropout), given: nil)
        let count = layer == .contrastive ? stack.contrastive.count : stack.dropped.count
        stack.forward(
            x0: context.x0, lengths: frames.encoderLengths, shape,
            config: BlockConfig(config, training: false), count: count, rng: &rng)
        return CFPtr(stack.block(count - 1).y)
    }
}
