"""The PyTorch peer of `w2vbert bench finetune`: CTC fine-tuning steps of transformers' Wav2Vec2BertForCTC built
from the config.json that `w2vbert bench finetune --hf-config` wrote for the same model, on the same shapes:
`batch` utterances of `seconds` of N(0, 1) fbank features (stacked to 160 values at 50 frames per second, as
Wav2Vec2BertProcessor gives them), random transcripts of 14 letters per second, HF's own SpecAugment from the
config, AdamW over every parameter but the feature projection (frozen, as w2vbert's finetune.freeze_frontend).
Attention dropout is off (w2vbert never drops attention probabilities). Eager mode; --precision bf16 runs the
forward and the loss under torch.autocast("cpu", dtype=torch.bfloat16). Prints one JSON line.
  python bench-finetune-pytorch.py --config config.json [--batch 8] [--seconds 10] [--steps 5] [--threads 1]
      [--precision fp32|bf16]
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import Wav2Vec2BertConfig, Wav2Vec2BertForCTC


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    cfg = Wav2Vec2BertConfig.from_json_file(a.config)
    cfg.attention_dropout = 0.0
    model = Wav2Vec2BertForCTC(cfg).train()
    for p in model.wav2vec2_bert.feature_projection.parameters():
        p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=5e-5)
    t0 = int(a.seconds * 100) - 1
    t = t0 // 2
    features = torch.randn(a.batch, t, 2 * 80)
    mask = torch.ones(a.batch, t, dtype=torch.long)
    letters = min(int(a.seconds * 14), t // 2)
    labels = torch.randint(1, cfg.vocab_size, (a.batch, letters))
    times, loss = [], float("nan")
    for step in range(a.steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            out = model(input_features=features, attention_mask=mask, labels=labels)
        out.loss.backward()
        opt.step()
        loss = out.loss.detach().item()
        if step > 0:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({
        "peer": f"transformers Wav2Vec2BertForCTC (torch {torch.__version__})", "batch": a.batch,
        "seconds_per_utterance": a.seconds, "letters_per_utterance": letters, "threads": a.threads,
        "precision": a.precision, "steps": a.steps, "step_time_median": round(median, 4),
        "audio_seconds_per_second": round(a.batch * a.seconds / median, 2), "last_loss": round(loss, 4),
        "trainable_floats": sum(p.numel() for p in trainable),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
