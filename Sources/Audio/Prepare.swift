// `CorpusPreparer` builds train.tsv / valid.tsv from a folder (`w2vbert prepare`):
//  1. scan recursively (CorpusScan.swift: folder links followed, every folder and file once by device and
//     inode, a file reached by several paths listed under the first in sorted order), sorted, so the list
//     does not depend on the file system;
//  2. check every file — by default from its header alone: libsndfile's frame count n and rate R give the
//     16 kHz length L(n, R) (Decoder.swift states the rule; decoding returns exactly that many samples).
//     MPEG files, whose header count is an estimate, are always decoded; `verify` decodes every file
//     (catching corrupt streams behind a good header and non-finite samples, which header-only leaves to
//     the loader's bad-file handling at training time). Unreadable, empty and shorter-than-`minSeconds`
//     files are skipped with their reason;
//  3. split deterministically: the usable files are shuffled by RandomStream(seed, step 0, micro-batch
//     0xFFFF_FFFF, .shuffle) and the first round(validPercent/100 · n) go to valid (the rest keep their
//     sorted order in train.tsv).
// Step 2 is spread over `jobs` threads and, over MPI ranks, by the Training module's
// `CorpusPreparer.prepare(root:out:communicator:)` (rank r checks files i ≡ r mod world size;
// `encodeChecks`/`decodeChecks` carry the results to rank 0). Every result lands at its file's index, and
// steps 1 and 3 see only the sorted list and those results, so the manifests are byte-identical whatever
// the number of threads or ranks.

import Foundation
import Tensor

/// Scans a folder into train/valid manifests (`w2vbert prepare`).
public struct CorpusPreparer: Sendable {
    public var extensions: [String] = [
        "wav", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "au", "w64",
        "caf",
    ]
    public var minSeconds: Double = 0.5
    public var validPercent: Double = 2
    public var seed: UInt64 = 1
    public var quality: ResampleQuality = .polyphase
    /// Decode every file (else lengths come from the headers; MPEG is decoded either way).
    public var verify = false
    /// Threads checking files.
    public var jobs = 1
    /// What the files are. series: `columns` of CSV files (empty: all) and the channel count every file must
    /// have (0: the first readable file's, in sorted order); tokens: the vocabulary the tokens must be in
    /// (nil: the training split's tokens become the vocabulary, written as vocab.txt next to the manifests).
    /// `minLength` (steps or tokens) replaces `minSeconds` for them.
    public var kind: SequenceKind = .audio
    public var columns: [String] = []
    public var channels = 0
    public var vocabulary: TokenVocabulary? = nil
    public var minLength = 1
    /// tokens: each sequence as windows of this many tokens (`file[#i]@start+length` rows; 0: whole sequences).
    public var window = 0
    /// series: the sampling rate, recorded on the manifests' first line (0: not given).
    public var rate = 0.0
    public init() {}

    public struct Skipped: Sendable, Equatable {
        public let path: String  // relative to the root
        public let kind: AudioError.Kind
        public let reason: String
    }

    public struct Result: Sendable {
        public var train: Manifest
        public var valid: Manifest
        public var skipped: [Skipped]
        /// Audio files checked (one per device and inode).
        public var scanned: Int
        /// Folders and files not walked or listed again (see `CorpusScan`).
        public var duplicates: [CorpusScan.Duplicate]
        public var hours: Double { train.hours + valid.hours }
        /// tokens: the vocabulary written next to the manifests (the given one, or the training split's tokens
        /// by falling count, ties by name).
        public var vocabulary: TokenVocabulary? = nil

