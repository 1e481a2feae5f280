// Resampling to 16 kHz: the quality choice, the streaming resampler the decoder feeds chunk by chunk (our
// polyphase filter, or libsamplerate's converters), and whole-buffer resampling.

import CSampleRate
import Foundation

public enum ResampleQuality: String, Sendable, CaseIterable, Codable {
    /// Our tabulated polyphase filter (Polyphase.swift; MEDIUM's band edges, 100 dB), the default.
    case polyphase
    /// libsamplerate's SINC converters.
    case best, medium, fastest
    var converter: Int32 {
        switch self {
        case .best: return Int32(SRC_SINC_BEST_QUALITY)
        case .medium, .polyphase: return Int32(SRC_SINC_MEDIUM_QUALITY)
        case .fastest: return Int32(SRC_SINC_FASTEST)
        }
    }
}

/// libsamplerate's streaming converter (src_new / src_process), one channel, constant ratio.
final class StreamResampler {
    let ratio: Double
    let path: String
    let scratchCount = 8_192
    /// `.polyphase` (where the ratio allows it) resamples with `PolyphaseResampler`; otherwise libsamplerate's
    /// converter `state` with its output `scratch` (only then created).
    let polyphase: PolyphaseResampler?
    let state: OpaquePointer?
    let scratch: UnsafeMutablePointer<Float>?

    init(rate: Int, target: Int, quality: ResampleQuality, path: String) throws(AudioError) {
        self.ratio = Double(target) / Double(rate)
        self.path = path
        polyphase =
            quality == .polyphase
            ? PolyphaseFilter.shared(rate: rate, target: target).map(PolyphaseResampler.init) : nil
        if polyphase != nil {
            state = nil
            scratch = nil
            return
        }
        var err: Int32 = 0
        guard let s = src_new(quality.converter, 1, &err) else {
            try Resampler.check(err == 0 ? -1 : err, path)
            fatalError("unreachable")
        }
        state = s
        scratch = .allocate(capacity: scratchCount)
    }

    deinit {
        if let state { src_delete(state) }
        scratch?.deallocate()
    }

    /// Feeds `count` input samples and appends every output generated; with `endOfInput`, drains.
    func process(
        _ input: UnsafePointer<Float>, count: Int, endOfInput: Bool, into out: inout [Float]
    ) throws(AudioError) {
        if let polyphase {
            polyphase.process(input, count: count, endOfInput: endOfInput, into: &out)
            return
        }
        let state = state!, scratch = scratch!
        var used = 0
        while true {
            var data = SRC_DATA()
            data.data_in = input + used
            data.input_frames = count - used
            data.data_out = scratch
            data.output_frames = scratchCount
            data.end_of_input = endOfInput ? 1 : 0
            data.src_ratio = ratio
            try Resampler.check(src_process(state, &data), path)
            out.append(contentsOf: UnsafeBufferPointer(start: scratch, count: data.output_frames_gen))
            used += data.input_frames_used
            if data.output_frames_gen == 0 && (used >= count || data.input_frames_used == 0) { break }
        }
    }
}

/// Resampling a signal in memory (same converter and length rule as decoding).
public enum Resampler {
    /// The single place a libsamplerate status becomes a Swift error.
    static func check(_ status: Int32, _ path: String) throws(AudioError) {
        if status != 0 { throw AudioError(.resample, path: path, String(cString: src_strerror(status))) }
    }

    /// Mono `input` at `rate` → mono at `targetRate`, exactly L(n, rate) samples; output sample m is the
    /// signal at time m/targetRate (libsamplerate compensates its filter delay).
    public static func resample(
        _ input: [Float], from rate: Int, to targetRate: Int = targetSampleRate,
        quality: ResampleQuality = .polyphase, path: String = "<memory>"
    ) throws(AudioError) -> [Float] {
        if rate == targetRate || input.isEmpty { return input }
        let n = resampledLengthRule(frames: input.count, rate: rate, targetRate: targetRate)
        let rs = try StreamResampler(rate: rate, target: targetRate, quality: quality, path: path)
        let pad = 1024 * max(1, (rate + targetRate - 1) / targetRate)
        var out = [Float]()
        out.reserveCapacity(n + pad)
        try input.withUnsafeBufferPointer { p throws(AudioError) in
            try rs.process(p.baseAddress!, count: p.count, endOfInput: false, into: &out)
        }
        let zeros = [Float](repeating: 0, count: pad)
        try zeros.withUnsafeBufferPointer { z throws(AudioError) in
            try rs.process(z.baseAddress!, count: pad, endOfInput: true, into: &out)
        }
        guard out.count >= n else {
            throw AudioError(.resample, path: path, "the resampler generated \(out.count) samples, \(n) expected")
        }
        out.removeSubrange(n...)
        return out
    }
}
