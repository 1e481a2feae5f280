// Hidden states for whole utterances (SPEC §14.14): no masking, no noise, no dropout, no layer drop.

import Tensor

extension W2VBertModel {
    /// Which hidden states `embed` returns.
    public enum EmbedLayer: String, Sendable { case contrastive, mlm, speaker }

    /// The output of the last contrastive block or of the last MLM block (each after its final LayerNorm),
    /// [B, T, d], or (layer .speaker, hyper-lora) the speaker vectors [B, speaker_dim] with T = encoderLength(frames); rows t ≥ encoderLength(lengths[b]) are padding. The
    /// pointer is valid until the next forward or embed. `speakers` [B]: rows of the speaker table (adapter.speaker =
    /// table; nil or −1: the unknown row).
    public func embed(features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, batch: Int, frames t0: Int,
                      layer: EmbedLayer = .mlm, speakers: UnsafePointer<Int32>? = nil) -> UnsafePointer<Float> {
        begin(features: features, lengths: lengths, batch: batch, frames: t0, mask: nil)
        training = false
        encoder.forward(features, shape)
        // hyper-lora (issue 13): the speaker vectors [B, speaker_dim] (layer .speaker) and the blocks' factors.
        precondition(layer != .speaker || stack.hyperLoRA.enabled, "layer speaker needs adapter.kind = hyper-lora")
        stack.hyperLoRA.generate(z: encoder.z, lengths: frames.encoderLengths, speakers: speakers, batch: shape.b, t: shape.t)
        if layer == .speaker { return CFPtr(stack.hyperLoRA.s) }
        context.project(encoder.z, frames, shape)
        stack.drawLayerDrop(key: RandomKey(seed: 0, step: 0, microBatch: 0), probability: 0, training: false, given: nil)
        var rng = DropoutSource(stream: RandomStream(seed: 0, purpose: .dropout), given: nil)   // unused: dropout is off
        let count = layer == .contrastive ? stack.contrastive.count : stack.dropped.count
        stack.forward(x0: context.x0, lengths: frames.encoderLengths, shape, config: BlockConfig(config, training: false),
                      count: count, rng: &rng)
        return CFPtr(stack.block(count - 1).y)
    }
}
