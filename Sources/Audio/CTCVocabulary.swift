// The letter vocabulary of CTC fine-tuning and its file, fairseq's `dict.ltr.txt`.
//
// Output ids: 0 = the CTC blank, then the symbols in the order of the file: id i + 1 = the symbol on line i + 1.
// A built vocabulary puts the word boundary `|` first (id 1) and then the other symbols by descending count
// (ties by code point). Symbols are single Unicode scalars of normalised text (`TranscriptText`); a space in
// the text is `|`. No `|` is added at the end of a transcript.
//
// The file lists only these symbols, one `SYMBOL COUNT` per line, like fairseq's letter dictionaries: fairseq
// itself prepends <s> <pad> </s> <unk> (ids 0-3, <s> serving as its CTC blank) and so numbers the file's first
// symbol 4, where this vocabulary numbers it 1; the file is the same, the ids differ by 3. A fairseq flag after
// the count (`#fairseq:overwrite`) is accepted and ignored; fairseq's special symbols in the file are refused.

import Foundation

public struct CTCVocabulary: Sendable, Equatable {
    /// The id of the CTC blank.
    public static let blank: Int32 = 0
    /// The word boundary symbol (a space in normalised text).
    public static let boundary: Unicode.Scalar = "|"

    /// symbols[i] has id i + 1.
    public let symbols: [Unicode.Scalar]
    /// How often each symbol occurred in the transcripts it was built from (as read back from the file).
    public let counts: [Int]
    private let ids: [Unicode.Scalar: Int32]

    /// The number of outputs a CTC head needs: the blank plus the symbols.
    public var size: Int { symbols.count + 1 }

    /// symbols and counts in id order (id 1 first); symbols distinct, none of them whitespace.
    public init(symbols: [Unicode.Scalar], counts: [Int]) {
        precondition(symbols.count == counts.count, "one count per symbol")
        self.symbols = symbols
        self.counts = counts
        var ids: [Unicode.Scalar: Int32] = [:]
        for (i, s) in symbols.enumerated() {
            precondition(ids[s] == nil && !s.properties.isWhitespace, "symbol '\(s)' repeated or white space")
            ids[s] = Int32(i + 1)
        }
        self.ids = ids
    }

    public static func == (a: CTCVocabulary, b: CTCVocabulary) -> Bool {
        a.symbols == b.symbols && a.counts == b.counts
    }

    /// The id of `symbol` (nil: not in the vocabulary).
    public func id(of symbol: Unicode.Scalar) -> Int32? { ids[symbol] }

    /// Built from normalised transcripts: `|` first, then every other scalar by descending count.
    public static func build<S: Sequence>(from transcripts: S) -> CTCVocabulary where S.Element == String {
        var counts: [Unicode.Scalar: Int] = [boundary: 0]
        for text in transcripts {
            for c in text.unicodeScalars { counts[c == " " ? boundary : c, default: 0] += 1 }
        }
        let others = counts.keys.filter { $0 != boundary }.sorted {
            counts[$0]! != counts[$1]! ? counts[$0]! > counts[$1]! : $0.value < $1.value
        }
        let symbols = [boundary] + others
        return CTCVocabulary(symbols: symbols, counts: symbols.map { counts[$0]! })
    }

    /// The ids of normalised `text` (a space is `|`). `path`, `line`: where the text came from, for the error
    /// naming a character that is not in the vocabulary.
    public func encode(_ text: String, path: String, line: Int) throws(TranscriptError) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for c in text.unicodeScalars {
            let symbol = c == " " ? CTCVocabulary.boundary : c
            guard let id = ids[symbol] else {
                let what = c == " " ? "a word boundary (space), but '|'" : "character '\(c)' (\(codePoint(c)))"
                throw TranscriptError(path: path, line: line, "\(what) is not in the dictionary")
            }
            out.append(id)
        }
        return out
    }

    /// Text from ids: blanks dropped, `|` as a space, runs of spaces as one, no leading or trailing space.
    /// Every id must be in 0..<size.
    public func decode<C: Collection>(_ tokens: C) -> String where C.Element == Int32 {
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for id in tokens where id != CTCVocabulary.blank {
            precondition(id > 0 && Int(id) < size, "CTC id \(id) outside 0..<\(size)")
            let s = symbols[Int(id) - 1]
            if s == CTCVocabulary.boundary {
                pendingSpace = true
                continue
            }
            if pendingSpace && !out.isEmpty { out.append(" ") }
            pendingSpace = false
            out.append(s)
        }
        return String(out)
    }

    /// The file: `SYMBOL COUNT` per line in id order.
    public func encoded() -> String {
        zip(symbols, counts).map { "\(Character($0.0)) \($0.1)\n" }.joined()
    }

    public func write(to path: String) throws(TranscriptError) {
        do { try encoded().write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw TranscriptError(path: path, line: nil, "cannot write the dictionary: \(error.localizedDescription)")
        }
    }

    /// Reads a `dict.ltr.txt`. Errors name the file and the line: not UTF-8, not `SYMBOL COUNT`, a symbol that is
    /// not one character, white space or a special symbol, a repeated symbol, no symbols at all.
    public static func read(path: String) throws(TranscriptError) -> CTCVocabulary {
        let lines = try TranscriptFile.lines(path: path, what: "dictionary")
        var symbols: [Unicode.Scalar] = []
        var counts: [Int] = []
        var seen: [Unicode.Scalar: Int] = [:]
        for (i, raw) in lines.enumerated() where !raw.isEmpty {
            let (symbol, count) = try parseEntry(raw, path: path, line: i + 1)
            if let first = seen[symbol] {
                throw TranscriptError(path: path, line: i + 1, "symbol '\(symbol)' repeats line \(first)")
            }
            seen[symbol] = i + 1
            symbols.append(symbol)
            counts.append(count)
        }
        guard !symbols.isEmpty else { throw TranscriptError(path: path, line: nil, "the dictionary lists no symbols") }
        return CTCVocabulary(symbols: symbols, counts: counts)
    }

    static let specials: Set<String> = ["<s>", "<pad>", "</s>", "<unk>"]

    /// One line `SYMBOL COUNT[ #fairseq:overwrite]`.
    static func parseEntry(_ raw: String, path: String, line: Int) throws(TranscriptError) -> (Unicode.Scalar, Int) {
        var text = Substring(raw)
        if text.hasSuffix(" #fairseq:overwrite") { text = text.dropLast(" #fairseq:overwrite".count) }
        guard let space = text.lastIndex(of: " "), let count = Int(text[text.index(after: space)...]), count >= 0
        else { throw TranscriptError(path: path, line: line, "expected 'SYMBOL COUNT', got '\(raw)'") }
        let symbol = text[..<space]
        if specials.contains(String(symbol)) {
            throw TranscriptError(
                path: path, line: line,
                "special symbol '\(symbol)': the file lists only letters "
                    + "and '|' (the blank is id 0 and not listed)")
        }
        guard symbol.unicodeScalars.count == 1, let s = symbol.unicodeScalars.first, !s.properties.isWhitespace else {
            throw TranscriptError(path: path, line: line, "symbol '\(symbol)' is not a single non-space character")
        }
        return (s, count)
    }
}

/// "U+0161" for š.
func codePoint(_ c: Unicode.Scalar) -> String {
    let hex = String(c.value, radix: 16, uppercase: true)
    return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
}
