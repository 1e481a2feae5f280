"""Hugging Face transformers side of the export/import checks (docs/huggingface.md). Run by launch/check-hf.sh;
needs a Python (e.g. a virtualenv outside the repository) with torch, transformers, safetensors, numpy.

  python hf_check.py load DIR                       Wav2Vec2BertModel / AutoFeatureExtractor / Wav2Vec2BertForCTC
                                                    load DIR: no missing or unexpected encoder weights
  python hf_check.py compare DIR FEATS STATES       HF last_hidden_state on FEATS (`w2vbert embed --save-features`)
                                                    vs STATES (`w2vbert embed --batch`) on real frames; exit 1 > 1e-4
  python hf_check.py extractor DIR FEATS STATES WAV...  HF's own feature extractor on the raw 16 kHz audio:
                                                    feature and hidden-state differences (measured, not asserted)
  python hf_check.py write PRESET DIR               Wav2Vec2BertModel(config).save_pretrained(DIR), random init
  python hf_check.py same DIR_A DIR_B               every tensor of A's model.safetensors bit-identical in B
  python hf_check.py fixture OUTDIR                 the committed CI fixture (a small HF folder + expected outputs)
"""
import json
import os
import sys
import wave

import numpy as np
import torch

PRESETS = {  # d, layers, heads, f, k: the `*2` presets of Config.swift
    "tiny2": (144, 4, 4, 576, 15),
    "small2": (256, 8, 4, 1024, 15),
    "base2": (512, 16, 8, 2048, 31),
    "w2v-bert-2.0": (1024, 24, 16, 4096, 31),
    "micro": (32, 3, 2, 48, 5),   # the committed CI fixture
}


def hf_config(preset, **kw):
    from transformers import Wav2Vec2BertConfig
    d, layers, h, f, k = PRESETS[preset]
    return Wav2Vec2BertConfig(hidden_size=d, num_hidden_layers=layers, num_attention_heads=h, intermediate_size=f,
                              conv_depthwise_kernel_size=k, **kw)


def load_model(d, attn="eager"):
    from transformers import Wav2Vec2BertModel
    return Wav2Vec2BertModel.from_pretrained(d, attn_implementation=attn).eval()


