import ArgumentParser
import Audio
import Foundation
import Tensor
import Training
import W2VBert

/// `w2vbert init-ctc` (hidden): step 0 of a CTC fine-tuning run with CTCModel's initial (random) parameters and
/// a dictionary built from transcripts, for checks of the CTC tools (launch/check-hf-ctc.sh) without training.
struct InitCTC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-ctc",
        abstract: "Write RUN/checkpoints/step-00000000 of a CTC model with its initial parameters (for checks).",
        discussion: """
            The dictionary is built from the transcripts (one text per line, normalised as for training, e.g. a \
            prepared corpus's train.wrd) and written as RUN/dict.ltr.txt; model.head is ctc and model.vocab_size \
            its size. The parameters are CTCModel's initialisation from train.seed; the optimizer state is zero.
            """,
        shouldDisplay: false)
    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Transcripts to build the dictionary from (.wrd: one text per line).") var transcripts: String
    @Option(help: "Run folder to create.") var runDir: String

    func run() throws {
        guard let text = try? String(contentsOfFile: transcripts, encoding: .utf8) else {
            throw RuntimeError("\(transcripts): cannot read the transcripts (missing or not UTF-8)")
        }
        let lines = text.split(whereSeparator: \.isNewline).map { TranscriptText.normalized(String($0)) }
        let vocabulary = CTCVocabulary.build(from: lines)
        var c = try configOptions.load()
        c.model.head = .ctc
        c.model.vocabSize = vocabulary.size
        do { try c.validate() } catch { throw UsageError("\(error)") }
        let layout = ParameterLayout(config: c)
        let params = FloatBuffer(count: layout.count)
        layout.initialize(params.ptr, seed: c.train.seed)
        let zeros = FloatBuffer(count: layout.count)
        var state = TrainerState()
        state.seed = c.train.seed
        state.updateFreq = c.train.updateFreq
        state.config = c.yaml
        do {
            let dir = try CheckpointManager(runDirectory: runDir, keepLast: 1).save(
                step: 0, tensors: CheckpointTensors(layout: layout, config: c), parameters: params.ptr,
                adamM: zeros.ptr, adamV: zeros.ptr, state: state)
            try vocabulary.write(to: runDir + "/dict.ltr.txt")
            print(
                "init-ctc: \(dir): \(layout.parameterCount) parameters, V = \(vocabulary.size) (\(runDir)/dict.ltr.txt)"
            )
        } catch {
            throw RuntimeError("\(runDir): \(error)")
        }
    }
}