        /// Writes `folder`/train.tsv and `folder`/valid.tsv (creating the folder if missing).
        public func writeManifests(to folder: String) throws(AudioError) {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw AudioError(.io, path: folder, "cannot create the folder: \(error.localizedDescription)")
            }
            try train.write(to: folder + "/train.tsv")
            try valid.write(to: folder + "/valid.tsv")
            try vocabulary?.write(to: folder + "/vocab.txt")
        }
    }

    /// One file's outcome: the lengths of its sequences (16 kHz samples of an audio file; steps of a series;
    /// tokens of each FASTA record or of a text file), or why it is skipped.
    public typealias Check = Swift.Result<[Int], AudioError>

    /// The absolute, standardised form of a root folder (what line 1 of the manifests holds).
    public static func absoluteRoot(_ root: String) -> String {
        URL(fileURLWithPath: root).standardizedFileURL.path
    }

    /// The audio files under root (sorted, extensions matched case-insensitively, each file once) and the
    /// paths left out as duplicates (CorpusScan.swift).
    public func scan(root: String) throws(AudioError) -> CorpusScan {
        try CorpusWalk(root: root, extensions: Set(extensions.map { $0.lowercased() })).run()
    }

    /// Checks one file: header only (or decoding, with `verify`, or for MPEG); series and tokens files are read.
    public func check(root: String, relative: String) -> Check {
        let full = root + "/" + relative
        if kind != .audio { return checkSequence(full: full, relative: relative) }
        do throws(AudioError) {
            let file: SoundFile
            do { file = try SoundFile(reading: full) } catch {
                let size = (try? FileManager.default.attributesOfItem(atPath: full)[.size] as? Int) ?? nil
                if size == 0 { throw AudioError(.empty, path: full, "0 bytes") }
                throw error
            }
            let info = file.audioInfo
            guard info.channels > 0, info.sampleRate > 0 else {
                throw AudioError(.decode, path: full, "bad header: \(info.channels) channels at \(info.sampleRate) Hz")
            }
            if info.exactFrames && info.frames == 0 { throw AudioError(.empty, path: full, "no audio frames") }
            let n: Int
            if verify || !info.exactFrames {
                n = try file.decode16k(range: nil, quality: quality).count
                if n == 0 { throw AudioError(.empty, path: full, "no audio frames") }
            } else {
                n = info.resampledLength
            }
            let seconds = Double(n) / Double(targetSampleRate)
            if seconds < minSeconds {
                throw AudioError(.tooShort, path: full, String(format: "%.3f s < minimum %.3f s", seconds, minSeconds))
            }
            return .success([n])
        } catch {
            return .failure(AudioError(error.kind, path: relative, error.message))
        }
    }

    /// A series or tokens file: its sequences' lengths (each at least `minLength`).
    func checkSequence(full: String, relative: String) -> Check {
        do throws(AudioError) {
            let lengths: [Int]
            if kind == .series {
                let s = try SequenceFiles.readSeries(path: full, columns: columns)
                if channels != 0 && s.channels != channels {
                    throw AudioError(.format, path: full, "\(s.channels) channels, the corpus has \(channels)")
                }
                lengths = [s.steps]
            } else {
                lengths = try SequenceFiles.tokenLengths(path: full, vocab: vocabulary)
            }
            if let short = lengths.firstIndex(where: { $0 < minLength }) {
                let what = kind == .series ? "steps" : "tokens"
                let which = lengths.count > 1 ? " (record \(short))" : ""
                throw AudioError(.tooShort, path: full, "\(lengths[short]) \(what)\(which) < minimum \(minLength)")
            }
            return .success(lengths)
        } catch {
            return .failure(AudioError(error.kind, path: relative, error.message))
        }
    }

    /// series with `channels` 0: the channel count of the first file (sorted order) that reads.
    public func settled(root: String, scan: CorpusScan) -> CorpusPreparer {
        guard kind == .series, channels == 0 else { return self }
        var p = self
        for f in scan.files {
            if let s = try? SequenceFiles.readSeries(path: root + "/" + f, columns: columns) {
                p.channels = s.channels
                break
            }
        }
        return p
    }

    /// Checks `files[i]` for every i in `indices` on `jobs` threads; the results are in `indices`' order.
    /// `progress(done, total)` is called (under a lock, from any of the threads) after each file.
    public func checkAll(
        root: String, files: [String], indices: [Int],
        progress: (@Sendable (Int, Int) -> Void)? = nil
    ) -> [Check] {
        let total = indices.count
        let lock = NSLock()
        let box = UncheckedBox((results: [Check](repeating: .success([]), count: total), next: 0, done: 0))
        let work: @Sendable () -> Void = {
            while true {
                lock.lock()
                let k = box.value.next
                box.value.next += 1
                lock.unlock()
                if k >= total { return }
                let r = self.check(root: root, relative: files[indices[k]])
                lock.lock()
                box.value.results[k] = r
                box.value.done += 1
                progress?(box.value.done, total)
                lock.unlock()
            }
        }
        let threads = max(1, min(jobs, total))
        let group = DispatchGroup()
        for j in 1..<max(1, threads) {
            group.enter()
            let t = Thread {
                work()
                group.leave()
            }
            t.name = "w2vbert-prepare-\(j)"
            t.stackSize = 1 << 20
            t.start()
        }
        work()
        group.wait()
        return box.value.results
    }

    /// The manifests from the scan and every file's result (in the list's order): the split.
    public func assemble(root: String, scan: CorpusScan, checks: [Check]) -> Result {
        let files = scan.files
        precondition(files.count == checks.count)
        var good = [Manifest.Entry](), skipped = [Skipped]()
        for (rel, c) in zip(files, checks) {
            switch c {
            case .success(let lengths):
                for (i, n) in lengths.enumerated() {
                    let path = lengths.count == 1 ? rel : "\(rel)#\(i)"
                    guard window > 0 && kind == .tokens else {
                        good.append(.init(path: path, samples: n))
                        continue
                    }
                    for w in SequenceFiles.windows(n, length: window, minimum: minLength) {
                        good.append(.init(path: "\(path)@\(w.lowerBound)+\(w.count)", samples: w.count))
                    }
                }
            case .failure(let e): skipped.append(Skipped(path: rel, kind: e.kind, reason: e.reason))
            }
        }
        let nValid = min(good.count, Int((validPercent / 100 * Double(good.count)).rounded()))
        var order = Array(good.indices)
        var rng = RandomStream(seed: seed, step: 0, microBatch: 0xFFFF_FFFF, purpose: .shuffle)
        rng.shuffle(&order)
        var isValid = [Bool](repeating: false, count: good.count)
        for i in order.prefix(nValid) { isValid[i] = true }
        let train = good.indices.filter { !isValid[$0] }.map { good[$0] }
        let valid = good.indices.filter { isValid[$0] }.map { good[$0] }
        var result = Result(
            train: Manifest(root: root, entries: train), valid: Manifest(root: root, entries: valid),
            skipped: skipped, scanned: files.count, duplicates: scan.duplicates)
        var attributes: [String: String] = [:]
        switch kind {
        case .audio: break
        case .series:
            attributes = ["kind": "series", "channels": "\(channels)"]
            if rate > 0 { attributes["rate"] = "\(rate)" }
            if !columns.isEmpty { attributes["columns"] = columns.joined(separator: ",") }
        case .tokens:
            attributes = ["kind": "tokens", "vocab": "vocab.txt"]
            result.vocabulary = vocabulary ?? Self.vocabulary(root: root, manifest: result.train)
        }
        result.train.attributes = attributes
        result.valid.attributes = attributes
        return result
    }

    /// The tokens of a manifest's files by falling count (ties by name).
    static func vocabulary(root: String, manifest m: Manifest) -> TokenVocabulary {
        var counts: [String: Int] = [:]
        var seen = Set<String>()
        for e in m.entries {
            let file = SequenceFiles.splitRecord(e.path).file
            guard seen.insert(file).inserted else { continue }
            try? SequenceFiles.tokenCounts(path: root + "/" + file, into: &counts)
        }
        return TokenVocabulary(
            tokens: counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key))
    }

    /// Scan, check every file (on `jobs` threads), split: one process. `progress(done, total)` as in `checkAll`.
    public func prepare(root: String, progress: (@Sendable (Int, Int) -> Void)? = nil) throws(AudioError) -> Result {
        let absRoot = Self.absoluteRoot(root)
        let found = try scan(root: absRoot)
        let settled = settled(root: absRoot, scan: found)
        let checks = settled.checkAll(
            root: absRoot, files: found.files, indices: Array(found.files.indices),
            progress: progress)
        return settled.assemble(root: absRoot, scan: found, checks: checks)
    }

    // MARK: carrying results between ranks

    /// Bytes of a list of results: per file a tag byte, then the count of lengths (4 bytes) and each length
    /// (8 bytes, all little-endian) or the
    /// kind and message (UTF-8, each NUL-terminated). Paths are not carried (the receiver knows them).
    public static func encodeChecks(_ checks: [Check]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(checks.count * 9)
        for c in checks {
            switch c {
            case .success(let lengths):
                out.append(0)
                withUnsafeBytes(of: UInt32(lengths.count).littleEndian) { out.append(contentsOf: $0) }
                for n in lengths { withUnsafeBytes(of: Int64(n).littleEndian) { out.append(contentsOf: $0) } }
            case .failure(let e):
                out.append(1)
                out.append(contentsOf: Array(e.kind.rawValue.utf8))
                out.append(0)
                out.append(contentsOf: Array(e.message.utf8.filter { $0 != 0 }))
                out.append(0)
            }
        }
        return out
    }

    /// Inverse of `encodeChecks`, naming failures by `paths` (one per result).
    public static func decodeChecks(_ bytes: [UInt8], paths: [String]) throws(AudioError) -> [Check] {
        func malformed(_ message: String) -> AudioError { AudioError(.format, path: "<ranks>", message) }
        var out = [Check]()
        var i = 0
        out.reserveCapacity(paths.count)
        func cString() throws(AudioError) -> String {
            guard let end = bytes[i...].firstIndex(of: 0) else { throw malformed("truncated result record") }
            defer { i = end + 1 }
            return String(decoding: bytes[i..<end], as: UTF8.self)
        }
        for p in paths {
            guard i < bytes.count else { throw malformed("\(paths.count) results expected, \(out.count) received") }
            let tag = bytes[i]
            i += 1
            if tag == 0 {
                guard i + 4 <= bytes.count else { throw malformed("truncated result record") }
                var count: UInt32 = 0
                withUnsafeMutableBytes(of: &count) { $0.copyBytes(from: bytes[i..<(i + 4)]) }
                i += 4
                let n = Int(UInt32(littleEndian: count))
                guard n <= (bytes.count - i) / 8 else { throw malformed("truncated result record") }
                var lengths = [Int]()
                for _ in 0..<n {
                    var v: Int64 = 0
                    withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: bytes[i..<(i + 8)]) }
                    i += 8
                    lengths.append(Int(Int64(littleEndian: v)))
                }
                out.append(.success(lengths))
            } else {
                let kind = try cString()
                let message = try cString()
                guard let k = AudioError.Kind(rawValue: kind) else { throw malformed("unknown error kind '\(kind)'") }
                out.append(.failure(AudioError(k, path: p, message)))
            }
        }
        guard i == bytes.count else {
            throw malformed("\(bytes.count - i) trailing bytes after \(paths.count) results")
        }
        return out
    }
}

/// A reference wrapper the worker threads write their results through (distinct indices, under a lock).
final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ v: T) { value = v }
}
