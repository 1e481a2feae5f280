"""Hugging Face transformers side of the CTC export checks (docs/huggingface.md). Run by launch/check-hf-ctc.sh;
needs a Python with torch, transformers, safetensors, numpy.

  python hf_ctc_check.py load DIR DICT            Wav2Vec2BertForCTC, Wav2Vec2BertProcessor and the
                                                  automatic-speech-recognition pipeline load DIR: no missing or
                                                  unexpected weights, the tokenizer's ids are DICT's (blank 0)
  python hf_ctc_check.py compare DIR FEATS LOGITS TEXTS
                                                  Wav2Vec2BertForCTC's logits on FEATS (`w2vbert transcribe
                                                  --save-features`, a padded batch) vs LOGITS (`--logits`); the
                                                  processor's greedy decoding of them vs TEXTS (`transcribe --out`)
  python hf_ctc_check.py pipeline DIR FEATS LOGITS TEXTS
                                                  the pipeline on each file of TEXTS (16 kHz 16-bit WAV): with
                                                  w2vbert's features as its input (asserted equal texts) and with
                                                  the folder's own feature extractor on the raw audio (measured)
  python hf_ctc_check.py perturb MODEL            adds N(0, 0.05²) to every tensor of a w2vbert checkpoint's
                                                  MODEL (model.safetensors), then scales ctc_head by 20
  python hf_ctc_check.py fixture DIR OUT          the committed CI fixture: HF's logits and texts on fixed inputs
The CI fixture Tests/TrainingTests/Fixtures/hf_ctc_micro: `w2vbert init-ctc --preset tiny2 --transcripts T
--run-dir run` (T: the two lines of its test's doc comment; --set model.dim=32 model.heads=2 model.ffn_dim=48
model.conv_kernel=5 model.shaw_left=5 model.shaw_right=3 model.contrastive_blocks=1 model.mlm_blocks=2
model.final_dropout=0.1 finetune.mask_channel_prob=0.1 finetune.mask_channel_span=8 train.seed=3), `perturb`
its model.safetensors, `w2vbert export-hf run --out hf`, `load hf run/dict.ltr.txt`, `fixture hf
expected.safetensors`; the run folder (without optimizer.safetensors), hf's JSON files and expected.safetensors
are committed.
Exit 1 when a check fails (relative logit difference above 1e-4, a text that differs). Texts are compared up
to runs of spaces (HF's tokenizer decodes `| <pad> |` as two spaces, w2vbert as one); an untrained model's
logits are nearly uniform, so a text may also differ where HF's two best logits are closer than the float
rounding of the two implementations: such a file is reported as a near-tie, not a failure.
"""
import json
import os
import sys
import wave

import numpy as np
import torch

TOLERANCE = 1e-4


