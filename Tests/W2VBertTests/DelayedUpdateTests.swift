import XCTest
import W2VBert
import Tensor

/// Fine-tuning's freezing in the optimizer: floats outside its ranges never change; delayed floats keep their
/// parameters and moments bit-identical for the first delayUpdates updates and then update as a fresh AdamW.
final class DelayedUpdateTests: XCTestCase {
    func testFrontendNeverAndDelayedFloatsLaterUpdate() throws {
        // A constant rate (tri_stage with only a hold stage), so updates at different steps are comparable.
        let c = try Config.load(
            preset: "tiny",
            overrides: [
                "optimizer.schedule=tri_stage", "optimizer.tri_stage_ratios=[0, 1, 0]", "optimizer.max_steps=10",
                "optimizer.clip_norm=0",  // the norm differs between the two optimizers' ranges
            ])
        let l = ParameterLayout(config: c)
        let trainable = l.ranges { !ParameterLayout.isFrontend($0) }
        let delayed = l.ranges { !ParameterLayout.isFrontend($0) && !$0.hasPrefix("quantizer.") }
        let head = l.ranges { $0.hasPrefix("quantizer.") }
        XCTAssertFalse(head.isEmpty)
        let params = FloatBuffer(count: l.count), grads = FloatBuffer(count: l.count)
        l.initialize(params.ptr, seed: 1)
        let start = params.array
        var rng = RandomStream(seed: 3, step: 0, microBatch: 0, purpose: .mask)
        for i in 0..<l.count { grads.ptr[i] = rng.nextUniform() - 0.5 }
        let opt = Optimizer(config: c, layout: l, ranges: trainable, delayed: delayed, delayUpdates: 2)
        func floats(_ b: FloatBuffer, _ rs: [Range<Int>]) -> [Float] { rs.flatMap { r in r.map { b.ptr[$0] } } }
        func state(_ rs: [Range<Int>]) -> [Float] {
            rs.flatMap { r in
                r.flatMap { i -> [Float] in
                    let k = opt.stateOffset(layoutOffset: i)!
                    return [opt.m.ptr[k], opt.v.ptr[k]]
                }
            }
        }
        let frontend = l.ranges(where: ParameterLayout.isFrontend)
        for _ in 0..<2 { opt.update(params: params, grads: grads) }
        XCTAssertTrue(floats(params, delayed) == floats(FloatBuffer(start), delayed), "delayed floats moved")
        XCTAssertTrue(state(delayed).allSatisfy { $0 == 0 })
        XCTAssertTrue(floats(params, head) != floats(FloatBuffer(start), head), "the head did not train")
        // The third update moves the delayed floats exactly as a fresh optimizer's first update does.
        opt.update(params: params, grads: grads)
        let fresh = FloatBuffer(count: l.count)
        fresh.ptr.update(from: start, count: l.count)
        Optimizer(config: c, layout: l, ranges: delayed).update(params: fresh, grads: grads)
        XCTAssertTrue(floats(params, delayed) == floats(fresh, delayed), "not a fresh AdamW's first update")
        XCTAssertTrue(floats(params, delayed) != floats(FloatBuffer(start), delayed), "delayed floats did not move")
        XCTAssertTrue(floats(params, frontend) == floats(FloatBuffer(start), frontend), "the front end moved")
    }

    func testFinetuneRanges() throws {
        var c = try Config.preset("tiny")
        let l = ParameterLayout(config: c)
        let (all, encoder) = c.finetuneRanges(l)
        let fe = l.ranges(where: ParameterLayout.isFrontend)
        XCTAssertEqual(fe.count, 1)
        XCTAssertEqual(fe[0].lowerBound, l.entry("feature_encoder.conv1.weight").offset)
        XCTAssertFalse(all.contains { $0.overlaps(fe[0]) })
        XCTAssertEqual(all, encoder)  // no ctc_head in a pre-training layout
        c.finetune.freezeFrontend = false
        XCTAssertEqual(c.finetuneRanges(l).trainable, [0..<l.count])
    }
}
