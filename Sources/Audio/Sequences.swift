// Sequences other than audio (docs/sequences.md): what `prepare`, the loader and `embed` read for the
// `series` and `tokens` kinds.
//   series: one sequence per file, [T, C] values — `.npy` (float32 or float64, shape [T, C] or [T]) or `.csv`
//           with a header row naming the columns (a chosen subset, by name, in the given order). Empty cells and
//           NaN/nan/NA are missing values (NaN). Normalised per channel with the training corpus' statistics.
//   tokens: `.fasta`/`.fa`/`.fna` (one sequence per record: every letter of the record's lines is a token,
//           ASCII letters upper-cased) or any other extension as text (every whitespace-separated field is a
//           token, across lines). Token ids come from a vocabulary file (one token per line, the first field;
//           id = line index among the non-empty lines).
// A manifest entry names a FASTA record as `path#i` (record i, 0-based) when the file holds more than one, and
// a window of a sequence (`prepare --window`) as `path[#i]@start+length`.
// Errors name the file and, where there is one, the line.

import Foundation

/// What a manifest's sequences are (`data.kind` of the run).
public enum SequenceKind: String, Sendable, CaseIterable { case audio, series, tokens }

/// The vocabulary of a `tokens` corpus: id = position.
public struct TokenVocabulary: Sendable, Equatable {
    public let tokens: [String]
    let index: [String: Int32]
    public init(tokens: [String]) {
        self.tokens = tokens
        var index: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() where index[t] == nil { index[t] = Int32(i) }
        self.index = index
    }
    public var count: Int { tokens.count }
    public func id(_ token: String) -> Int32? { index[token] }

    /// One token per non-empty line (its first whitespace-separated field); a repeated token is an error.
    public static func read(path: String) throws(AudioError) -> TokenVocabulary {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else { throw AudioError(.unreadable, path: path, "cannot read the vocabulary (UTF-8 text)") }
        var tokens = [String](), seen = Set<String>()
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard let t = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).first else { continue }
            let token = String(t)
            guard seen.insert(token).inserted else {
                throw AudioError(.format, path: path, "line \(n + 1): token '\(token)' is listed twice")
            }
            tokens.append(token)
        }
        guard tokens.count >= 2 else {
            throw AudioError(.format, path: path, "a vocabulary needs at least 2 tokens, found \(tokens.count)")
        }
        return TokenVocabulary(tokens: tokens)
    }

    public func write(to path: String) throws(AudioError) {
        do { try (tokens.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8) } catch
        {
            throw AudioError(.io, path: path, error.localizedDescription)
        }
    }
}

/// How the files of a `series` corpus are read: the channels (CSV columns by name; empty = all) and the
/// per-channel normalisation (empty = none).
public struct SeriesFormat: Sendable, Equatable {
    public var columns: [String] = []
    public var mean: [Float] = []
    public var std: [Float] = []
    public init(columns: [String] = [], mean: [Float] = [], std: [Float] = []) {
        self.columns = columns
        self.mean = mean
        self.std = std
    }
}

/// How a loader turns a manifest entry into input rows [T, width].
public enum SequenceFormat: Sendable, Equatable {
    case audio
    case series(SeriesFormat, channels: Int)
    case tokens(TokenVocabulary)
    /// Values per input frame.
    public var width: Int {
        switch self {
        case .audio: return 80
        case .series(_, let c): return c
        case .tokens: return 1
        }
    }
}

extension SequenceFormat {
    /// A series or tokens file (for tokens also a record or a window, `file[#i][@start+length]`) as the model's
    /// input rows [T, width]: a series checked against the run's channel count and normalised (NaN kept),
    /// tokens as their ids.
    public func rows(_ path: String) throws(AudioError) -> [Float] {
        switch self {
        case .audio: preconditionFailure("audio rows come from the decoder and the fbank")
        case .series(let f, let channels):
            let s = try SequenceFiles.readSeries(path: path, columns: f.columns)
            guard s.channels == channels else {
                throw AudioError(.format, path: path, "\(s.channels) channels, the run has \(channels)")
            }
            var v = s.values
            SequenceFiles.normalise(&v, channels: channels, mean: f.mean, std: f.std)
            return v
        case .tokens(let vocab):
            return try SequenceFiles.readEntry(path, vocab: vocab).map { Float($0) }
        }
    }
}

/// A series read from a file: `values` [steps, channels], NaN where missing.
public struct SeriesData: Sendable {
    public var values: [Float]
    public var steps: Int
    public var channels: Int
}

public enum SequenceFiles {
    public static let seriesExtensions = ["npy", "csv"]
    public static let tokenExtensions = ["fasta", "fa", "fna", "txt", "tok"]
    static func isFasta(_ path: String) -> Bool {
        ["fasta", "fa", "fna"].contains((path as NSString).pathExtension.lowercased())
    }

