// Manifests in fairseq's wav2vec TSV format (fairseq/examples/wav2vec/wav2vec_manifest.py):
//   line 1:   root folder (absolute)[<TAB>key=value]...
//             (attributes of other kinds than audio: kind=series|tokens, channels=C, columns=a,b,c, rate=HZ,
//             vocab=FILE; an audio manifest has none, as fairseq writes it)
//   then:     relative/path<TAB>num_samples[<TAB>speaker]
// The optional third column (hyper-lora's `adapter.speaker = table`) is a speaker label; rows
// without it are "unknown speaker". Labels are interned: `speakerLabels` (sorted, distinct) and per entry
// an index into them (−1: unknown), kept only when some row has a label.
// num_samples counts 16 kHz mono samples after this package's decoding and resampling (so it is exactly
// what the loader will get), not the file's own frame count as fairseq writes it.
// `CorpusPreparer` (Prepare.swift) writes them.

import Foundation
import Tensor

public struct Manifest: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var path: String  // relative to root
        public var samples: Int  // 16 kHz samples
        public init(path: String, samples: Int) {
            self.path = path
            self.samples = samples
        }
    }
    public var root: String
    public var entries: [Entry]
    /// Line 1's `key=value` fields after the root (empty for audio).
    public var attributes: [String: String] = [:]
    /// What the entries are: `kind=` of line 1 (audio when absent). num_samples counts 16 kHz samples (audio),
    /// time steps (series) or tokens (tokens).
    public var kind: SequenceKind { attributes["kind"].flatMap(SequenceKind.init(rawValue:)) ?? .audio }
    /// The distinct speaker labels, sorted (empty: the manifest has no speaker column).
    public private(set) var speakerLabels: [String] = []
    /// Per entry, its index into `speakerLabels` or −1 (unknown); empty when `speakerLabels` is.
    public private(set) var speakers: [Int32] = []

    public init(root: String, entries: [Entry]) {
        self.root = root
        self.entries = entries
    }

    /// With speaker labels: `labels[i]` the label of entry i (nil: unknown), interned and sorted.
    public init(root: String, entries: [Entry], labels: [String?]) {
        precondition(labels.count == entries.count, "one label (or nil) per entry")
        self.root = root
        self.entries = entries
        let distinct = Set(labels.compactMap { $0 })
        if distinct.isEmpty { return }
        speakerLabels = distinct.sorted()
        var index: [String: Int32] = [:]
        for (i, l) in speakerLabels.enumerated() { index[l] = Int32(i) }
        speakers = labels.map { $0.flatMap { index[$0] } ?? -1 }
    }

    /// The manifest has a speaker column (some row has a label).
    public var hasSpeakers: Bool { !speakerLabels.isEmpty }

    /// Entry i's speaker label index (−1: unknown).
    public func speaker(_ i: Int) -> Int32 { speakers.isEmpty ? -1 : speakers[i] }

    /// The same manifest with its speaker indices pointing into `labels` (e.g. a run's speaker table);
    /// labels not in `labels` become unknown (−1).
    public func relabelled(to labels: [String]) -> Manifest {
        var m = self
        m.speakerLabels = labels
        if labels.isEmpty || speakers.isEmpty {
            m.speakers = []
            return m
        }
        var index: [String: Int32] = [:]
        for (i, l) in labels.enumerated() { index[l] = Int32(i) }
        let map = speakerLabels.map { index[$0] ?? -1 }
        m.speakers = speakers.map { $0 < 0 ? -1 : map[Int($0)] }
        return m
    }

    public var count: Int { entries.count }
    public var totalSamples: Int { entries.reduce(0) { $0 + $1.samples } }
    public var hours: Double { Double(totalSamples) / Double(targetSampleRate) / 3600 }

    /// Absolute path of entry i.
    public func fullPath(_ i: Int) -> String {
        let p = entries[i].path
        if p.hasPrefix("/") { return p }
        return root.hasSuffix("/") ? root + p : root + "/" + p
    }

    public func encoded() -> String {
        var s = root
        for k in attributes.keys.sorted() { s += "\t\(k)=\(attributes[k]!)" }
        s += "\n"
        for (i, e) in entries.enumerated() {
            let k = speaker(i)
            s += k < 0 ? "\(e.path)\t\(e.samples)\n" : "\(e.path)\t\(e.samples)\t\(speakerLabels[Int(k)])\n"
        }
        return s
    }

    public func write(to path: String) throws(AudioError) {
        do { try encoded().write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw AudioError(.io, path: path, error.localizedDescription)
        }
    }

    /// Parses the bytes in one pass (no per-line Strings besides each entry's path), so a manifest of
    /// millions of lines takes about its file size plus ~24 bytes per entry (paths ≤ 15 bytes are stored
    /// inline by String; longer ones add their length), plus 4 bytes per entry and one String per distinct
    /// label when the speaker column is present. Errors name the line.
    public static func read(path: String) throws(AudioError) -> Manifest {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AudioError(.unreadable, path: path, "cannot read manifest")
        }
        // Pure ASCII (the usual case) is valid UTF-8; otherwise validate once.
        let ascii = data.withUnsafeBytes { raw in !raw.contains { $0 >= 0x80 } }
        if !ascii && String(data: data, encoding: .utf8) == nil {
            throw AudioError(.format, path: path, "manifest is not UTF-8")
        }
        do { return try parse(data, path: path) } catch let e as AudioError { throw e } catch {
            throw AudioError(.format, path: path, "\(error)")
        }
    }

    static func parse(_ data: Data, path: String) throws -> Manifest {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> Manifest in
            let b = raw.bindMemory(to: UInt8.self)
            let n = b.count
            var i = 0, lineNo = 0
            var root = ""
            var entries = [Entry]()
            entries.reserveCapacity(max(0, n / 24))
            var labels = SpeakerInterner()
            var attributes: [String: String] = [:]
            while i < n {
                var e = i
                while e < n && b[e] != 0x0A { e += 1 }
                lineNo += 1
                var end = e
                if end > i && b[end - 1] == 0x0D { end -= 1 }  // tolerate CRLF
                if lineNo == 1 {
                    let fields = String(decoding: UnsafeBufferPointer(rebasing: b[i..<end]), as: UTF8.self)
                        .split(separator: "\t", omittingEmptySubsequences: false)
                    root = String(fields[0])
                    for f in fields.dropFirst() {
                        guard let eq = f.firstIndex(of: "="), eq != f.startIndex else {
                            throw AudioError(
                                .format, path: path, "line 1: expected key=value after the root, got '\(f)'")
                        }
                        attributes[String(f[..<eq])] = String(f[f.index(after: eq)...])
                    }
                    if let k = attributes["kind"], SequenceKind(rawValue: k) == nil {
                        throw AudioError(.format, path: path, "line 1: kind=\(k) is not audio, series or tokens")
                    }
                } else if end > i {
                    let (entry, label) = try parseRow(b, i, end, lineNo: lineNo, path: path)
                    if let label {
                        labels.add(
                            String(decoding: UnsafeBufferPointer(rebasing: b[label]), as: UTF8.self),
                            entry: entries.count)
                    }
                    entries.append(entry)
                }
                i = e + 1
            }
            guard !root.isEmpty else { throw AudioError(.format, path: path, "line 1: expected the root folder") }
            var m = Manifest(root: root, entries: entries)
            m.attributes = attributes
            (m.speakerLabels, m.speakers) = labels.finish(count: entries.count)
            return m
        }
    }

    /// One row `path<TAB>num_samples[<TAB>speaker]` of bytes i..<end: the entry and the label's byte range.
    static func parseRow(
        _ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, lineNo: Int, path: String
    ) throws -> (Entry, Range<Int>?) {
        var tab = i
        while tab < end && b[tab] != 0x09 { tab += 1 }
        var value = 0, digits = 0, k = tab + 1
        while k < end && b[k] >= 0x30 && b[k] <= 0x39 && digits < 18 {
            value = value * 10 + Int(b[k] - 0x30)
            digits += 1
            k += 1
        }
        // (tab == end: no tab, k is past the line and must not be read — found by fuzzing)
        let okEnd = tab < end && (k == end || b[k] == 0x09)
        guard tab > i, tab < end, digits > 0, okEnd else {
            let line = String(decoding: UnsafeBufferPointer(rebasing: b[i..<end]), as: UTF8.self)
            throw AudioError(
                .format, path: path,
                "line \(lineNo): expected 'relative/path<TAB>num_samples[<TAB>speaker]', got '\(line)'")
        }
        // found by fuzzing: More than 2^31 − 1 samples (37 h at 16 kHz) is damage, and larger
        // counts would overflow the 32-bit random crop offsets of the data order.
        guard value <= Int(Int32.max) else {
            throw AudioError(
                .format, path: path, "line \(lineNo): num_samples \(value) exceeds 2147483647 (37 h at 16 kHz)")
        }
        let entry = Entry(
            path: String(decoding: UnsafeBufferPointer(rebasing: b[i..<tab]), as: UTF8.self), samples: value)
        guard k < end else { return (entry, nil) }
        // The speaker column: up to the next tab (further columns are ignored); empty = unknown; not space-padded
        // (" m" and "m" would silently be two speakers).
        var stop = k + 1
        while stop < end && b[stop] != 0x09 { stop += 1 }
        let label = (k + 1)..<stop
        if label.isEmpty { return (entry, nil) }
        guard b[label.lowerBound] != 0x20 && b[label.upperBound - 1] != 0x20 else {
            let text = String(decoding: UnsafeBufferPointer(rebasing: b[label]), as: UTF8.self)
            throw AudioError(
                .format, path: path,
                "line \(lineNo): speaker label '\(text)' (the third column) starts or ends with a space")
        }
        return (entry, label)
    }
}

/// Interns speaker labels while parsing: each distinct label once, each labelled entry a 4-byte index.
struct SpeakerInterner {
    var index: [String: Int32] = [:]
    var labels: [String] = []
    var speakers: [Int32] = []  // per entry, first-seen order; filled lazily at the first label

    mutating func add(_ label: String, entry: Int) {
        let k: Int32
        if let j = index[label] {
            k = j
        } else {
            k = Int32(labels.count)
            index[label] = k
            labels.append(label)
        }
        if speakers.count < entry { speakers.append(contentsOf: repeatElement(-1, count: entry - speakers.count)) }
        speakers.append(k)
    }

    /// Sorted labels and the entries' indices into them (both empty when no row had a label).
    func finish(count: Int) -> ([String], [Int32]) {
        if labels.isEmpty { return ([], []) }
        let order = labels.indices.sorted { labels[$0] < labels[$1] }
        var rank = [Int32](repeating: 0, count: labels.count)
        for (r, j) in order.enumerated() { rank[j] = Int32(r) }
        var out = speakers.map { $0 < 0 ? -1 : rank[Int($0)] }
        out.append(contentsOf: repeatElement(-1, count: count - out.count))
        return (order.map { labels[$0] }, out)
    }
}