def stacked(feats, t0):
    """[B, T0, 80] (w2vbert's input) → HF input_features [B, T, 160] and attention_mask [B, T]."""
    B, T0, _ = feats.shape
    T = T0 // 2
    x = feats[:, :2 * T].reshape(B, T, 160)
    mask = (np.arange(T)[None, :] < (np.asarray(t0) // 2)[:, None]).astype(np.int64)
    return torch.tensor(np.ascontiguousarray(x)), torch.tensor(mask)


def lengths_of(path):
    return np.load(path[:-4] + ".lengths.npy").astype(int)


def same_words(a, b):
    """Equal up to runs of spaces: HF's tokenizer turns `| <pad> |` into two spaces, w2vbert into one."""
    return a.split() == b.split()


def agreement(ours, ref, text, hf_text):
    """'equal', 'near-tie' (the texts differ only through frames where HF's two best logits are within 10× the
    largest logit difference of the utterance, i.e. where float rounding picks the winner) or 'DIFFERENT'."""
    if same_words(hf_text, text):
        return "equal"
    a, b = ours.argmax(-1), ref.argmax(-1)
    top2 = np.sort(ref, -1)[:, -2:]
    margin = (top2[:, 1] - top2[:, 0])[a != b]
    return "near-tie" if margin.max() <= 10 * float(np.abs(ours - ref).max()) else "DIFFERENT"


def read_texts(path):
    rows = [line.rstrip("\n").split("\t", 1) for line in open(path, encoding="utf-8") if line.strip()]
    return [(p, t[0] if t else "") for p, *t in rows]


def read_wav(path):
    with wave.open(path) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def model(d, attn="eager"):
    from transformers import Wav2Vec2BertForCTC
    return Wav2Vec2BertForCTC.from_pretrained(d, attn_implementation=attn).eval()


def hf_logits(d, feats, t0, attn="eager"):
    x, mask = stacked(feats, t0)
    with torch.no_grad():
        return model(d, attn)(input_features=x, attention_mask=mask).logits.numpy()


def cmd_load(d, dict_path):
    from transformers import Wav2Vec2BertForCTC, Wav2Vec2BertProcessor, pipeline
    m, info = Wav2Vec2BertForCTC.from_pretrained(d, output_loading_info=True)
    print(f"Wav2Vec2BertForCTC.from_pretrained: missing {sorted(info['missing_keys'])}, unexpected "
          f"{sorted(info['unexpected_keys'])}, mismatched {sorted(info['mismatched_keys'])}")
    p = Wav2Vec2BertProcessor.from_pretrained(d)
    t = p.tokenizer
    symbols = [line.rsplit(" ", 1)[0] for line in open(dict_path, encoding="utf-8") if line.strip()]
    want = {"<pad>": 0, **{s: i + 1 for i, s in enumerate(symbols)}}
    print(f"Wav2Vec2BertProcessor.from_pretrained: {type(p.feature_extractor).__name__} + {type(t).__name__} "
          f"({len(t)} tokens, pad {t.pad_token!r} = {t.pad_token_id}, word delimiter {t.word_delimiter_token!r} = "
          f"{t.word_delimiter_token_id}, unk {t.unk_token!r})")
    asr = pipeline("automatic-speech-recognition", model=d)
    print(f"pipeline('automatic-speech-recognition'): {type(asr).__name__}, type {asr.type}, "
          f"model {type(asr.model).__name__}")
    ok = not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    ok = ok and t.get_vocab() == want and len(t) == m.config.vocab_size == len(want)
    ok = ok and m.config.pad_token_id == 0 and t.pad_token_id == 0 and t.word_delimiter_token_id == 1
    ok = ok and asr.type == "ctc"
    if not ok:
        print(f"FAIL: tokenizer vocabulary {'equals' if t.get_vocab() == want else 'differs from'} {dict_path}")
        sys.exit(1)


def cmd_compare(d, feats_path, logits_path, texts_path):
    from transformers import Wav2Vec2BertProcessor
    feats, t0 = np.load(feats_path), lengths_of(feats_path)
    ours, lengths = np.load(logits_path), lengths_of(logits_path)
    worst = 0.0
    for attn in ("eager", "sdpa"):
        ref = hf_logits(d, feats, t0, attn)
        assert ref.shape[1] == ours.shape[1], (ref.shape, ours.shape)
        a = max(float(np.abs(ours[b, :n] - ref[b, :n]).max()) for b, n in enumerate(lengths))
        s = max(float(np.abs(ref[b, :n]).max()) for b, n in enumerate(lengths))
        worst = max(worst, a / s)
        print(f"Wav2Vec2BertForCTC logits ({attn} attention) vs w2vbert transcribe --logits (padded batch of "
              f"{len(t0)}, frames {[int(v) for v in lengths]}): max |Δ| {a:.3e} / max |ref| {s:.3e} = "
              f"{a / s:.2e} relative")
    p = Wav2Vec2BertProcessor.from_pretrained(d)
    texts = read_texts(texts_path)
    decoded = [p.decode(ref[b, :n].argmax(-1)) for b, n in enumerate(lengths)]
    exact = sum(h == t for h, (_, t) in zip(decoded, texts))
    kinds = [agreement(ours[b, :n], ref[b, :n], texts[b][1], decoded[b]) for b, n in enumerate(lengths)]
    print(f"processor.decode(argmax HF logits) vs w2vbert transcribe: {exact}/{len(texts)} identical, "
          f"{kinds.count('equal')}/{len(texts)} equal up to runs of spaces, {kinds.count('near-tie')} differing "
          f"only at near-ties, {kinds.count('DIFFERENT')} different")
    if worst > TOLERANCE or "DIFFERENT" in kinds:
        print(f"FAIL: relative difference {worst:.2e} (limit {TOLERANCE}) or a text differs")
        sys.exit(1)


class GivenFeatures:
    """Stands in for the pipeline's feature extractor: returns w2vbert's features of the file being decoded."""

    def __init__(self, fe, feats, t0):
        self.fe, self.feats, self.t0, self.current = fe, feats, t0, 0

    def __getattr__(self, name):
        return getattr(self.fe, name)

    def __call__(self, *args, **kwargs):
        from transformers import BatchFeature
        b = self.current
        x, mask = stacked(self.feats[b:b + 1, :self.t0[b]], self.t0[b:b + 1])
        return BatchFeature({"input_features": x, "attention_mask": mask})


def cmd_pipeline(d, feats_path, logits_path, texts_path):
    from transformers import pipeline
    texts = read_texts(texts_path)
    feats, t0 = np.load(feats_path), lengths_of(feats_path)
    ours, lengths = np.load(logits_path), lengths_of(logits_path)
    asr = pipeline("automatic-speech-recognition", model=d)
    own = asr.feature_extractor
    given = GivenFeatures(own, feats, t0)
    kinds, measured = [], 0
    for b, (path, text) in enumerate(texts):
        audio = {"raw": read_wav(path), "sampling_rate": 16000}
        given.current = b
        asr.feature_extractor = given
        h = asr(dict(audio))["text"]
        asr.feature_extractor = own
        raw = asr(dict(audio))["text"]
        n = lengths[b]
        x, mask = stacked(feats[b:b + 1, :t0[b]], t0[b:b + 1])
        with torch.no_grad():
            ref = asr.model(input_features=x, attention_mask=mask).logits.numpy()[0, :n]
        kinds.append(agreement(ours[b, :n], ref, text, h))
        measured += same_words(raw, text)
        short = (lambda t: repr(t if len(t) <= 40 else t[:40] + "…"))
        print(f"  {os.path.basename(path)}: w2vbert {short(text)} ({len(text)} characters); pipeline on w2vbert's "
              f"features {kinds[-1] + ('' if kinds[-1] == 'equal' else ': ' + short(h))}; with its own feature "
              f"extractor {'equal' if same_words(raw, text) else 'different (' + str(len(raw)) + ' characters)'}")
    print(f"pipeline greedy text = w2vbert transcribe: {kinds.count('equal')}/{len(texts)} files on w2vbert's "
          f"features ({kinds.count('near-tie')} differing only at near-ties); {measured}/{len(texts)} with the "
          f"pipeline's own feature extractor on the raw audio (measured: its fbank and CMVN differ slightly, "
          f"which can move near-ties of an untrained model)")
    if "DIFFERENT" in kinds:
        print("FAIL: a pipeline text differs")
        sys.exit(1)


def cmd_perturb(path):
    """No norm at 1, no bias at 0, and a head large enough that the best path holds letters."""
    from safetensors import safe_open
    from safetensors.numpy import save_file
    with safe_open(path, "np") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    rng = np.random.default_rng(17)
    for k in sorted(t):
        t[k] = (t[k] + 0.05 * rng.standard_normal(t[k].shape)).astype(np.float32)
        if k.startswith("ctc_head."):
            t[k] *= 20
    save_file(t, path, metadata=meta)
    print(f"perturbed {len(t)} tensors of {path}")


def cmd_fixture(d, out):
    """HF's logits and decoded texts for a padded batch of fixed random features (the Swift test needs no
    PyTorch). The batch and the texts are stored with the logits."""
    from safetensors.numpy import save_file
    from transformers import Wav2Vec2BertProcessor
    rng = np.random.default_rng(5)
    t0 = [41, 28]
    feats = np.zeros((len(t0), max(t0), 80), dtype=np.float32)
    for b, n in enumerate(t0):
        feats[b, :n] = rng.standard_normal((n, 80)).astype(np.float32)
    ref = hf_logits(d, feats, t0)
    for b, n in enumerate(t0):
        ref[b, n // 2:] = 0
    p = Wav2Vec2BertProcessor.from_pretrained(d)
    texts = [p.decode(ref[b, :n // 2].argmax(-1)) for b, n in enumerate(t0)]
    save_file({"input.features": feats, "input.lengths": np.array(t0, dtype=np.float32), "out.logits": ref},
              out, metadata={"texts": json.dumps(texts, ensure_ascii=False)})
    print(f"wrote {out}: logits {list(ref.shape)}, T0 {t0}, texts {texts}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"load": cmd_load, "compare": cmd_compare, "pipeline": cmd_pipeline, "perturb": cmd_perturb,
     "fixture": cmd_fixture}[cmd](*args)
