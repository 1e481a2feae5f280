// Transcripts in fairseq's label convention: `NAME.wrd` beside the manifest `NAME.tsv`, one line per manifest
// row in the same order (the manifest's root line has no counterpart), the words of that utterance. An empty
// line, or one that normalises to nothing (only punctuation), means the utterance has no label. Lines are
// normalised with `TranscriptText.normalized` when read; labels are the `CTCVocabulary` ids of that text.
//
// Every error names the file and, where there is one, the 1-based line (`TranscriptError`).

import Foundation
import Tensor

/// An error about a transcript or dictionary file: which file, which line (nil: the whole file), what is wrong.
public struct TranscriptError: Error, CustomStringConvertible, Sendable, Equatable {
    public let path: String
    public let line: Int?
    public let message: String

    public init(path: String, line: Int?, _ message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    /// "train.wrd:12: character '@' (U+0040) is not in the dictionary".
    public var description: String { line.map { "\(path):\($0): \(message)" } ?? "\(path): \(message)" }
}

public struct Transcripts: Sendable, Equatable {
    /// The .wrd file these came from.
    public let path: String
    /// Per manifest row, its normalised transcript; nil: no label.
    public let texts: [String?]

    public init(path: String, texts: [String?]) {
        self.path = path
        self.texts = texts
    }

    /// `NAME.wrd` for the manifest `NAME.tsv` (a manifest without the .tsv extension: its path + ".wrd").
    public static func path(forManifest manifest: String) -> String {
        (manifest.hasSuffix(".tsv") ? String(manifest.dropLast(4)) : manifest) + ".wrd"
    }

    /// Reads and normalises `path`, which must have exactly one line per row of the manifest at `manifestPath`
    /// (`rows` entries); otherwise the error names both files and both counts.
    public static func read(path: String, manifestPath: String, rows: Int) throws(TranscriptError) -> Transcripts {
        let lines = try TranscriptFile.lines(path: path, what: "transcript file")
        guard lines.count == rows else {
            throw TranscriptError(
                path: path, line: nil,
                "has \(lines.count) lines, but the manifest \(manifestPath) "
                    + "has \(rows) rows (one transcript line per manifest row, in the same order)")
        }
        return Transcripts(
            path: path,
            texts: lines.map { line in
                let text = TranscriptText.normalized(line)
                return text.isEmpty ? nil : text
            })
    }

    /// The labels of row `row` (nil: no label); an unknown character is an error naming this file and line.
    public func labels(_ row: Int, vocabulary: CTCVocabulary) throws(TranscriptError) -> [Int32]? {
        guard let text = texts[row] else { return nil }
        return try vocabulary.encode(text, path: path, line: row + 1)
    }

    /// Throws unless `frames` (the encoder frames of row `row`'s audio) can carry `labels` under CTC: at least
    /// one frame per label plus one blank between each pair of equal adjacent labels.
    public func checkFeasible(_ labels: [Int32], frames: Int, row: Int) throws(TranscriptError) {
        let needed = ctcMinimumFrames(labels)
        guard frames >= needed else {
            let blanks = needed - labels.count
            throw TranscriptError(
                path: path, line: row + 1,
                "the transcript needs at least \(needed) frames "
                    + "(\(labels.count) labels + \(blanks) blanks between repeated letters), "
                    + "but its audio gives \(frames) encoder frames")
        }
    }
}

/// Line reading shared by transcripts and dictionaries.
enum TranscriptFile {
    /// The lines of a UTF-8 text file without their terminators (LF or CRLF); a final terminator does not start
    /// another line, so "a\nb\n" and "a\nb" both have 2 lines and an empty file has none.
    static func lines(path: String, what: String) throws(TranscriptError) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TranscriptError(path: path, line: nil, "cannot read the \(what)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TranscriptError(path: path, line: nil, "the \(what) is not UTF-8 text")
        }
        // By scalars: as Characters, CR LF is one grapheme and would not match "\n".
        let scalars = text.unicodeScalars
        var lines = scalars.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            String(String.UnicodeScalarView(line.last == "\r" ? line.dropLast() : line))
        }
        if scalars.last == "\n" || scalars.isEmpty { lines.removeLast() }
        return lines
    }
}
