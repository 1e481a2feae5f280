// Manifests in fairseq's wav2vec TSV format (fairseq/examples/wav2vec/wav2vec_manifest.py):
//   line 1:   root folder (absolute)
//   then:     relative/path<TAB>num_samples
// num_samples counts 16 kHz mono samples after this package's decoding and resampling (so it is exactly
// what the loader will get), not the file's own frame count as fairseq writes it.
//
// `CorpusPreparer` builds train.tsv / valid.tsv from a folder: it scans recursively (sorted, so the result
// does not depend on the file system's order), opens and fully decodes every file, and skips with a reason
// files that are unreadable, empty, or shorter than `minSeconds`. The valid split is deterministic: the
// sorted list is shuffled by RandomStream(seed, step 0, micro-batch 0xFFFF_FFFF, .shuffle) and the first
// round(validPercent/100 · n) files go to valid (the rest keep their sorted order in train.tsv).

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
            // An utterance of more than 2^31 − 1 samples (37 h at 16 kHz) is damage, and larger counts would
            // overflow the 32-bit random crop offsets of the data order.
            guard n <= Int(Int32.max) else {
                throw AudioError(.format, path: path, "line \(i + 2): num_samples \(n) exceeds 2147483647 (37 h at 16 kHz)")
            }
            entries.append(Entry(path: String(parts[0]), samples: n))
        }
        return Manifest(root: root, entries: entries)
    }
}

/// Scans a folder into train/valid manifests (`w2vbert prepare`).
public struct CorpusPreparer: Sendable {
    public var extensions: [String] = ["wav", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "au", "w64", "caf"]
    public var minSeconds: Double = 0.5
    public var validPercent: Double = 2
    public var seed: UInt64 = 1
    public var quality: ResampleQuality = .medium
    public init() {}

    public struct Skipped: Sendable, Equatable {
        public let path: String       // relative to the root
        public let kind: AudioError.Kind
        public let reason: String
    }

    public struct Result: Sendable {
        public var train: Manifest
        public var valid: Manifest
        public var skipped: [Skipped]
        public var scanned: Int
        public var hours: Double { train.hours + valid.hours }
    }

    /// Relative paths of the audio files under root (sorted, extensions matched case-insensitively).
    public func scan(root: String) throws(AudioError) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw AudioError(.unreadable, path: root, "not a folder")
        }
        // Own walk instead of FileManager.enumerator: it follows symbolic links to folders (the corpus
        // script links the wanted subfolders into one root); real paths already visited are skipped.
        let fm = FileManager.default
        let exts = Set(extensions.map { $0.lowercased() })
        var out = [String](), visited = Set<String>(), stack = [""]
        while let rel = stack.popLast() {
            let dir = rel.isEmpty ? root : root + "/" + rel
            let real = (dir as NSString).resolvingSymlinksInPath
            if !visited.insert(real).inserted { continue }
            guard let names = try? fm.contentsOfDirectory(atPath: dir) else {
                if rel.isEmpty { throw AudioError(.unreadable, path: root, "cannot list folder") }
                continue
            }
            for name in names where !name.hasPrefix(".") {
                let child = rel.isEmpty ? name : rel + "/" + name
                var d: ObjCBool = false
                guard fm.fileExists(atPath: root + "/" + child, isDirectory: &d) else { continue }
                if d.boolValue { stack.append(child) } else if exts.contains((name as NSString).pathExtension.lowercased()) {
                    out.append(child)
                }
            }
        }
        return out.sorted()
    }

    /// Opens and decodes one file: its 16 kHz length, or why it is skipped.
    public func check(root: String, relative: String) -> Swift.Result<Int, AudioError> {
        let full = root + "/" + relative
        let size = (try? FileManager.default.attributesOfItem(atPath: full)[.size] as? Int) ?? nil
        if size == 0 { return .failure(AudioError(.empty, path: relative, "0 bytes")) }
        do {
            let samples = try AudioDecoder.load(path: full, quality: quality)
            let seconds = Double(samples.count) / Double(targetSampleRate)
            if seconds < minSeconds {
                return .failure(AudioError(.tooShort, path: relative,
                                           String(format: "%.3f s < minimum %.3f s", seconds, minSeconds)))
            }
            return .success(samples.count)
        } catch {
            return .failure(AudioError(error.kind, path: relative, error.message))
        }
    }

    /// Scan, check every file, split. `progress` is called after each file (index, count).
    public func prepare(root: String, progress: ((Int, Int) -> Void)? = nil) throws(AudioError) -> Result {
        let absRoot = URL(fileURLWithPath: root).standardizedFileURL.path
        let files = try scan(root: absRoot)
        var good = [Manifest.Entry](), skipped = [Skipped]()
        for (i, rel) in files.enumerated() {
            switch check(root: absRoot, relative: rel) {
            case .success(let n): good.append(.init(path: rel, samples: n))
            case .failure(let e): skipped.append(Skipped(path: rel, kind: e.kind, reason: e.reason))
            }
            progress?(i + 1, files.count)
        }
        let nValid = min(good.count, Int((validPercent / 100 * Double(good.count)).rounded()))
        var order = Array(good.indices)
        var rng = RandomStream(seed: seed, step: 0, microBatch: 0xFFFF_FFFF, purpose: .shuffle)
        rng.shuffle(&order)
        let validSet = Set(order.prefix(nValid))
        let train = good.indices.filter { !validSet.contains($0) }.map { good[$0] }
        let valid = good.indices.filter { validSet.contains($0) }.map { good[$0] }
        return Result(train: Manifest(root: absRoot, entries: train), valid: Manifest(root: absRoot, entries: valid),
                      skipped: skipped, scanned: files.count)
    }
}
