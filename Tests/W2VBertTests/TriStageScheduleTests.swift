import XCTest
import W2VBert

/// optimizer.schedule = tri_stage and the finetune keys.
final class TriStageScheduleTests: XCTestCase {
    func tri(_ extra: [String] = []) throws -> Config {
        try Config.load(
            preset: "tiny",
            overrides: ["optimizer.schedule=tri_stage", "optimizer.lr=0.001", "optimizer.max_steps=100"] + extra)
    }

    /// Hand-computed: lr 1e-3, 100 steps, ratios [0.1, 0.4, 0.5] → warm-up 10, hold 40, decay 50;
    /// init 1e-5, final 5e-5.
    func testRatesAgainstHandComputedValues() throws {
        let c = try tri()
        XCTAssertTrue(c.triStageSteps == (10, 40, 50))
        XCTAssertEqual(c.learningRate(step: 0), 1e-5, accuracy: 1e-10)
        XCTAssertEqual(c.learningRate(step: 5), 5.05e-4, accuracy: 1e-9)  // 1e-5 + (1e-3 − 1e-5) / 2
        XCTAssertEqual(c.learningRate(step: 9), 1e-5 + 9.9e-4 * 0.9, accuracy: 1e-9)
        XCTAssertEqual(c.learningRate(step: 10), 1e-3, accuracy: 1e-10)
        XCTAssertEqual(c.learningRate(step: 49), 1e-3, accuracy: 1e-10)
        XCTAssertEqual(c.learningRate(step: 50), 1e-3, accuracy: 1e-10)  // decay offset 0
        XCTAssertEqual(c.learningRate(step: 75), 2.2360680e-4, accuracy: 1e-9)  // 1e-3 · √0.05
        XCTAssertEqual(c.learningRate(step: 100), 5e-5, accuracy: 1e-10)  // 1e-3 · 0.05
        XCTAssertEqual(c.learningRate(step: 150), 5e-5, accuracy: 1e-10)
        let d = try tri(["optimizer.tri_stage_ratios=[0.5, 0, 0.5]", "optimizer.init_lr_scale=0.5"])
        XCTAssertEqual(d.learningRate(step: 25), 7.5e-4, accuracy: 1e-9)  // 5e-4 + 5e-4 · 25/50
        XCTAssertEqual(d.learningRate(step: 50), 1e-3, accuracy: 1e-10)  // no hold: decay starts
        XCTAssertEqual(d.learningRate(step: 51), 1e-3 * exp(log(0.05) / 50), accuracy: 1e-9)
    }

    func testValidationNamesTheKey() throws {
        let bad: [(String, String)] = [
            ("optimizer.tri_stage_ratios=[0.1, 0.4, 0.4]", "optimizer.tri_stage_ratios"),
            ("optimizer.tri_stage_ratios=[0.5, 0.5]", "optimizer.tri_stage_ratios"),
            ("optimizer.init_lr_scale=0", "optimizer.init_lr_scale"),
            ("optimizer.final_lr_scale=1.5", "optimizer.final_lr_scale"),
            ("finetune.freeze_updates=-1", "finetune.freeze_updates"),
            ("finetune.freeze_frontend=maybe", "finetune.freeze_frontend"),
        ]
        for (override, key) in bad {
            XCTAssertThrowsError(try tri([override]), override) { XCTAssertEqual(($0 as? ConfigError)?.key, key) }
        }
    }

    func testKeysListedDefaultsAndYAMLRoundTrip() throws {
        for k in [
            "optimizer.tri_stage_ratios", "optimizer.init_lr_scale", "optimizer.final_lr_scale",
            "finetune.freeze_updates", "finetune.freeze_frontend",
        ] {
            XCTAssertTrue(Config.keyNames.contains(k), k)
        }
        let d = Config()
        XCTAssertEqual(d.optimizer.triStageRatios, [0.1, 0.4, 0.5])
        XCTAssertEqual(d.optimizer.initLrScale, 0.01)
        XCTAssertEqual(d.optimizer.finalLrScale, 0.05)
        XCTAssertEqual(d.finetune.freezeUpdates, 0)
        XCTAssertTrue(d.finetune.freezeFrontend)
        let c = try tri([
            "optimizer.tri_stage_ratios=[0.2, 0.3, 0.5]", "finetune.freeze_updates=7", "finetune.freeze_frontend=false",
        ])
        var back = Config()
        try back.apply(yaml: c.yaml)
        XCTAssertEqual(back, c)
        XCTAssertEqual(back.optimizer.schedule, .triStage)
    }
}
