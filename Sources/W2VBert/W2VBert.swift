// W2VBert: the W2V-BERT model on the Tensor kernels.
//
//   Config            YAML sections model / quantizer / mask / loss / optimizer / train / dist / codebook /
//                     adapter / compute, presets (tiny small base xl and the Hugging Face family
//                     tiny2 small2 base2 w2v-bert-2.0), `apply(overrides:)` for "--set a.b=value", `yaml` to
//                     serialise, `validate()` (errors name the key), encoderLength(t0:), tau(step:),
//                     learningRate(step:), trainingMatmulFlops(batch:t0:masked:).
//   ParameterLayout   canonical names (docs/method.md) and PyTorch shapes at offsets into one Float buffer
//                     (params, grads, Adam m and v share them); initialize(_:seed:) as docs/method.md says.
//   W2VBertModel      forward(BatchView, tau:, training:, reduceUsage:) -> StepStats (un-normalised sums),
//                     backward(lossScale:diversityScale:) accumulating into grads, gradientsReady hook,
//                     embed(...) for hidden states, noiseOverride for tests.
//   Optimizer         AdamW + global-norm clipping + schedules; `tau` and `learningRate` of the next update.
//
// Testing: Tests/W2VBertTests/twin/w2vbert_twin.py is a PyTorch twin written from docs/method.md; its fixtures
// pin every loss, metric and parameter gradient, and a 5-step AdamW trajectory.
