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

    public static func read(path: String) throws(AudioError) -> Manifest {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AudioError(.unreadable, path: path, "cannot read manifest")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw AudioError(.format, path: path, "manifest is not UTF-8")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard let root = lines.first, !root.isEmpty else {
            throw AudioError(.format, path: path, "line 1: expected the root folder")
        }
        var entries = [Entry]()
        entries.reserveCapacity(lines.count - 1)
        for (i, line) in lines.dropFirst().enumerated() where !line.isEmpty {
            let parts = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard parts.count >= 2, let n = Int(parts[1]), n >= 0, !parts[0].isEmpty else {
                throw AudioError(.format, path: path, "line \(i + 2): expected 'relative/path<TAB>num_samples', got '\(line)'")
            }
            entries.append(Entry(path: String(parts[0]), samples: n))
        }
        return Manifest(root: root, entries: entries)
    }
}
