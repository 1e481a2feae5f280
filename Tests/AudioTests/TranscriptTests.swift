import Audio
import Foundation
import XCTest

final class TranscriptTextTests: XCTestCase {
    func testNormalisation() {
        let cases: [(String, String)] = [
            ("Příliš žluťoučký kůň úpěl ďábelské ódy!", "příliš žluťoučký kůň úpěl ďábelské ódy"),
            ("C\u{30C}ESKY\u{301}", "\u{10D}esk\u{FD}"),  // decomposed input, composed output
            ("Don't  stop,  \"rock'n'roll\"!", "don't stop rock'n'roll"),
            ("'quoted' dogs' rock\u{2019}n\u{2019}roll", "quoted dogs rock'n'roll"),
            ("V roce 1989, 17. listopadu", "v roce 1989 17 listopadu"),  // digits stay digits
            ("well-known — fact…", "wellknown fact"),  // punctuation removed, no space left
            ("\t a \u{00A0} b\n", "a b"),  // any white space, collapsed, trimmed
            ("... ?!", ""),
            ("\u{301}a", "a"),  // a mark with nothing to attach to
            ("नमस्ते", "नमस्ते"),  // marks after letters stay
            ("a''b", "a'b")
        ]
        for (input, expected) in cases {
            let out = TranscriptText.normalized(input)
            XCTAssertEqual(out, expected, "normalising '\(input)'")
            XCTAssertEqual(TranscriptText.normalized(out), out, "idempotent on '\(input)'")
        }
        XCTAssertEqual(TranscriptText.normalized("Ů").unicodeScalars.map(\.value), [0x16F], "NFC: one scalar")
    }
}

final class CTCVocabularyTests: XCTestCase {
    /// "abb c" and "b": b ×3, a, c, | once each → | first, then b, then a and c by code point.
    let vocab = CTCVocabulary.build(from: ["abb c", "b"])

    func testBuildOrderAndIds() {
        XCTAssertEqual(vocab.symbols, ["|", "b", "a", "c"])
        XCTAssertEqual(vocab.counts, [1, 3, 1, 1])
        XCTAssertEqual(vocab.size, 5)
        XCTAssertEqual(vocab.id(of: "|"), 1)
        XCTAssertEqual(vocab.id(of: "a"), 3)
        XCTAssertEqual(CTCVocabulary.build(from: ["x"]).symbols, ["|", "x"], "| is always id 1")
    }

    func testEncodeDecode() throws {
        XCTAssertEqual(try vocab.encode("ab c", path: "t.wrd", line: 1), [3, 2, 1, 4])
        XCTAssertEqual(vocab.decode([Int32]([0, 1, 2, 0, 1, 1, 3, 3, 1, 0])), "b aa")
        XCTAssertThrowsError(try vocab.encode("abx", path: "t.wrd", line: 3)) { e in
            XCTAssertEqual("\(e)", "t.wrd:3: character 'x' (U+0078) is not in the dictionary")
        }
        let noBoundary = CTCVocabulary(symbols: ["a"], counts: [1])
        XCTAssertThrowsError(try noBoundary.encode("a a", path: "t.wrd", line: 2)) { e in
            XCTAssertEqual("\(e)", "t.wrd:2: a word boundary (space), but '|' is not in the dictionary")
        }
    }

    func testFileRoundTripAndFairseqForm() throws {
        let dir = try makeTempDir(self)
        let path = dir.appendingPathComponent("dict.ltr.txt").path
        try vocab.write(to: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "| 1\nb 3\na 1\nc 1\n")
        XCTAssertEqual(try CTCVocabulary.read(path: path), vocab)
        // fairseq's own file: | not first, a flag, CRLF, no final newline, Czech letters.
        try "e 10\r\n| 7\r\nš 2 #fairseq:overwrite\r\n' 1".write(toFile: path, atomically: true, encoding: .utf8)
        let read = try CTCVocabulary.read(path: path)
        XCTAssertEqual(read.symbols, ["e", "|", "š", "'"])
        XCTAssertEqual(read.counts, [10, 7, 2, 1])
    }

