// Audio in: decode any file libsndfile reads (WAV, FLAC, Ogg/Vorbis, Opus, MP3, AIFF, ...), average the
// channels to mono, resample to 16 kHz. Samples are floats in [-1, 1) (libsndfile's normalised float read:
// int16 k → k/32768); the fbank scales them back to the int16 range.
//
//   x_mono[n] = (1/C) Σ_c x[n, c]                               (docs/method.md: "averaged to mono")
//   y = resample(x_mono, ratio = 16000 / rate)
//
// `ResampleQuality.polyphase` (the default) is our tabulated windowed-sinc filter (Polyphase.swift) with
// libsamplerate MEDIUM's band edges (passband to 90 % of 8 kHz) and 100 dB stop band: a 1 kHz sine from
// 22.05 kHz measures −133 dB, and it differs from MEDIUM by −111 dB (ResampleTests). `best`, `medium`,
// `fastest` are libsamplerate's SINC converters (MEDIUM: 121 dB SNR, 90 % bandwidth; BEST: 145 dB, 97 %).
// Files already at 16 kHz are not touched. Measured on the fillets-ng-data-cs Ogg files (one core,
// decode + resample, `bench data`): polyphase 1332×, BEST 108×, MEDIUM 343×, FASTEST 632× real time. The
// top mel bins (> 7.2 kHz) of resampled audio are attenuated by the 90 % passband; `.best` (97 %) is
// the option when that matters more than a 12× slower loader.
//
// The 16 kHz length rule (what `prepare` writes from the header alone, and what decoding returns):
//
//   L(n, R) = n                      if R = 16000
//           = ⌊n · 16000 / R⌋        otherwise (integer arithmetic)
//
// for a file of n frames at R Hz. Output sample m is the signal at time m/16000 s (libsamplerate
// compensates its filter delay), so L counts the output instants m with (m + 1)/16000 ≤ n/R. That is the
// count libsamplerate's one-shot `src_simple` generates too, except that its floating-point termination
// test gives one sample fewer for some n where n·16000/R is an integer (measured over 13,320 (n, R,
// converter) cases: 95 such, all of them exact multiples). So the decoder makes the rule exact by
// construction: it feeds libsamplerate the file, then `resampleMargin` zeros (what libsamplerate pads
// internally at end of input), and keeps exactly L outputs. The header's frame count n is exact for
// every format but MPEG (`AudioInfo.exactFrames`), so `prepare` needs no decoding for them.
//
// Crops (`AudioDecoder.load(path:range:)`): output samples [m0, m1) of a long recording are decoded by
// seeking (sf_seek) to input frame s = ⌊(m0·R/16000 − margin)/q⌋·q, q = R / gcd(R, 16000) (so s falls on
// the output grid: output k of the window is global sample s·16000/R + k, with the same filter phase as
// in the whole-file decode), reading to ⌈m1·R/16000⌉ + margin and resampling that window alone. The margin
// (1024 input frames per started 16 kHz of rate) is ≥ 7× the half-length of libsamplerate's longest sinc
// filter (BEST: ≈ 143 input samples × R/16000) and ≥ 5× the polyphase filter's (89 input samples at 22.05 kHz,
// 385 at 96 kHz), so every kept output sees exactly the input the whole-file
// decode sees; a crop equals the same stretch of the whole-file decode (bit for bit in CorpusScaleTests,
// whose bound is 1e-4 on samples and 1e-3 on fbank + CMVN), and its cost depends on the crop's length,
// not the file's. Ogg and MPEG seeks are checked against a second landing (`SoundFile.position`).
//
// Non-finite samples (NaN, ±infinity: float and double files can hold them, and libsndfile passes them
// through) make a file unusable: every sample read is checked, and any gives `.decode` with their count,
// so `prepare --verify`, the loader, `features` and `embed` refuse the file in this one place.
//
// libsndfile and libsamplerate return codes become `AudioError` in one helper each (`SoundFile.failure`,
// `Resampler.check`); a `SoundFile` owns its SNDFILE* and closes it in deinit.

import CSampleRate
import CSndFile
#if canImport(Glibc)
    import Glibc
#endif

/// The sample rate everything downstream works at.
public let targetSampleRate = 16_000

