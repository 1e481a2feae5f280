#!/usr/bin/env python3
"""Oracle fixture for CTCTests: PyTorch's CTC loss and its gradient on a small random batch.

Writes ctc.safetensors beside this script:
  logits         float32 [B, T, V]  unnormalised, blank = 0
  input_lengths  int32   [B]        frames per utterance (rows past them are padding)
  labels         int32   [sum L]    the label sequences one after another (torch's concatenated targets)
  label_lengths  int32   [B]
  losses         float64 [B]        ctc_loss(reduction='none', zero_infinity=False): +inf when impossible
  loss_mean      float64 [1]        ctc_loss(reduction='mean', zero_infinity=True)
  grad_mean      float64 [B, T, V]  d loss_mean / d logits (through log_softmax)

torch computes in float64 on the float32 logits (converted exactly), so the fixture holds the exact values
for the stored inputs; the Swift test compares its Float kernel within stated tolerances and its Double
reference within 1e-10. The batch covers: labels with adjacent repeats, one utterance exactly at its minimum
length ([3, 3, 3, 2] in 6 frames), one impossible alignment ([1, 1, 2, 2] needs 6 frames, has 4), an empty
label sequence, and padding rows.

Run (needs torch, numpy, safetensors):
    python3 Tests/TensorTests/Fixtures/make_ctc_fixture.py
"""
import os
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

B, T, V = 5, 20, 8


def main():
    rng = np.random.default_rng(20261207)
    logits32 = (rng.standard_normal((B, T, V)) * 2.5).astype(np.float32)
    labels = [
        [int(x) for x in rng.integers(1, V, size=6)] + [4, 4],   # ends in a repeat
        [int(x) for x in rng.integers(1, V, size=4)],
        [3, 3, 3, 2],                                           # needs exactly 6 frames
        [1, 1, 2, 2],                                           # needs 6 frames, has 4: impossible
        [],                                                     # empty label sequence
    ]
    input_lengths = [20, 15, 6, 4, 11]
    flat = [x for seq in labels for x in seq]
    label_lengths = [len(seq) for seq in labels]

    x = torch.tensor(logits32, dtype=torch.float64, requires_grad=True)
    lp = x.log_softmax(-1).transpose(0, 1)                      # torch wants [T, B, V]
    args = (torch.tensor(flat, dtype=torch.long), torch.tensor(input_lengths, dtype=torch.long),
            torch.tensor(label_lengths, dtype=torch.long))
    losses = F.ctc_loss(lp, *args, blank=0, reduction="none", zero_infinity=False)
    mean = F.ctc_loss(lp, *args, blank=0, reduction="mean", zero_infinity=True)
    mean.backward()
    assert torch.isinf(losses[3]) and torch.isfinite(losses[[0, 1, 2, 4]]).all()

    out = {
        "logits": logits32,
        "input_lengths": np.array(input_lengths, dtype=np.int32),
        "labels": np.array(flat, dtype=np.int32),
        "label_lengths": np.array(label_lengths, dtype=np.int32),
        "losses": losses.detach().numpy().astype(np.float64),
        "loss_mean": np.array([mean.item()], dtype=np.float64),
        "grad_mean": x.grad.numpy().astype(np.float64),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ctc.safetensors")
    save_file(out, path, metadata={"torch": torch.__version__, "made_by": "make_ctc_fixture.py"})
    print(f"wrote {path}: losses {out['losses']}, mean {mean.item():.6f}")


if __name__ == "__main__":
    main()