    /// A manifest path `file[#i][@start+length]` → (file, record i or nil, the window or nil).
    public static func splitRecord(_ path: String) -> (file: String, record: Int?, window: Range<Int>?) {
        var rest = Substring(path)
        var window: Range<Int>? = nil
        if let at = rest.lastIndex(of: "@") {
            let spec = rest[rest.index(after: at)...].split(separator: "+", omittingEmptySubsequences: false)
            if spec.count == 2, let s = Int(spec[0]), let n = Int(spec[1]), s >= 0, n >= 1 {
                window = s..<(s + n)
                rest = rest[..<at]
            }
        }
        guard let h = rest.lastIndex(of: "#"), let r = Int(rest[rest.index(after: h)...]), r >= 0 else {
            return (String(rest), nil, window)
        }
        return (String(rest[..<h]), r, window)
    }

    /// The tokens of a manifest entry or `embed` argument (`file[#i][@start+length]`) as ids of `vocab`.
    public static func readEntry(_ path: String, vocab: TokenVocabulary?) throws(AudioError) -> [Int32] {
        let (file, record, window) = splitRecord(path)
        let ids = try readTokens(path: file, record: record, vocab: vocab)
        guard let window else { return ids }
        guard window.upperBound <= ids.count else {
            throw AudioError(
                .tooShort, path: path, "the window ends at \(window.upperBound), the sequence has \(ids.count)")
        }
        return Array(ids[window])
    }

    /// Windows of `length` (the last one shorter, if at least `minimum`) of a sequence of n tokens.
    public static func windows(_ n: Int, length: Int, minimum: Int) -> [Range<Int>] {
        stride(from: 0, to: n, by: length).map { $0..<min(n, $0 + length) }.filter { $0.count >= minimum }
    }