/// What libsndfile says about a file before decoding it.
public struct AudioInfo: Sendable, Equatable {
    public let frames: Int  // per channel, at the file's own rate
    public let sampleRate: Int
    public let channels: Int
    /// Whether `frames` is exact. libsndfile's MPEG count is an estimate from the stream's headers;
    /// every other format's is exact (data chunk size, FLAC STREAMINFO, Ogg's last granule position).
    public let exactFrames: Bool
    public var seconds: Double { sampleRate > 0 ? Double(frames) / Double(sampleRate) : 0 }
    /// The 16 kHz length decoding will return (the rule above), from the header alone.
    public var resampledLength: Int { resampledLengthRule(frames: frames, rate: sampleRate) }
    public init(frames: Int, sampleRate: Int, channels: Int, exactFrames: Bool = true) {
        self.frames = frames
        self.sampleRate = sampleRate
        self.channels = channels
        self.exactFrames = exactFrames
    }
}

/// L(n, R): 16 kHz samples of n frames at R Hz (n if R = 16000, else ⌊n·16000/R⌋).
@inline(__always)
public func resampledLengthRule(frames n: Int, rate R: Int, targetRate: Int = targetSampleRate) -> Int {
    if R == targetRate || R <= 0 { return n }
    return n.multipliedFullWidth(by: targetRate).high == 0
        ? n * targetRate / R : Int(Double(n) * Double(targetRate) / Double(R))
}

/// Input frames of context kept on each side of a crop: 1024 per started 16 kHz of input rate.
@inline(__always)
func resampleMargin(rate: Int) -> Int { 1024 * max(1, (rate + targetSampleRate - 1) / targetSampleRate) }

@inline(__always)
func gcd(_ a: Int, _ b: Int) -> Int {
    var a = a, b = b
    while b != 0 { (a, b) = (b, a % b) }
    return a
}

/// Non-finite samples met while decoding (float and double files can hold NaN and ±infinity; libsndfile
/// passes them through, and every later stage would either spread them or, like the fbank's energy floor,
/// hide them). A file with any is refused with their count: `decode16k` checks every sample it reads.
struct NonFiniteCount {
    var nan = 0
    var infinite = 0
    var total: Int { nan + infinite }

    mutating func add(_ samples: UnsafeBufferPointer<Float>) {
        for x in samples where !x.isFinite {
            if x.isNaN {
                nan += 1
            } else {
                infinite += 1
            }
        }
    }

    /// "101 non-finite samples (100 NaN, 1 infinite) in the audio".
    var message: String { "\(total) non-finite samples (\(nan) NaN, \(infinite) infinite) in the audio" }
}

/// Guards libsndfile's global last-open error (see `SoundFile.open`).
nonisolated(unsafe) let openLock: UnsafeMutablePointer<pthread_rwlock_t> = {
    let p = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    pthread_rwlock_init(p, nil)
    return p
}()

/// An open libsndfile handle (read or write). Closed in deinit.
final class SoundFile {
    let handle: OpaquePointer
    let info: SF_INFO
    let path: String

    /// The single place a libsndfile status becomes a Swift error: `sf_strerror(handle)` (or of NULL,
    /// which reports the last sf_open failure).
    static func failure(_ kind: AudioError.Kind, _ path: String, _ handle: OpaquePointer?) -> AudioError {
        AudioError(kind, path: path, String(cString: sf_strerror(handle)))
    }

    /// libsndfile keeps the reason of the last failed sf_open in one global (`sf_strerror(NULL)`), which
    /// any other thread's sf_open overwrites (a successful one with "No Error."). Opens therefore run
    /// under the shared side of a read-write lock, and a failed open is repeated under the exclusive side
    /// to read its reason reliably (failures are rare; prepare's threads open in parallel otherwise).
    static func open(
        _ path: String, _ mode: Int32, _ info: inout SF_INFO, kind: AudioError.Kind
    ) throws(AudioError) -> OpaquePointer {
        pthread_rwlock_rdlock(openLock)
        let saved = info
        let h = sf_open(path, mode, &info)
        pthread_rwlock_unlock(openLock)
        if let h { return h }
        pthread_rwlock_wrlock(openLock)
        defer { pthread_rwlock_unlock(openLock) }
        info = saved
        if let h = sf_open(path, mode, &info) { return h }
        throw SoundFile.failure(kind, path, nil)
    }

