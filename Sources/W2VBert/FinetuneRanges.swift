// What fine-tuning trains, as float ranges of a ParameterLayout: the front end (`feature_encoder.*`) never
// when finetune.freeze_frontend; the rest of the encoder after finetune.freeze_updates updates; the CTC head
// (`ctc_head.*`) always.

extension ParameterLayout {
    /// The layout's floats of the tensors whose names satisfy `include`, as maximal contiguous runs (alignment
    /// padding between two included tensors belongs to the run).
    public func ranges(where include: (String) -> Bool) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start: Int? = nil
        for (i, e) in entries.enumerated() {
            let end = i + 1 < entries.count ? entries[i + 1].offset : count
            if include(e.name) {
                if start == nil { start = e.offset }
                if i + 1 == entries.count || !include(entries[i + 1].name) {
                    out.append(start!..<end)
                    start = nil
                }
            }
        }
        return out
    }

    public static func isFrontend(_ name: String) -> Bool { name.hasPrefix("feature_encoder.") }
    public static func isCTCHead(_ name: String) -> Bool { name.hasPrefix("ctc_head.") }
}

extension Config {
    /// Fine-tuning's trainable floats (everything but the front end when it is frozen) and, within them, the
    /// encoder's (frozen for the first finetune.freeze_updates updates).
    public func finetuneRanges(_ layout: ParameterLayout) -> (trainable: [Range<Int>], encoder: [Range<Int>]) {
        let frozenFrontend = finetune.freezeFrontend
        let trainable = layout.ranges { !(frozenFrontend && ParameterLayout.isFrontend($0)) }
        let encoder = layout.ranges {
            !(frozenFrontend && ParameterLayout.isFrontend($0)) && !ParameterLayout.isCTCHead($0)
        }
        return (trainable, encoder)
    }
}
