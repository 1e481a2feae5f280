// Manifests in fairseq's wav2vec TSV format (fairseq/examples/wav2vec/wav2vec_manifest.py):
//   line 1:   root folder (absolute)
//   then:     relative/path<TAB>num_samples
// num_samples counts 16 kHz mono samples after this package's decoding and resampling (so it is exactly
// what the loader will get), not the file's own frame count as fairseq writes it.
// `CorpusPreparer` (Prepare.swift) writes them.

import Foundation
import Tensor

public struct Manifest: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var path: String      // relative to root
        public var samples: Int      // 16 kHz samples
        public init(path: String, samples: Int) { self.path = path; self.samples = samples }
    }
    public var root: String
    public var entries: [Entry]

    public init(root: String, entries: [Entry]) {
        self.root = root
        self.entries = entries
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
        var s = root + "\n"
        for e in entries { s += "\(e.path)\t\(e.samples)\n" }
        return s
    }

    public func write(to path: String) throws(AudioError) {
        do { try encoded().write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw AudioError(.io, path: path, error.localizedDescription)
        }
    }

    /// Parses the bytes in one pass (no per-line Strings besides each entry's path), so a manifest of
    /// millions of lines takes about its file size plus ~24 bytes per entry (paths ≤ 15 bytes are stored
    /// inline by String; longer ones add their length). Errors name the line.
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
            while i < n {
                var e = i
                while e < n && b[e] != 0x0A { e += 1 }
                lineNo += 1
                var end = e
                if end > i && b[end - 1] == 0x0D { end -= 1 }   // tolerate CRLF
                if lineNo == 1 {
                    root = String(decoding: UnsafeBufferPointer(rebasing: b[i..<end]), as: UTF8.self)
                } else if end > i {
                    var tab = i
                    while tab < end && b[tab] != 0x09 { tab += 1 }
                    var value = 0, digits = 0, k = tab + 1
                    while k < end && b[k] >= 0x30 && b[k] <= 0x39 && digits < 18 {
                        value = value * 10 + Int(b[k] - 0x30); digits += 1; k += 1
                    }
                    // a third column (fairseq never writes one) is ignored, as before
                    // (tab == end: no tab, k is past the line and must not be read — found by fuzzing, issue 11)
                    let okEnd = tab < end && (k == end || b[k] == 0x09)
                    guard tab > i, tab < end, digits > 0, okEnd else {
                        let line = String(decoding: UnsafeBufferPointer(rebasing: b[i..<end]), as: UTF8.self)
                        throw AudioError(.format, path: path, "line \(lineNo): expected 'relative/path<TAB>num_samples', got '\(line)'")
                    }
                    // Issue 11 (found by fuzzing): more than 2^31 − 1 samples (37 h at 16 kHz) is damage, and larger
                    // counts would overflow the 32-bit random crop offsets of the data order.
                    guard value <= Int(Int32.max) else {
                        throw AudioError(.format, path: path, "line \(lineNo): num_samples \(value) exceeds 2147483647 (37 h at 16 kHz)")
                    }
                    entries.append(Entry(path: String(decoding: UnsafeBufferPointer(rebasing: b[i..<tab]), as: UTF8.self), samples: value))
                }
                i = e + 1
            }
            guard !root.isEmpty else { throw AudioError(.format, path: path, "line 1: expected the root folder") }
            return Manifest(root: root, entries: entries)
        }
    }
}