    init(reading path: String) throws(AudioError) {
        var info = SF_INFO()
        let h = try SoundFile.open(path, Int32(SFM_READ), &info, kind: .unreadable)
        self.handle = h
        self.info = info
        self.path = path
    }

    init(writing path: String, sampleRate: Int, channels: Int, format: Int32) throws(AudioError) {
        var info = SF_INFO()
        info.samplerate = Int32(sampleRate)
        info.channels = Int32(channels)
        info.format = format
        let h = try SoundFile.open(path, Int32(SFM_WRITE), &info, kind: .io)
        self.handle = h
        self.info = info
        self.path = path
    }

    deinit { sf_close(handle) }

    var audioInfo: AudioInfo {
        let major = info.format & Int32(SF_FORMAT_TYPEMASK)
        return AudioInfo(
            frames: Int(info.frames), sampleRate: Int(info.samplerate), channels: Int(info.channels),
            exactFrames: major != Int32(SF_FORMAT_MPEG))
    }

    /// Whether libsndfile's sf_seek is sample-exact for this file: PCM containers and FLAC are; Ogg
    /// (Vorbis, Opus) and MPEG are not always (a known libsndfile bug: after some seeks the first block
    /// read is wrong, and measured here on the default corpus, about 1 target in 10,000 lands one Vorbis
    /// block off, e.g. 384 frames).
    var exactSeek: Bool {
        let major = info.format & Int32(SF_FORMAT_TYPEMASK)
        return major != Int32(SF_FORMAT_OGG) && major != Int32(SF_FORMAT_MPEG)
    }

    /// Leaves the read position at frame s. Exact formats: sf_seek. Ogg/MPEG: seek to s − H and read
    /// the H-frame pre-roll (discarded; it absorbs a wrong first block), and check the landing against
    /// an independent seek 2H earlier whose decode overlaps the pre-roll's second half: both must agree
    /// bit for bit, else (a landing off by a block) the file is read sequentially from its start to s —
    /// correct and rare, at the cost of decoding everything before s.
    func position(at s: Int, read: (Int) -> Int, mono: UnsafeMutablePointer<Float>, chunk: Int) throws(AudioError) {
        func seek(_ f: Int) throws(AudioError) {
            if sf_seek(handle, sf_count_t(f), Int32(SF_SEEK_SET)) != sf_count_t(f) {
                throw AudioError(
                    .decode, path: path, "cannot seek to frame \(f): \(String(cString: sf_strerror(handle)))")
            }
        }
        /// Reads n frames (mono) from the current position; fewer at the end of the stream.
        func readAll(_ n: Int) -> [Float] {
            var out = [Float](), left = n
            out.reserveCapacity(n)
            while left > 0 {
                let got = read(min(chunk, left))
                if got <= 0 { break }
                out.append(contentsOf: UnsafeBufferPointer(start: mono, count: got))
                left -= got
            }
            return out
        }
        if exactSeek { return try seek(s) }
        let H = 8_192
        if s > 3 * H {
            try seek(s - 3 * H)
            let reference = readAll(3 * H)  // frames [s − 3H, s)
            try seek(s - H)
            let preroll = readAll(H)  // frames [s − H, s)
            if reference.count == 3 * H && preroll.count == H
                && preroll[(H / 2)...].elementsEqual(reference[(2 * H + H / 2)...])
            {
                return
            }
        }
        try seek(0)
        var left = s
        while left > 0 {
            let got = read(min(chunk, left))
            if got <= 0 { break }
            left -= got
        }
    }

    /// The header's channel count and sample rate, refused unless usable. Header fields size nothing
    /// unchecked — the resampling ratio is bounded (a file claiming 1 Hz would ask for 16000 output samples per
    /// input sample), the read chunk shrinks past 16 channels, and the announced frame count is only a capped
    /// capacity hint.
    func checkedFormat() throws(AudioError) -> (channels: Int, rate: Int) {
        let C = Int(info.channels), R = Int(info.samplerate)
        guard C > 0, R > 0 else {
            throw AudioError(.decode, path: path, "bad header: \(C) channels at \(R) Hz")
        }
        guard (1_000...768_000).contains(R) else {
            throw AudioError(.decode, path: path, "unsupported sample rate \(R) Hz (1 kHz to 768 kHz)")
        }
        return (C, R)
    }

