// The `data` section: what a run's sequences are (docs/sequences.md) and the checks that tie it to the front end.

/// What a run's sequences are: `audio` (speech, 80-bin fbank frames), `series` (multichannel numeric
/// sequences, data.channels values per time step) or `tokens` (discrete symbols of a vocabulary of
/// data.vocab_size, one id per step).
public enum DataKind: String, Sendable, CaseIterable { case audio, series, tokens }

/// The input: its kind and width. Series statistics (per-channel mean and standard deviation over the
/// training corpus) are set by `train` and stored with the run, so `embed` normalises the same way.
public struct DataConfig: Sendable, Equatable {
    public var kind: DataKind = .audio
    public var channels = 0  // C of a series
    public var vocabSize = 0  // V of tokens
    /// series: the sampling rate in Hz (0: not given), from the manifest; recorded with the run.
    public var rate = 0.0
    /// series: the CSV columns read, by name (empty: all); from the manifest.
    public var columns: [String] = []
    /// series: per-channel mean and standard deviation (empty until `train` measures the corpus).
    public var mean: [Float] = []
    public var std: [Float] = []
}

extension Config {
    /// The data section and the front end it needs.
    func validateData() throws {
        func check(_ ok: Bool, _ key: String, _ msg: String) throws { if !ok { throw ConfigError(key, msg) } }
        try check(model.stackFrames >= 1 && model.stackFrames <= 4096, "model.stack_frames", "must be in [1, 4096]")
        try check(
            data.kind != .audio || train.maxSamples >= 400, "train.max_samples",
            "must be ≥ 400 (one 25 ms fbank frame at 16 kHz)")
        try check(
            data.kind == .audio || train.maxSamples >= model.stackFrames, "train.max_samples",
            "must be ≥ model.stack_frames (\(model.stackFrames)): one encoder frame of \(data.kind.rawValue)")
        try check(data.rate >= 0, "data.rate", "must be ≥ 0 Hz (0: not given)")
        switch data.kind {
        case .audio:
            try check(
                model.frontend != .embed, "model.frontend", "embed reads token ids: it needs data.kind = tokens")
        case .series:
            try check(
                data.channels >= 0 && data.channels <= 65_536, "data.channels",
                "must be in [1, 65536] with data.kind = series (0: the manifest's), got \(data.channels)")
            try check(
                model.frontend == .stack, "model.frontend",
                "data.kind = series needs the stack front end, got \(model.frontend.rawValue)")
            try check(
                data.mean.isEmpty || (data.mean.count == data.channels && data.std.count == data.channels),
                "data.mean", "needs data.channels (\(data.channels)) values, as does data.std")
            try check(data.std.allSatisfy { $0 > 0 }, "data.std", "every value must be > 0")
        case .tokens:
            try check(
                data.vocabSize == 0 || (data.vocabSize >= 2 && data.vocabSize <= 1 << 24), "data.vocab_size",
                "must be in [2, 16777216] with data.kind = tokens (0: the vocabulary's size), got \(data.vocabSize)")
            try check(
                model.frontend == .embed, "model.frontend",
                "data.kind = tokens needs the embed front end, got \(model.frontend.rawValue)")
        }
    }
}
