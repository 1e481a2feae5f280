// Transcript text normalisation: the one function that turns a line of a transcript (`.wrd`) into the text
// the CTC vocabulary is built from, training labels are encoded from, and CER/WER are scored on. Training and
// scoring call the same function, so a reference and a hypothesis are always compared in the same form.
//
// The steps, in order:
//   1. Lowercase (Unicode default case mapping, no locale), then Unicode NFC (precomposed: "č" is one code
//      point, as Czech text usually is; lowercasing first so that its output is recomposed too).
//   2. Keep letters (general categories L*), decimal digits (Nd) and combining marks (M*) that follow a kept
//      letter, digit or mark. Digits stay digits: numbers are not spelled out, "2" is a symbol of its own.
//   3. An apostrophe (U+0027 or U+2019) between two kept characters stays as U+0027 ("don't", "rock'n'roll");
//      elsewhere (quotes, "dogs'") it is removed.
//   4. Whitespace (any Unicode white space) separates words; every other character (punctuation, symbols,
//      controls, format characters) is removed without leaving a space: "well-known" becomes "wellknown".
//   5. Runs of whitespace become one space; leading and trailing whitespace is dropped.
// Units are Unicode scalars (code points), as in fairseq's letter targets and jiwer's CER.

import Foundation

public enum TranscriptText {
    /// The normalised form of `text` (steps above). Idempotent: normalized(normalized(x)) == normalized(x).
    public static func normalized(_ text: String) -> String {
        let scalars = Array(text.lowercased().precomposedStringWithCanonicalMapping.unicodeScalars)
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        var previousKept = false  // the last scalar emitted is a letter, digit or mark (not a space)
        for (i, c) in scalars.enumerated() {
            let kind = classify(c)
            switch kind {
            case .letterOrDigit, .mark:
                if kind == .mark && !previousKept { continue }
                if pendingSpace && !out.isEmpty { out.append(" ") }
                pendingSpace = false
                out.append(c)
                previousKept = true
            case .apostrophe:
                let next = i + 1 < scalars.count ? classify(scalars[i + 1]) : .other
                if previousKept && !pendingSpace && next == .letterOrDigit {
                    out.append("'")
                    previousKept = false  // an apostrophe is not a word character itself
                }
            case .space:
                pendingSpace = true
                previousKept = false
            case .other:
                break
            }
        }
        return String(out)
    }

    enum Kind: Equatable {
        case letterOrDigit, mark, apostrophe, space, other
    }

    static func classify(_ c: Unicode.Scalar) -> Kind {
        if c == "'" || c == "\u{2019}" { return .apostrophe }
        if c.properties.isWhitespace { return .space }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .decimalNumber:
            return .letterOrDigit
        case .nonspacingMark, .spacingMark, .enclosingMark:
            return .mark
        default:
            return .other
        }
    }
}