    static func contents(_ path: String) throws(AudioError) -> Data {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw AudioError(.unreadable, path: path, "cannot read file")
        }
        if d.isEmpty { throw AudioError(.empty, path: path, "0 bytes") }
        return d
    }

    // MARK: series

    /// Reads a `.npy` or `.csv` series; `columns` picks CSV columns by name (empty: all; ignored for .npy).
    public static func readSeries(path: String, columns: [String] = []) throws(AudioError) -> SeriesData {
        if (path as NSString).pathExtension.lowercased() == "npy" {
            let a = try Npy.decode(try contents(path), path: path)
            guard a.shape.count == 1 || a.shape.count == 2 else {
                throw AudioError(.format, path: path, "a series is [T, C] or [T], got shape \(a.shape)")
            }
            let c = a.shape.count == 2 ? a.shape[1] : 1
            guard a.shape[0] > 0, c > 0 else {
                throw AudioError(.empty, path: path, "shape \(a.shape) holds no values")
            }
            return SeriesData(values: a.data, steps: a.shape[0], channels: c)
        }
        return try readCSV(path: path, columns: columns)
    }

    static func readCSV(path: String, columns: [String]) throws(AudioError) -> SeriesData {
        guard let text = String(data: try contents(path), encoding: .utf8) else {
            throw AudioError(.format, path: path, "not UTF-8 text")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? $0.dropLast() : $0
        }
        while let l = lines.last, l.isEmpty { lines.removeLast() }
        guard let headerLine = lines.first else { throw AudioError(.empty, path: path, "no header row") }
        let header = headerLine.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        let picked: [Int]
        if columns.isEmpty {
            picked = Array(header.indices)
        } else {
            picked = try columns.map { (name: String) throws(AudioError) -> Int in
                guard let i = header.firstIndex(of: name) else {
                    throw AudioError(
                        .format, path: path,
                        "line 1: no column '\(name)' (the header has \(header.joined(separator: ", ")))")
                }
                return i
            }
        }
        let c = picked.count
        var values = [Float]()
        values.reserveCapacity((lines.count - 1) * c)
        var steps = 0
        for (n, line) in lines.enumerated().dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count == header.count else {
                throw AudioError(
                    .format, path: path, "line \(n + 1): \(fields.count) fields, the header has \(header.count)")
            }
            for i in picked {
                let cell = fields[i].trimmingCharacters(in: .whitespaces)
                if cell.isEmpty || cell == "NaN" || cell == "nan" || cell == "NA" {
                    values.append(.nan)
                } else if let v = Float(cell), v.isFinite {
                    values.append(v)
                } else {
                    throw AudioError(
                        .format, path: path, "line \(n + 1), column '\(header[i])': '\(cell)' is not a finite number")
                }
            }
            steps += 1
        }
        guard steps > 0 else { throw AudioError(.empty, path: path, "no rows after the header") }
        return SeriesData(values: values, steps: steps, channels: c)
    }

    /// Normalises in place: (x − mean[c]) / std[c]; NaN stays NaN.
    public static func normalise(_ v: inout [Float], channels c: Int, mean: [Float], std: [Float]) {
        guard !mean.isEmpty else { return }
        for i in v.indices { v[i] = (v[i] - mean[i % c]) / std[i % c] }
    }

    // MARK: tokens

    /// One sequence of a tokens file: the FASTA record `record` (nil: the only one, or text), as ids of `vocab`
    /// (nil: only counted — every id 0).
    public static func readTokens(path: String, record: Int?, vocab: TokenVocabulary?) throws(AudioError) -> [Int32] {
        if isFasta(path) {
            let records = try fasta(path: path, vocab: vocab, only: record ?? 0)
            guard let r = records.first else {
                throw AudioError(.format, path: path, "no record \(record ?? 0) (the file has fewer)")
            }
            return r
        }
        guard let text = String(data: try contents(path), encoding: .utf8) else {
            throw AudioError(.format, path: path, "not UTF-8 text")
        }
        var out = [Int32]()
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            for field in line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }) {
                guard let vocab else {
                    out.append(0)
                    continue
                }
                guard let id = vocab.id(String(field)) else {
                    throw AudioError(.format, path: path, "line \(n + 1): token '\(field)' is not in the vocabulary")
                }
                out.append(id)
            }
        }
        if out.isEmpty { throw AudioError(.empty, path: path, "no tokens") }
        return out
    }

    /// Lengths of every sequence of a tokens file (one per FASTA record; one for text), checking each
    /// token against `vocab` when given.
    public static func tokenLengths(path: String, vocab: TokenVocabulary?) throws(AudioError) -> [Int] {
        if isFasta(path) { return try fasta(path: path, vocab: vocab, only: nil).map(\.count) }
        return [try readTokens(path: path, record: nil, vocab: vocab).count]
    }

    /// Every ASCII character as a token, id = its code: what `fasta` reads letters through when counting.
    static let ascii = TokenVocabulary(tokens: (0..<128).map { String(UnicodeScalar(UInt8($0))) })

    /// Counts of every token in a tokens file (for building a vocabulary). FASTA letters are read by the same
    /// scanner as for training, so the vocabulary holds exactly the tokens the loader will meet.
    public static func tokenCounts(path: String, into counts: inout [String: Int]) throws(AudioError) {
        if isFasta(path) {
            for record in try fasta(path: path, vocab: ascii, only: nil) {
                for id in record { counts[ascii.tokens[Int(id)], default: 0] += 1 }
            }
        } else {
            guard let text = String(data: try contents(path), encoding: .utf8) else {
                throw AudioError(.format, path: path, "not UTF-8 text")
            }
            for field in text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }) {
                counts[String(field), default: 0] += 1
            }
        }
    }

    /// The records of a FASTA file (or only record `only`), as ids. A record without sequence is an error
    /// naming its header line.
    static func fasta(path: String, vocab: TokenVocabulary?, only: Int?) throws(AudioError) -> [[Int32]] {
        let d = try contents(path)
        var out = [[Int32]]()
        var current: [Int32]? = nil
        var header = (line: 0, name: "")
        var index = -1
        func finish() throws(AudioError) {
            guard let c = current else { return }
            guard !c.isEmpty else {
                throw AudioError(
                    .format, path: path, "line \(header.line): record '\(header.name)' has no sequence")
            }
            out.append(c)
            current = nil
        }
        let b = [UInt8](d)
        parse: do {
            var i = 0, lineNo = 0
            while i < b.count {
                var e = i
                while e < b.count && b[e] != 0x0A { e += 1 }
                lineNo += 1
                defer { i = e + 1 }
                if i < e && b[i] == UInt8(ascii: ">") {
                    if only == nil || index == only! { try finish() }
                    index += 1
                    if let only, index > only { break parse }
                    header = (lineNo, String(decoding: b[(i + 1)..<e], as: UTF8.self))
                    if only == nil || index == only! { current = [] }
                    continue
                }
                if i < e && b[i] == UInt8(ascii: ";") { continue }  // old-style comment
                if index < 0 {
                    if (i..<e).allSatisfy({ b[$0] == 0x20 || b[$0] == 0x09 || b[$0] == 0x0D }) { continue }
                    throw AudioError(.format, path: path, "line \(lineNo): sequence before the first '>' header")
                }
                guard current != nil else { continue }
                for k in i..<e {
                    var ch = b[k]
                    if ch == 0x20 || ch == 0x09 || ch == 0x0D { continue }
                    if ch >= 0x61 && ch <= 0x7A { ch -= 0x20 }  // upper case
                    guard let vocab else {
                        current!.append(0)
                        continue
                    }
                    let token = String(UnicodeScalar(ch))
                    guard ch < 0x80, let id = vocab.id(token) else {
                        throw AudioError(
                            .format, path: path,
                            "line \(lineNo): token '\(ch < 0x80 ? token : "byte \(ch)")' is not in the vocabulary")
                    }
                    current!.append(id)
                }
            }
        }
        if only == nil || index == only! { try finish() }
        if index < 0 { throw AudioError(.format, path: path, "no FASTA record (no line starting with '>')") }
        return out
    }
}