def stacked(feats, t0):
    """[B, T0, 80] (our embed's input) → HF input_features [B, T, 160] and attention_mask [B, T]."""
    B, T0, _ = feats.shape
    T = T0 // 2
    x = feats[:, :2 * T].reshape(B, T, 160)
    mask = (np.arange(T)[None, :] < (np.asarray(t0) // 2)[:, None]).astype(np.int64)
    return torch.tensor(x), torch.tensor(mask)


def rel_err(ours, ref, lengths):
    """max |ours − ref| / max |ref| over the real frames of every utterance."""
    worst_abs, scale = 0.0, 0.0
    for b, t in enumerate(lengths):
        worst_abs = max(worst_abs, float(np.abs(ours[b, :t] - ref[b, :t]).max()))
        scale = max(scale, float(np.abs(ref[b, :t]).max()))
    return worst_abs / scale, worst_abs, scale


def cmd_load(d, trained=None):
    from safetensors.numpy import load_file
    from transformers import Wav2Vec2BertModel, Wav2Vec2BertForCTC, AutoFeatureExtractor
    if trained == "--trained":   # no tensor may still hold a constant initial value (norms 1, biases 0)
        w = load_file(os.path.join(d, "model.safetensors"))
        const = [k for k, v in w.items() if v.size > 1 and np.all(v == v.flat[0])]
        print(f"{len(w)} tensors, {len(const)} constant" + (f": {const[:5]}" if const else ""))
        if const:
            sys.exit(1)
    _, info = Wav2Vec2BertModel.from_pretrained(d, output_loading_info=True)
    bad = {k: sorted(v) for k, v in info.items() if v}
    print(f"Wav2Vec2BertModel.from_pretrained: missing {len(info['missing_keys'])}, unexpected {len(info['unexpected_keys'])}"
          f", mismatched {len(info['mismatched_keys'])}")
    fe = AutoFeatureExtractor.from_pretrained(d)
    print(f"AutoFeatureExtractor.from_pretrained: {type(fe).__name__} (stride {fe.stride}, {fe.num_mel_bins} mel bins)")
    _, cinfo = Wav2Vec2BertForCTC.from_pretrained(d, vocab_size=32, output_loading_info=True)
    missing = sorted(cinfo["missing_keys"])
    print(f"Wav2Vec2BertForCTC.from_pretrained(vocab_size=32): newly initialised {missing}, unexpected {sorted(cinfo['unexpected_keys'])}")
    from transformers import Wav2Vec2BertForSequenceClassification
    _, sinfo = Wav2Vec2BertForSequenceClassification.from_pretrained(d, num_labels=3, output_loading_info=True)
    print(f"Wav2Vec2BertForSequenceClassification.from_pretrained(num_labels=3): newly initialised {sorted(sinfo['missing_keys'])}, "
          f"unexpected {sorted(sinfo['unexpected_keys'])}")
    ok = not bad and missing == ["lm_head.bias", "lm_head.weight"] and not cinfo["unexpected_keys"]
    ok = ok and all(k.startswith(("projector.", "classifier.")) for k in sinfo["missing_keys"]) and not sinfo["unexpected_keys"]
    if not ok:
        print(f"FAIL: {bad}")
        sys.exit(1)


def cmd_compare(d, feats_path, states_path):
    feats = np.load(feats_path)
    t0 = np.load(feats_path[:-4] + ".lengths.npy").astype(int)
    ours = np.load(states_path)
    lengths = np.load(states_path[:-4] + ".lengths.npy").astype(int)
    x, mask = stacked(feats, t0)
    worst = 0.0
    for attn in ("eager", "sdpa"):
        m = load_model(d, attn)
        with torch.no_grad():
            ref = m(input_features=x, attention_mask=mask).last_hidden_state.numpy()
        assert ref.shape[1] == ours.shape[1], (ref.shape, ours.shape)
        r, a, s = rel_err(ours, ref, lengths)
        worst = max(worst, r)
        print(f"HF last_hidden_state ({attn} attention) vs w2vbert embed (padded batch of {len(t0)}, T0 {[int(v) for v in t0]}, "
              f"frames {[int(v) for v in lengths]}): max |Δ| {a:.3e} / max |ref| {s:.3e} = {r:.2e} relative")
        del m
    if worst > 1e-4:
        print("FAIL: above 1e-4")
        sys.exit(1)


def read_wav(path):
    with wave.open(path) as w:
        assert w.getsampwidth() == 2, path
        n, ch = w.getnframes(), w.getnchannels()
        x = np.frombuffer(w.readframes(n), dtype="<i2").astype(np.float32) / 32768.0
        return x.reshape(n, ch).T, w.getframerate()   # [channels, samples]


def cmd_extractor(d, feats_path, states_path, wavs):
    from transformers import AutoFeatureExtractor
    fe = AutoFeatureExtractor.from_pretrained(d)
    feats = np.load(feats_path)
    t0 = np.load(feats_path[:-4] + ".lengths.npy").astype(int)
    ours = np.load(states_path)
    lengths = np.load(states_path[:-4] + ".lengths.npy").astype(int)
    audio = []
    for p in wavs:
        x, rate = read_wav(p)
        assert rate == 16000, p
        if x.shape[0] == 2:
            diff = float(np.sqrt(np.mean((x[0] - x[1]) ** 2)) / np.sqrt(np.mean(x[0] ** 2)))
            print(f"  {os.path.basename(p)}: stereo, rms(left − right) / rms(left) = {diff:.3f}")
        audio.append(x[0] if x.shape[0] == 1 else x)   # stereo: HF's extractor takes channel 0
    out = fe(audio, sampling_rate=16000, return_tensors="pt")
    hf_x, hf_mask = out["input_features"], out["attention_mask"]
    # Feature level, real frames only. Ours: (x − mean)/sqrt(population var + 1e-5); HF: sample variance
    # (ddof 1) + 1e-7, i.e. ours × sqrt((n − 1)/n) up to the epsilons. What remains after that factor is
    # the fbank arithmetic (float32 here, float64 in HF's numpy spectrogram).
    ox, _ = stacked(feats, t0)
    for b in range(len(t0)):
        L, n = int(lengths[b]), int(t0[b])
        raw = float((hf_x[b, :L] - ox[b, :L]).abs().max())
        fixed = float((hf_x[b, :L] - ox[b, :L] * np.sqrt((n - 1) / n)).abs().max())
        print(f"  utterance {b} ({n} fbank frames): features max |Δ| {raw:.3e}; after the ddof factor "
              f"sqrt((n−1)/n) = {np.sqrt((n - 1) / n):.6f}: {fixed:.3e}")
    m = load_model(d)
    with torch.no_grad():
        ref = m(input_features=hf_x, attention_mask=hf_mask).last_hidden_state.numpy()
    n = min(ref.shape[1], ours.shape[1])
    r, a, s = rel_err(ours[:, :n], ref[:, :n], [min(t, n) for t in lengths])
    print(f"hidden states: HF extractor + HF model vs w2vbert embed: max |Δ| {a:.3e} / max |ref| {s:.3e} = {r:.2e} relative")
    for b, t in enumerate(lengths):
        t = min(int(t), n)
        print(f"  utterance {b}: hidden states max |Δ| / max |ref| = {float(np.abs(ours[b, :t] - ref[b, :t]).max()) / s:.2e}")


def cmd_write(preset, d):
    from transformers import Wav2Vec2BertModel
    torch.manual_seed(0)
    m = Wav2Vec2BertModel(hf_config(preset)).eval()
    m.save_pretrained(d, max_shard_size="20GB")   # one model.safetensors (import-hf reads no shards)
    n = sum(p.numel() for p in m.parameters())
    print(f"transformers wrote {d}: Wav2Vec2BertModel {preset}-sized, {n} parameters")


def cmd_same(a, b):
    from safetensors.numpy import load_file
    x, y = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    if set(x) != set(y):
        print(f"FAIL: names differ: only in A {sorted(set(x) - set(y))[:5]}, only in B {sorted(set(y) - set(x))[:5]}")
        sys.exit(1)
    for k in sorted(x):
        if x[k].shape != y[k].shape or x[k].dtype != y[k].dtype or x[k].tobytes() != y[k].tobytes():
            print(f"FAIL: tensor {k} differs")
            sys.exit(1)
    print(f"{len(x)} tensors bit-identical ({sum(v.size for v in x.values())} floats)")


def cmd_fixture(outdir):
    """A small folder written by transformers itself (random init, then perturbed so no norm is 1 and no
    bias 0) plus inputs and HF's last_hidden_state, for the Swift test that needs no PyTorch."""
    from safetensors.numpy import save_file
    from transformers import Wav2Vec2BertModel
    torch.manual_seed(12)
    m = Wav2Vec2BertModel(hf_config("micro", left_max_position_embeddings=5, right_max_position_embeddings=3)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = os.path.join(outdir, "hf_micro")
    m.save_pretrained(d)
    rng = np.random.default_rng(12)
    t0 = [37, 26, 30]
    feats = np.zeros((len(t0), max(t0), 80), dtype=np.float32)
    for b, n in enumerate(t0):
        feats[b, :n] = rng.standard_normal((n, 80)).astype(np.float32)
    x, mask = stacked(feats, t0)
    with torch.no_grad():
        ref = m(input_features=x, attention_mask=mask).last_hidden_state.numpy()
    for b, n in enumerate(t0):
        ref[b, n // 2:] = 0
    save_file({"input.features": feats, "input.lengths": np.array(t0, dtype=np.float32), "out.last_hidden_state": ref},
              os.path.join(outdir, "hf_micro_expected.safetensors"))
    print(f"wrote {d} and hf_micro_expected.safetensors (T0 {t0})")


if __name__ == "__main__":
    torch.set_num_threads(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"load": lambda d, *t: cmd_load(d, *t), "compare": cmd_compare, "extractor": lambda d, f, s, *w: cmd_extractor(d, f, s, list(w)),
     "write": cmd_write, "same": cmd_same, "fixture": cmd_fixture}[cmd](*args)