    /// 16 kHz mono samples [range) of this file (nil: all of it): seek, read the input window, average
    /// the channels, resample the window (see the header comment). A range past the end is cut at the
    /// file's 16 kHz length L; a file shorter than its exact header count is an error (truncated/corrupt).
    func decode16k(range: Range<Int>?, quality: ResampleQuality) throws(AudioError) -> [Float] {
        let (C, R) = try checkedFormat()
        let T = targetSampleRate
        let header = audioInfo
        let resampling = R != T
        let margin = resampling ? resampleMargin(rate: R) : 0
        let (inStart, inEnd, o) = DecoderWindow.input(range: range, rate: R, target: T, margin: margin)
        if range != nil && header.exactFrames && inStart >= header.frames { return [] }
        let expectIn = max(0, min(inEnd, header.frames > 0 ? header.frames : inEnd) - inStart)
        var out = [Float]()
        if expectIn < Int.max / 2 {
            out.reserveCapacity(
                min(1 << 24, resampling ? resampledLengthRule(frames: expectIn + margin, rate: R) + 64 : expectIn))
        }
        let resampler = resampling ? try StreamResampler(rate: R, target: T, quality: quality, path: path) : nil
        let chunk = max(16, min(16_384, 262_144 / C))
        let mono = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
        let interleaved = C > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: chunk * C) : mono
        defer {
            mono.deallocate()
            if C > 1 { interleaved.deallocate() }
        }
        let inv = 1 / Float(C)
        /// Reads up to `want` ≤ chunk frames, averaged to mono into `mono`; the count read.
        func read(_ want: Int) -> Int {
            let got = Int(sf_readf_float(handle, interleaved, sf_count_t(want)))
            if C > 1 && got > 0 {
                for i in 0..<got {
                    var v: Float = 0
                    for c in 0..<C { v += interleaved[i * C + c] }
                    mono[i] = v * inv
                }
            }
            return got
        }
        if inStart > 0 { try position(at: inStart, read: read, mono: mono, chunk: chunk) }
        var nRead = 0, eof = false
        var nonFinite = NonFiniteCount()
        while inEnd - inStart > nRead {
            let got = read(min(chunk, inEnd - inStart - nRead))
            if got <= 0 {
                eof = true
                break
            }
            nonFinite.add(UnsafeBufferPointer(start: interleaved, count: got * C))
            if nonFinite.total > 0 {
                // The file is refused below; nothing more to resample.
            } else if let rs = resampler {
                try rs.process(mono, count: got, endOfInput: false, into: &out)
            } else {
                out.append(contentsOf: UnsafeBufferPointer(start: mono, count: got))
            }
            nRead += got
        }
        if sf_error(handle) != 0 { throw SoundFile.failure(.decode, path, handle) }
        if nonFinite.total > 0 { throw AudioError(.decode, path: path, nonFinite.message) }
        if header.exactFrames && inStart + nRead >= header.frames { eof = true }
        // libsndfile stops silently at corrupt FLAC frames and at truncated data; where the header's
        // frame count is exact a short read is an error.
        if eof && header.exactFrames && header.frames > 0 && inStart + nRead < header.frames {
            throw AudioError(
                .decode, path: path,
                "decoded \(inStart + nRead) of the \(header.frames) frames the header announces (truncated or corrupt)")
        }
        if let rs = resampler {
            let zeros = [Float](repeating: 0, count: margin)
            try zeros.withUnsafeBufferPointer { z throws(AudioError) in
                try rs.process(z.baseAddress!, count: margin, endOfInput: true, into: &out)
            }
        }
        // Valid global outputs end at L (known at the end of the file) or at the range's end.
        let validEnd = eof ? resampledLengthRule(frames: inStart + nRead, rate: R) : Int.max
        return try trim(out, firstIndex: o, range: range, validEnd: validEnd)
    }

    /// The outputs [range ∩ [0, validEnd)) of `out`, whose first sample has global index `o`.
    func trim(_ out: [Float], firstIndex o: Int, range: Range<Int>?, validEnd: Int) throws(AudioError) -> [Float] {
        var out = out
        let gStart = range?.lowerBound ?? 0
        let gEnd = min(range?.upperBound ?? Int.max, validEnd)
        if gEnd <= gStart { return [] }
        guard gEnd - o <= out.count else {
            throw AudioError(
                .resample, path: path, "the resampler generated \(out.count) samples, \(gEnd - o) expected")
        }
        if gEnd - o < out.count { out.removeSubrange((gEnd - o)...) }
        if gStart > o { out.removeSubrange(0..<(gStart - o)) }
        return out
    }
}