    func testBadDictionaryNamesFileAndLine() throws {
        let dir = try makeTempDir(self)
        let path = dir.appendingPathComponent("dict.ltr.txt").path
        let cases: [(String, String)] = [
            ("a 1\n<s> 1\n", ":2: special symbol '<s>'"),
            ("a 1\nb x\n", ":2: expected 'SYMBOL COUNT', got 'b x'"),
            ("a\n", ":1: expected 'SYMBOL COUNT', got 'a'"),
            ("ab 3\n", ":1: symbol 'ab' is not a single non-space character"),
            ("a 1\nb 2\na 3\n", ":3: symbol 'a' repeats line 1"),
            ("\n", ": the dictionary lists no symbols")
        ]
        for (text, expected) in cases {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try CTCVocabulary.read(path: path), text) { e in
                XCTAssertTrue("\(e)".hasPrefix(path + expected), "\(e)")
            }
        }
        try Data([0x61, 0x20, 0x31, 0x0A, 0xFF, 0x20, 0x31]).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try CTCVocabulary.read(path: path)) { e in
            XCTAssertEqual("\(e)", "\(path): the dictionary is not UTF-8 text")
        }
        XCTAssertThrowsError(try CTCVocabulary.read(path: dir.appendingPathComponent("none.txt").path)) { e in
            XCTAssertTrue("\(e)".hasSuffix("none.txt: cannot read the dictionary"), "\(e)")
        }
    }
}

final class TranscriptsTests: XCTestCase {
    func testPathBesideManifest() {
        XCTAssertEqual(Transcripts.path(forManifest: "/data/train.tsv"), "/data/train.wrd")
        XCTAssertEqual(Transcripts.path(forManifest: "/data/train"), "/data/train.wrd")
    }

    func testReadNormalisesAndKeepsEmptyLinesAsUnlabelled() throws {
        let dir = try makeTempDir(self)
        let path = dir.appendingPathComponent("train.wrd").path
        try "Ahoj, světe!\r\n\n...\nDOBRÝ DEN".write(toFile: path, atomically: true, encoding: .utf8)
        let t = try Transcripts.read(path: path, manifestPath: "train.tsv", rows: 4)
        XCTAssertEqual(t.texts, ["ahoj světe", nil, nil, "dobrý den"])
        let vocab = CTCVocabulary.build(from: t.texts.compactMap { $0 })
        XCTAssertNil(try t.labels(1, vocabulary: vocab))
        XCTAssertEqual(vocab.decode(try t.labels(3, vocabulary: vocab)!), "dobrý den")
        let small = CTCVocabulary.build(from: ["ahoj svete"])
        XCTAssertThrowsError(try t.labels(0, vocabulary: small)) { e in
            XCTAssertEqual("\(e)", "\(path):1: character 'ě' (U+011B) is not in the dictionary")
        }
    }

    func testLineCountMismatchNamesBothFiles() throws {
        let dir = try makeTempDir(self)
        let path = dir.appendingPathComponent("dev.wrd").path
        try "a\nb\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Transcripts.read(path: path, manifestPath: "dev.tsv", rows: 2).texts, ["a", "b"])
        XCTAssertThrowsError(try Transcripts.read(path: path, manifestPath: "/m/dev.tsv", rows: 3)) { e in
            XCTAssertEqual(
                "\(e)",
                "\(path): has 2 lines, but the manifest /m/dev.tsv has 3 rows "
                    + "(one transcript line per manifest row, in the same order)")
        }
        try "".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Transcripts.read(path: path, manifestPath: "dev.tsv", rows: 0).texts, [])
    }

    func testFeasibility() throws {
        let t = Transcripts(path: "x.wrd", texts: ["aa", "ab"])
        XCTAssertNoThrow(try t.checkFeasible([1, 1], frames: 3, row: 0))
        XCTAssertNoThrow(try t.checkFeasible([1, 2], frames: 2, row: 1))
        XCTAssertThrowsError(try t.checkFeasible([1, 1], frames: 2, row: 0)) { e in
            XCTAssertEqual(
                "\(e)",
                "x.wrd:1: the transcript needs at least 3 frames "
                    + "(2 labels + 1 blanks between repeated letters), but its audio gives 2 encoder frames")
        }
    }
}
