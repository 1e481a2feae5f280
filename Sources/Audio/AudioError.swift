// Errors of the Audio module. Every libsndfile / libsamplerate return code is mapped to one of these in
// exactly one place (`SoundFile.check`, `Resampler.check`), and every error names the file it is about,
// so the CLI and the loader can print "path: reason" and nothing else.

/// An error about one file: which file, and what went wrong (for libsndfile errors, `sf_strerror`'s text).
public struct AudioError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        case unreadable  // libsndfile could not open it (missing, not audio, corrupt header)
        case decode  // opened, but reading the samples failed
        case empty  // zero bytes, or zero audio frames
        case tooShort  // fewer samples than a minimum (prepare, loader)
        case resample  // libsamplerate failed
        case io  // writing a file (npy, wav, manifest)
        case format  // a file of ours (npy, manifest) is malformed
    }
    public let kind: Kind
    public let path: String
    public let message: String

    public init(_ kind: Kind, path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    /// "unreadable: Format not recognised." — the reason without the path, for summaries.
    public var reason: String { message.isEmpty ? kind.rawValue : "\(kind.rawValue): \(message)" }
    public var description: String { "\(path): \(reason)" }
}