enum DecoderWindow {
    /// The input window [inStart, inEnd) a crop `range` of 16 kHz outputs needs (with `margin` frames of
    /// resampling context at each edge, aligned to the rate ratio's period), and the global index o of
    /// the window's first output. No range: the whole file.
    static func input(range: Range<Int>?, rate R: Int, target T: Int, margin: Int) -> (inStart: Int, inEnd: Int, o: Int)
    {
        guard let r = range else { return (0, Int.max, 0) }
        precondition(r.lowerBound >= 0, "negative crop offset")
        guard R != T else { return (r.lowerBound, r.upperBound, r.lowerBound) }
        let g = gcd(R, T), q = R / g
        let inStart = max(0, r.lowerBound * R / T - margin) / q * q
        let upper = min(r.upperBound, Int.max / (4 * R))  // "to the end" callers pass huge bounds
        return (inStart, (upper * R + T - 1) / T + margin, inStart / q * (T / g))
    }
}

/// Decoding entry points used by `prepare`, `features` and the loader.
public enum AudioDecoder {
    /// Header only (no decoding).
    public static func info(path: String) throws(AudioError) -> AudioInfo {
        try SoundFile(reading: path).audioInfo
    }

    /// Decode, downmix to mono, resample to 16 kHz: exactly `info.resampledLength` samples. Throws
    /// `.unreadable` (libsndfile could not open it), `.decode` (read error, truncated, non-finite
    /// samples), `.empty` (no frames), `.resample`.
    public static func load(path: String, quality: ResampleQuality = .polyphase) throws(AudioError) -> [Float] {
        try loadWithInfo(path: path, quality: quality).samples
    }

    /// Same as `load`, returning the header too.
    public static func loadWithInfo(
        path: String, quality: ResampleQuality = .polyphase
    ) throws(AudioError)
        -> (samples: [Float], info: AudioInfo)
    {
        let file = try SoundFile(reading: path)
        let samples = try file.decode16k(range: nil, quality: quality)
        if samples.isEmpty { throw AudioError(.empty, path: path, "no audio frames") }
        return (samples, file.audioInfo)
    }

    /// 16 kHz samples [range) of the file, decoding only that stretch plus the resampler's context
    /// (sf_seek): equal to `load(path:)[range]` within float rounding. A range reaching past the end is
    /// cut at the file's length (the result may be shorter, or empty).
    public static func load(
        path: String, range: Range<Int>, quality: ResampleQuality = .polyphase
    ) throws(AudioError) -> [Float] {
        try SoundFile(reading: path).decode16k(range: range, quality: quality)
    }
}

/// Writing audio through libsndfile (tests, fixtures, tools).
public enum AudioWriter {
    public enum Format: Sendable {
        case wav16, wavFloat, flac16, oggVorbis
        var sf: Int32 {
            switch self {
            case .oggVorbis: return Int32(SF_FORMAT_OGG | SF_FORMAT_VORBIS)
            case .wav16: return Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)
            case .wavFloat: return Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT)
            case .flac16: return Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16)
            }
        }
    }

    /// Writes interleaved `samples` ([frames, channels], floats in [-1, 1)). 16-bit formats quantise
    /// as round(x·32768) clamped to int16, so reading back (k/32768) returns the quantised value exactly.
    public static func write(
        path: String, samples: [Float], sampleRate: Int, channels: Int = 1,
        format: Format = .wav16
    ) throws(AudioError) {
        precondition(channels > 0 && samples.count % channels == 0)
        let file = try SoundFile(writing: path, sampleRate: sampleRate, channels: channels, format: format.sf)
        let frames = samples.count / channels
        let written: Int
        switch format {
        case .wavFloat, .oggVorbis:
            written = samples.withUnsafeBufferPointer {
                Int(sf_writef_float(file.handle, $0.baseAddress, sf_count_t(frames)))
            }
        case .wav16, .flac16:
            let shorts = samples.map { Int16(max(-32768, min(32767, ($0 * 32768).rounded()))) }
            written = shorts.withUnsafeBufferPointer {
                Int(sf_writef_short(file.handle, $0.baseAddress, sf_count_t(frames)))
            }
        }
        if written != frames { throw SoundFile.failure(.io, path, file.handle) }
    }
}
