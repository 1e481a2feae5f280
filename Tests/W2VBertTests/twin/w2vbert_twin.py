#!/usr/bin/env python3
"""PyTorch twin of the W2V-BERT model, written from the method description (docs/method.md), not from the
Swift code.

Parameter names and layouts are the canonical ones of docs/method.md. Three modes:

  python w2vbert_twin.py fixtures [OUTDIR [NAME...]]  writes fixture_{a..e,f_lora,g_hyper,h_hyperlora,i_hyperlora_table,j_ctc,
                                                k_series,l_tokens,m_series_plain}.safetensors (float64 reference values
                                                stored as float32/float64) for the Swift tests, after the self-check
  python w2vbert_twin.py selfcheck              finite differences (float64) against autograd for the series and
                                                token front ends on tiny inputs with NaN, prints the max relative error
  python w2vbert_twin.py bench --preset small --batch 8 --seconds 10 --steps 5 --threads 1
                                                times a float32 eager training step, prints one JSON line

A fixture holds: the config as `section.key=value` lines (metadata "overrides"), inputs (features, T0
lengths, mask over encoder frames), the random draws (mask-noise vectors, Gumbel noise, distractor
indices, all in masked-frame order), initial parameters, every loss and metric, every parameter gradient,
and the losses of 5 AdamW steps with the same inputs and draws. Inputs are audio (80 mel bins), series (C channels,
NaN for a missing value) or tokens (ids stored as floats, one column): `data.kind`.
"""
import json, math, os, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn

MEL = 80

# ----------------------------------------------------------------------------------------------------
# Configuration (the trainer's config key names)

def preset(name):
    c = {
        "model.frontend": "conv2d", "model.frontend_channels": 32, "model.dim": 144, "model.heads": 4,
        "model.ffn_dim": 576, "model.conv_kernel": 15, "model.causal_conv": False, "model.contrastive_blocks": 2,
        "model.mlm_blocks": 2, "model.position": "conv", "model.pos_conv_kernel": 32, "model.pos_conv_groups": 4,
        "model.shaw_left": 64, "model.shaw_right": 8, "model.final_dim": 64, "model.dropout": 0.0, "model.layer_drop": 0.0,
        "model.frontend_norm": True, "model.context_proj": True,
        "quantizer.groups": 1, "quantizer.entries": 128, "quantizer.dim": 128, "quantizer.tau_start": 2.0,
        "quantizer.tau_end": 0.5, "quantizer.tau_decay": 0.999, "quantizer.detach_targets": False,
        "mask.prob": 0.65, "mask.span": 10, "mask.min_spans": 2, "mask.replacement": "random", "mask.random_std": 0.1,
        "loss.num_negatives": 100, "loss.kappa": 0.1, "loss.contrastive_weight": 1.0, "loss.mlm_weight": 1.0,
        "loss.diversity_weight": 0.2,
        "optimizer.lr": 1e-3, "optimizer.warmup": 300, "optimizer.schedule": "transformer", "optimizer.eps": 1e-6,
        "optimizer.weight_decay": 0.01, "optimizer.clip_norm": 1.0, "optimizer.max_steps": 20000,
        "adapter.kind": "none", "adapter.rank": 8, "adapter.alpha": 16.0, "adapter.targets": "attn.q,attn.v",
        "train.trainable": "all", "model.hypernetwork": "none", "model.hyper_dim": 2, "model.hyper_rank": 0,
        "adapter.speaker": "signal", "adapter.speakers": 0, "adapter.speaker_dim": 8, "adapter.layer_dim": 4,
        "data.kind": "audio", "data.channels": 0, "data.vocab_size": 0, "model.stack_frames": 2,
        "model.stack_norm": True,
    }
    table = {  # C, d, h, f, k, N, M, V, D, final
        "small": (64, 256, 4, 1024, 15, 4, 4, 320, 256, 128),
        "base": (256, 512, 8, 2048, 31, 8, 8, 1024, 512, 256),
    }
    if name in table:
        C, d, h, f, k, n, m, v, D, fin = table[name]
        c.update({"model.frontend_channels": C, "model.dim": d, "model.heads": h, "model.ffn_dim": f, "model.conv_kernel": k,
                  "model.contrastive_blocks": n, "model.mlm_blocks": m, "quantizer.entries": v, "quantizer.dim": D,
                  "model.final_dim": fin, "model.pos_conv_kernel": 128, "model.pos_conv_groups": 16,
                  "quantizer.tau_end": 0.1, "quantizer.tau_decay": 0.999995, "optimizer.clip_norm": 10.0})
    return c


def feature_width(c):
    """F, the width of an input step: 80 mel bins (audio), C channels (series), 1 token id stored as a float (tokens)."""
    return {"audio": MEL, "series": c["data.channels"], "tokens": 1}[c["data.kind"]]


def encoder_length(c, t0):
    if c["model.frontend"] == "conv2d":
        return ((t0 - 1) // 2 - 1) // 2
    return t0 // c["model.stack_frames"]   # stack, embed: groups of k steps, a trailing partial group dropped


# ----------------------------------------------------------------------------------------------------
# Modules

class Weight(nn.Module):
    """A bare weight (the Conformer's pointwise and depthwise convolutions), named `<module>.weight`."""
    def __init__(self, *shape):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*shape))


def add_lora(module, c, target, inp, out):
    """LoRA: an adapter on a block's Linear, as parameters `<linear>.lora_a` [r, in] and
    `<linear>.lora_b` [out, r] when `adapter.targets` names it; `lin` applies y = x Wᵀ + b + (α/r)(x Aᵀ) Bᵀ."""
    module.lora_scale = None
    module.hl_a = None   # hyper-lora: per-utterance factors [B, r, in], [B, out, r] set by W2VBert.generate_lora
    if c["adapter.kind"] == "hyper-lora" and target in c["adapter.targets"].split(","):
        module.hl_scale = c["adapter.alpha"] / c["adapter.rank"]
    if c["adapter.kind"] == "lora" and target in c["adapter.targets"].split(","):
        r = c["adapter.rank"]
        module.lora_a = nn.Parameter(torch.empty(r, inp))
        module.lora_b = nn.Parameter(torch.empty(out, r))
        module.lora_scale = c["adapter.alpha"] / r
    return module


def lin(module, x):
    y = x @ module.weight.t()
    if getattr(module, "bias", None) is not None:
        y = y + module.bias
    if module.lora_scale is not None:
        y = y + module.lora_scale * ((x @ module.lora_a.t()) @ module.lora_b.t())
    if module.hl_a is not None:   # x [B, T, in]: utterance b uses its own factors
        y = y + module.hl_scale * torch.einsum("btr,bor->bto", torch.einsum("bti,bri->btr", x, module.hl_a), module.hl_b)
    return y


def adapter_sites(c):
    """The adapted Linear layers of a block (site, out, in), in the Swift layout's order."""
    d, f, t = c["model.dim"], c["model.ffn_dim"], c["adapter.targets"].split(",")
    out = []
    for ffn in ("ffn1", "ffn2"):
        if "ffn.fc1" in t:
            out.append((f"{ffn}.fc1", f, d))
        if "ffn.fc2" in t:
            out.append((f"{ffn}.fc2", d, f))
    out += [(f"attn.{w}", d, d) for w in ("q", "k", "v", "out") if f"attn.{w}" in t]
    if "conv.pw1" in t:
        out.append(("conv.pw1", 2 * d, d))
    if "conv.pw2" in t:
        out.append(("conv.pw2", d, d))
    return out


def hyper_sites(c):
    """model.hypernetwork: the generated block weights (site, out, in)."""
    d, f, h = c["model.dim"], c["model.ffn_dim"], c["model.hypernetwork"]
    if h == "none":
        return []
    out = [(f"{ffn}.{fc}", o, i) for ffn in ("ffn1", "ffn2") for fc, o, i in (("fc1", f, d), ("fc2", d, f))]
    if h == "ffn+conv":
        out += [("conv.pw1", 2 * d, d), ("conv.pw2", d, d)]
    return out


def site_module(root, site, create=False):
    """The module at dotted path `site` under root (create: add empty nn.Modules for missing parts)."""
    for part in site.split("."):
        if create and not hasattr(root, part):
            root.add_module(part, nn.Module())
        root = getattr(root, part)
    return root


class FeatureEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.kind = c["model.frontend"]
        d = c["model.dim"]
        assert (self.kind == "embed") == (c["data.kind"] == "tokens"), "model.frontend embed is the token front end"
        if self.kind == "conv2d":
            assert c["data.kind"] == "audio"
            C = c["model.frontend_channels"]
            self.conv1 = nn.Conv2d(1, C, 3, stride=2)
            self.conv2 = nn.Conv2d(C, C, 3, stride=2)
            self.proj = nn.Linear(C * 19, d)
        elif self.kind == "embed":
            # tokens: table E [V, e], k embeddings side by side, no LayerNorm before the projection
            V, e, self.k = c["data.vocab_size"], c["model.frontend_channels"], c["model.stack_frames"]
            assert V >= 2
            self.embedding = nn.Embedding(V, e)
            self.proj = nn.Linear(self.k * e, d)
        else:
            # stack: k steps of F values side by side (audio: k = 2, F = 80)
            self.k, self.F = c["model.stack_frames"], feature_width(c)
            assert self.F >= 1
            # model.stack_norm false (series-tiny): the stacked steps go to the projection as they are
            self.stack_norm = nn.LayerNorm(self.k * self.F) if c["model.stack_norm"] else nn.Identity()
            self.proj = nn.Linear(self.k * self.F, d)
        # model.frontend_norm false (the Hugging Face family): z is the projection's output.
        self.norm = nn.LayerNorm(d) if c["model.frontend_norm"] else nn.Identity()

    def forward(self, x):  # x [B, T0, F]
        B, T0, _ = x.shape
        if self.kind == "conv2d":
            y = torch.relu(self.conv1(x[:, None]))          # [B, C, H1, 39], time is the height
            y = torch.relu(self.conv2(y))                   # [B, C, T, 19]
            y = y.permute(0, 2, 1, 3).reshape(B, y.shape[2], -1)  # channel-major flatten c·19 + f
            return self.norm(self.proj(y))
        k = self.k
        T = T0 // k
        if self.kind == "embed":
            ids = x[:, :k * T, 0].long()                    # exact integers 0…V−1 stored as floats
            y = self.embedding.weight[ids].reshape(B, T, -1)  # [E[x_kt] | … | E[x_kt+k−1]]
            return self.norm(self.proj(y))
        x = torch.where(torch.isnan(x), torch.zeros_like(x), x)   # a missing value is 0, the channel mean
        y = x[:, :k * T].reshape(B, T, k * self.F)          # [step kt | … | step kt+k−1]
        return self.norm(self.proj(self.stack_norm(y)))


def drop(x, p, training, dm):
    """Dropout; with `dm` (an iterator of given masks, forward order) the next mask is applied instead."""
    if dm is not None:
        return x * next(dm)
    return Fn.dropout(x, p, training)


class FFN(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f, p = c["model.dim"], c["model.ffn_dim"], c["model.dropout"]
        self.norm = nn.LayerNorm(d)
        self.fc1 = add_lora(nn.Linear(d, f), c, "ffn.fc1", d, f)
        self.fc2 = add_lora(nn.Linear(f, d), c, "ffn.fc2", f, d)
        self.p = p

    def forward(self, x, dm=None):
        h = drop(Fn.silu(lin(self.fc1, self.norm(x))), self.p, self.training, dm)
        return drop(lin(self.fc2, h), self.p, self.training, dm)


def rope(x):  # x [B, h, T, dh], pairs (i, i + dh/2)
    dh = x.shape[-1]
    half = dh // 2
    theta = 10000.0 ** (-2.0 * torch.arange(half, dtype=torch.float64) / dh)
    ang = torch.arange(x.shape[2], dtype=torch.float64)[:, None] * theta[None]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


# bench --attention sdpa: torch's fused scaled_dot_product_attention (no T×T matrix kept on CPU) where the position
# mode allows it; the fixtures always use the explicit softmax below.
SDPA = False


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["model.dim"]
        self.h = c["model.heads"]
        self.norm = nn.LayerNorm(d)
        self.q, self.k, self.v, self.out = (add_lora(nn.Linear(d, d), c, "attn." + w, d, d) for w in ("q", "k", "v", "out"))
        self.position = c["model.position"]
        self.p = c["model.dropout"]
        if self.position == "shaw":
            self.left, self.right = c["model.shaw_left"], c["model.shaw_right"]
            self.rel_key = nn.Parameter(torch.empty(self.left + self.right + 1, d // self.h))

    def forward(self, x, valid, dm=None):  # valid [B, T] bool
        B, T, d = x.shape
        dh = d // self.h
        y = self.norm(x)
        q = lin(self.q, y).view(B, T, self.h, dh).transpose(1, 2)
        k = lin(self.k, y).view(B, T, self.h, dh).transpose(1, 2)
        v = lin(self.v, y).view(B, T, self.h, dh).transpose(1, 2)
        qs, ks = (rope(q), rope(k)) if self.position == "rope" else (q, k)
        if SDPA and self.position != "shaw":
            mask = None if bool(valid.all()) else valid[:, None, None, :]
            att = Fn.scaled_dot_product_attention(qs, ks, v, attn_mask=mask)
            return drop(lin(self.out, att.transpose(1, 2).reshape(B, T, d)), self.p, self.training, dm)
        scores = qs @ ks.transpose(-1, -2)
        if self.position == "shaw":
            pos = torch.arange(T)
            idx = (pos[None, :] - pos[:, None]).clamp(-self.left, self.right) + self.left  # [T(i), T(j)]
            scores = scores + (q @ self.rel_key.t())[:, :, torch.arange(T)[:, None], idx]
        scores = scores / math.sqrt(dh)
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v
        return drop(lin(self.out, att.transpose(1, 2).reshape(B, T, d)), self.p, self.training, dm)


class ConvModule(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, k = c["model.dim"], c["model.conv_kernel"]
        self.norm = nn.LayerNorm(d)
        self.pw1 = add_lora(Weight(2 * d, d), c, "conv.pw1", d, 2 * d)
        self.dw = Weight(d, k)
        self.dw_norm = nn.LayerNorm(d)
        self.pw2 = add_lora(Weight(d, d), c, "conv.pw2", d, d)
        self.k, self.causal, self.p = k, c["model.causal_conv"], c["model.dropout"]

    def forward(self, x, valid, dm=None):
        y = lin(self.pw1, self.norm(x))
        y = Fn.glu(y, dim=-1)                                # first half ⊙ σ(second half)
        y = y * valid[..., None]
        left = self.k - 1 if self.causal else (self.k - 1) // 2
        right = self.k - 1 - left
        y = Fn.pad(y.transpose(1, 2), (left, right))
        y = Fn.conv1d(y, self.dw.weight[:, None, :], groups=y.shape[1]).transpose(1, 2)
        y = lin(self.pw2, Fn.silu(self.dw_norm(y)))
        return drop(y, self.p, self.training, dm)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["model.dim"]
        self.ffn1 = FFN(c)
        self.attn = Attention(c)
        self.conv = ConvModule(c)
        self.ffn2 = FFN(c)
        self.norm = nn.LayerNorm(d)

    def forward(self, x, valid, dm=None):
        x = x + 0.5 * self.ffn1(x, dm)
        x = x + self.attn(x, valid, dm)
        x = x + self.conv(x, valid, dm)
        x = x + 0.5 * self.ffn2(x, dm)
        return self.norm(x)


class Stack(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.blocks = nn.ModuleList(Block(c) for _ in range(n))


class Quantizer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.G, self.V, D = c["quantizer.groups"], c["quantizer.entries"], c["quantizer.dim"]
        self.proj = nn.Linear(c["model.dim"], self.G * self.V)
        self.codebook = nn.Parameter(torch.empty(self.G * self.V, D // self.G))


class ContrastiveHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.context = nn.Linear(c["model.dim"], c["model.final_dim"])
        self.target = nn.Linear(c["quantizer.dim"], c["model.final_dim"])


class W2VBert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d = c["model.dim"]
        self.feature_encoder = FeatureEncoder(c)
        if c["mask.replacement"] == "learned":
            self.mask_embedding = nn.Parameter(torch.empty(d))
        self.context_proj = nn.Linear(d, d) if c["model.context_proj"] else nn.Identity()   # model.context_proj
        if c["model.position"] == "conv":
            P, Gp = c["model.pos_conv_kernel"], c["model.pos_conv_groups"]
            self.pos_conv = nn.Conv1d(d, d, P, groups=Gp, padding=P // 2)
        self.contrastive = Stack(c, c["model.contrastive_blocks"])
        self.mlm = Stack(c, c["model.mlm_blocks"])
        if c.get("model.head", "pretrain") == "ctc":
            # CTC fine-tuning (HF Wav2Vec2BertForCTC): the encoder and a Linear head to the vocabulary, no
            # quantizer and no pre-training heads
            self.ctc_head = nn.Linear(d, c["model.vocab_size"])
        else:
            self.quantizer = Quantizer(c)
            self.contrastive_head = ContrastiveHead(c)
            self.mlm_head = nn.Linear(d, c["quantizer.groups"] * c["quantizer.entries"])
        if c["adapter.kind"] == "hyper-lora":
            # Speaker adapters (hyper-lora): s = tanh(proj · mean_t z), or (adapter.speaker = table) s = table[row] with
            # N known speakers and the unknown row N; A, B = Σ_k [s; e_l]_k · gen_{a,b}[k]
            S, E, r = c["adapter.speaker_dim"], c["adapter.layer_dim"], c["adapter.rank"]
            L = c["model.contrastive_blocks"] + c["model.mlm_blocks"]
            self.speaker = nn.Module()
            if c["adapter.speaker"] == "table":
                self.speaker.table = nn.Parameter(torch.empty(c["adapter.speakers"] + 1, S))
            else:
                self.speaker.proj = nn.Linear(d, S)
            self.hyperlora = nn.Module()
            self.hyperlora.layer_embedding = nn.Parameter(torch.empty(L, E))
            self.lora_sites = adapter_sites(c)
            for site, out, inp in self.lora_sites:
                parent = site_module(self.hyperlora, site, create=True)
                parent.gen_a = nn.Parameter(torch.empty(S + E, r, inp))
                parent.gen_b = nn.Parameter(torch.empty(S + E, out, r))
        self.sites = hyper_sites(c)
        if self.sites:
            # Hypernetwork layers: W_l = base + Σ_k e_l[k]·coef[k] (+ res_b·res_a per block)
            E, L, r = c["model.hyper_dim"], len(self.contrastive.blocks) + len(self.mlm.blocks), c["model.hyper_rank"]
            self.hypernet = nn.Module()
            self.hypernet.layer_embedding = nn.Parameter(torch.empty(L, E))
            for site, out, inp in self.sites:
                parent = site_module(self.hypernet, site, create=True)
                parent.base = nn.Parameter(torch.empty(out, inp))
                parent.coef = nn.Parameter(torch.empty(E, out, inp))
                for blk in self.blocks():
                    lm = site_module(blk, site)
                    del lm.weight
                    lm.weight = None
                    if r > 0:
                        lm.res_a = nn.Parameter(torch.empty(r, inp))
                        lm.res_b = nn.Parameter(torch.empty(out, r))
        self.reset_parameters()

    def blocks(self):
        return list(self.contrastive.blocks) + list(self.mlm.blocks)

    def generate_lora(self, z, valid, lengths, speakers=None):
        """hyper-lora: the speaker vectors [B, S] and every block's per-utterance LoRA factors. `speakers` [B]:
        table rows (−1 or ≥ N: the unknown row N; None: all unknown)."""
        if self.c["adapter.speaker"] == "table":
            n = self.c["adapter.speakers"]
            rows = torch.full((z.shape[0],), n, dtype=torch.long) if speakers is None else torch.tensor(
                [int(k) if 0 <= k < n else n for k in speakers], dtype=torch.long)
            s = self.speaker.table[rows]
        else:
            pooled = (z * valid[..., None]).sum(1) / lengths[:, None].to(z.dtype)
            s = torch.tanh(self.speaker.proj(pooled))
        for i, blk in enumerate(self.blocks()):
            h = torch.cat([s, self.hyperlora.layer_embedding[i].expand(s.shape[0], -1)], 1)
            for site, out, inp in self.lora_sites:
                g = site_module(self.hyperlora, site)
                lm = site_module(blk, site)
                lm.hl_a = torch.einsum("bk,kri->bri", h, g.gen_a)
                lm.hl_b = torch.einsum("bk,kor->bor", h, g.gen_b)
        return s

    def generate(self):
        """Hypernetwork layers: every block's generated weights from its layer embedding."""
        for i, blk in enumerate(self.blocks()):
            e = self.hypernet.layer_embedding[i]
            for site, out, inp in self.sites:
                h = site_module(self.hypernet, site)
                lm = site_module(blk, site)
                w = h.base + torch.einsum("k,kij->ij", e, h.coef)
                if hasattr(lm, "res_a"):
                    w = w + lm.res_b @ lm.res_a
                lm.weight = w

    @torch.no_grad()
    def reset_parameters(self):
        """Initialisation: the quantizer, the canonical tensors and the binding choices of docs/method.md."""
        d = self.c["model.dim"]
        for name, p in self.named_parameters():
            if name.endswith((".coef", ".res_b", ".gen_b")):
                p.zero_()
            elif name in ("hypernet.layer_embedding", "hyperlora.layer_embedding"):
                p.normal_(0, 1)
            elif name == "speaker.table":   # N(0, 1) rows, the unknown-speaker row (last) zeros
                p.normal_(0, 1)
                p[-1].zero_()
            elif name.endswith(".res_a"):
                p.uniform_(-1 / math.sqrt(p.shape[1]), 1 / math.sqrt(p.shape[1]))
            elif name.endswith(".lora_a"):   # PyTorch LoRA / PEFT: A Kaiming-uniform (a = √5), B zeros
                p.uniform_(-1 / math.sqrt(p.shape[1]), 1 / math.sqrt(p.shape[1]))
            elif name.endswith(".lora_b"):
                p.zero_()
            elif name == "quantizer.proj.weight":
                p.normal_(0, 1 / math.sqrt(d))
            elif name in ("quantizer.codebook", "mask_embedding"):
                p.uniform_(0, 1)
            elif name == "feature_encoder.embedding.weight":   # token table N(0, 1), as torch's nn.Embedding
                p.normal_(0, 1)
            elif name.endswith("rel_key"):
                p.normal_(0, 0.02)
            elif name.endswith(".bias"):
                p.zero_()
            elif "norm" in name.split(".")[-2]:
                p.fill_(1.0)
            elif any(s in name for s in ("conv1.", "conv2.", "pos_conv.", ".pw1.", ".pw2.", ".dw.")):
                fan_in = p[0].numel()
                bound = 1 / math.sqrt(fan_in)
                p.uniform_(-bound, bound)
            else:  # Linear weights
                p.normal_(0, 0.02)

    def forward(self, feats, t0, mask, noise_mask, gumbel, distractors, tau, drop_masks=None, dropped=None, speakers=None):
        """feats [B, T0, F] (F = feature_width; a series may hold NaN); t0 [B]; mask [B, T] bool; noise in masked-frame
        (b, t) order; optional dropout masks (forward order) and layer-drop decisions (contrastive blocks, then MLM
        blocks).
        Returns (loss, metrics dict) for one process holding the whole batch."""
        c = self.c
        G, V = c["quantizer.groups"], c["quantizer.entries"]
        z = self.feature_encoder(feats)
        B, T, d = z.shape
        lengths = torch.tensor([encoder_length(c, int(n)) for n in t0])
        valid = torch.arange(T)[None, :] < lengths[:, None]
        mask = mask & valid
        if c["adapter.kind"] == "hyper-lora":
            self.generate_lora(z, valid, lengths, speakers)
        # masking
        x = z.clone()
        if c["mask.replacement"] == "learned":
            x[mask] = self.mask_embedding.expand(int(mask.sum()), d).to(x.dtype)
        else:
            x[mask] = noise_mask.to(x.dtype)  # (a no-op in fp32; under autocast z is bf16)
        x = self.context_proj(x)
        if c["model.position"] == "conv":
            x = x * valid[..., None]
            x = x + Fn.gelu(self.pos_conv(x.transpose(1, 2))[..., :T].transpose(1, 2))
        dm = iter(drop_masks) if drop_masks is not None else None
        if self.sites:
            self.generate()
        blocks = self.blocks()
        for i, blk in enumerate(blocks):
            if not (dropped is not None and dropped[i]):   # layer drop: the block is the identity
                x = blk(x, valid, dm)
            if i == len(self.contrastive.blocks) - 1:
                ctx = x
        m = x
        # quantizer on unmasked z at masked frames
        zq = z[mask]
        if c["quantizer.detach_targets"]:
            zq = zq.detach()
        S = zq.shape[0]
        logits = self.quantizer.proj(zq).view(S, G, V)
        noisy = logits + gumbel.view(S, G, V)
        ids = noisy.argmax(-1)                                     # [S, G]
        soft = torch.softmax(noisy / tau, -1)
        hard = Fn.one_hot(ids, V).to(soft.dtype)
        y = hard - soft.detach() + soft                            # straight-through
        q = torch.einsum("sgv,gve->sge", y, self.quantizer.codebook.view(G, V, -1)).reshape(S, -1)
        pbar = torch.softmax(logits, -1).mean(0)                   # [G, V], no noise, no τ
        prob_ppl = torch.exp(-(pbar * torch.log(pbar + 1e-7)).sum(-1)).sum()
        counts = Fn.one_hot(ids, V).to(pbar.dtype).mean(0)
        code_ppl = torch.exp(-(counts * torch.log(counts + 1e-7)).sum(-1)).sum()
        L_d = (G * V - prob_ppl) / (G * V)
        # contrastive
        cproj = self.contrastive_head.context(ctx[mask])           # [S, F]
        tproj = self.contrastive_head.target(q)                    # [S, F]
        cand = torch.cat([torch.arange(S)[:, None], distractors.long()], 1)   # [S, K+1]
        tc = tproj[cand]                                           # [S, K+1, F]
        na = cproj.norm(dim=-1).clamp_min(1e-8)
        nb = tc.norm(dim=-1).clamp_min(1e-8)
        cos = (cproj[:, None, :] * tc).sum(-1) / (na[:, None] * nb)
        same = (ids[cand[:, 1:]] == ids[:, None, :]).all(-1)       # distractor with the positive's ids
        clog = (cos / c["loss.kappa"]).clone()
        clog[:, 1:] = clog[:, 1:].masked_fill(same, float("-inf"))
        L_w = Fn.cross_entropy(clog, torch.zeros(S, dtype=torch.long), reduction="sum")
        pos = clog[:, :1]
        c_acc = ((clog[:, 1:] < pos) | same).all(-1).sum()
        # MLM
        mlog = self.mlm_head(m[mask]).view(S * G, V)
        tgt = ids.reshape(-1).detach()
        L_m = Fn.cross_entropy(mlog, tgt, reduction="sum") / G
        m_acc = (mlog.argmax(-1) == tgt).sum()
        loss = (c["loss.contrastive_weight"] * L_w + c["loss.mlm_weight"] * L_m) / S + c["loss.diversity_weight"] * L_d
        return loss, dict(L_w=L_w, L_m=L_m, L_d=L_d, c_acc=c_acc, m_acc=m_acc, prob_ppl=prob_ppl, code_ppl=code_ppl, S=S)


    def forward_ctc(self, feats, t0, labels, label_lengths):
        """The CTC model without masking or dropout: feats [B, T0, 80]; labels flattened, label_lengths [B].
        Returns (Σ_b loss_b / L_b, per-utterance losses [B], logits [B, T, V])."""
        c = self.c
        z = self.feature_encoder(feats)
        B, T, d = z.shape
        lengths = torch.tensor([encoder_length(c, int(n)) for n in t0])
        valid = torch.arange(T)[None, :] < lengths[:, None]
        x = self.context_proj(z)
        if c["model.position"] == "conv":
            x = x * valid[..., None]
            x = x + Fn.gelu(self.pos_conv(x.transpose(1, 2))[..., :T].transpose(1, 2))
        for blk in self.blocks():
            x = blk(x, valid, None)
        logits = self.ctc_head(x)
        lp = torch.log_softmax(logits, -1).transpose(0, 1)         # [T, B, V]
        ll = torch.tensor(label_lengths, dtype=torch.long)
        losses = Fn.ctc_loss(lp, torch.tensor(labels, dtype=torch.long), lengths, ll, blank=0, reduction="none",
                             zero_infinity=True)
        return (losses / ll.to(losses.dtype)).sum(), losses, logits


def fixture_model_and_features(spec):
    """The model and inputs of a fixture spec, from its seed: the config (preset + overrides), a float64 model with
    every parameter perturbed a little (so zero biases and unit norms hide no error) and rounded to float32 values
    (the Swift side's), and N(0, 1) features [B, T0, F] with each utterance's padding zero (tokens: ids uniform in
    0…V−1 as floats [B, T0, 1], padding id 0; series: then NaN at the spec's `nan` entries (b, t, channel), channel
    None for the whole step). Returns (c, model, feats, rng): rng continues the spec's stream for the fixture's
    further draws."""
    torch.manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    c = preset(spec["preset"])
    c.update(spec["over"])
    model = W2VBert(c).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
            p.copy_(p.float().double())
    t0 = spec["t0"]
    F = feature_width(c)
    feats = np.zeros((len(t0), max(t0), F), dtype=np.float32)
    for b, n in enumerate(t0):
        if c["data.kind"] == "tokens":
            feats[b, :n, 0] = rng.integers(0, c["data.vocab_size"], n).astype(np.float32)
        else:
            feats[b, :n] = rng.standard_normal((n, F)).astype(np.float32)
    for b, t, ch in spec.get("nan", []):
        feats[b, t, slice(None) if ch is None else ch] = np.nan
    return c, model, feats, rng


def write_ctc_fixture(name, spec, outdir):
    """A CTC fixture: inputs, labels, parameters, logits, per-utterance losses, Σ loss_b / L_b and every gradient."""
    from safetensors.numpy import save_file
    c, model, feats, rng = fixture_model_and_features(spec)
    t0 = spec["t0"]
    labels = [l for seq in spec["labels"] for l in seq]
    label_lengths = [len(seq) for seq in spec["labels"]]
    init = {f"param.{n}": p.detach().float().numpy().copy() for n, p in model.named_parameters()}
    model.zero_grad()
    loss, losses, logits = model.forward_ctc(torch.tensor(feats, dtype=torch.float64), t0, labels, label_lengths)
    loss.backward()
    grads = {f"grad.{n}": p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
    tensors = {"input.features": feats, "input.lengths": np.array(t0, dtype=np.int32),
               "input.labels": np.array(labels, dtype=np.int32),
               "input.label_lengths": np.array(label_lengths, dtype=np.int32),
               "out.logits": logits.detach().numpy().copy(), "out.losses": losses.detach().numpy().copy(),
               "out.loss": np.array([loss.item()])}
    tensors.update(init)
    tensors.update(grads)
    meta = {"overrides": "\n".join(f"{k}={fmt(v)}" for k, v in sorted(spec["over"].items())), "preset": spec["preset"]}
    path = os.path.join(outdir, f"fixture_{name}.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"{path}: loss={loss.item():.6f} losses={losses.tolist()}")


def no_decay(name):
    """No weight decay on biases, norms, the codebook, Shaw tables, the mask embedding, the tables (layer embeddings,
    speaker table, token table)."""
    parts = name.split(".")
    if name in ("quantizer.codebook", "mask_embedding", "hypernet.layer_embedding", "hyperlora.layer_embedding", "speaker.table",
                "feature_encoder.embedding.weight") or parts[-1] in ("bias", "rel_key"):
        return True
    return len(parts) >= 2 and "norm" in parts[-2]


def lr_at(c, step):
    u, w, peak = step + 1, max(c["optimizer.warmup"], 1), c["optimizer.lr"]
    if c["optimizer.schedule"] == "transformer":
        return peak * min(u / w, math.sqrt(w / u))
    if u <= w:
        return peak * u / w
    M = c["optimizer.max_steps"]
    return peak * max(0.0, (M - u) / max(M - w, 1))


def tau_at(c, step):
    return max(c["quantizer.tau_start"] * c["quantizer.tau_decay"] ** step, c["quantizer.tau_end"])


def trainable(model, c):
    """train.trainable: every parameter, or (adapters) the LoRA tensors only."""
    return [(n, p) for n, p in model.named_parameters()
            if c["train.trainable"] == "all" or n.endswith((".lora_a", ".lora_b")) or n.startswith(("hyperlora.", "speaker."))]


def make_optimizer(model, c):
    dec = [p for n, p in trainable(model, c) if not no_decay(n)]
    nod = [p for n, p in trainable(model, c) if no_decay(n)]
    return torch.optim.AdamW([{"params": dec, "weight_decay": c["optimizer.weight_decay"]},
                              {"params": nod, "weight_decay": 0.0}],
                             lr=c["optimizer.lr"], betas=(0.9, 0.98), eps=c["optimizer.eps"])


# ----------------------------------------------------------------------------------------------------
# Masks and random draws (numpy; stored explicitly in the fixtures)

def make_mask(c, lengths, T, rng):
    mask = np.zeros((len(lengths), T), dtype=np.uint8)
    span, prob, mins = c["mask.span"], c["mask.prob"], c["mask.min_spans"]
    for b, L in enumerate(lengths):
        choices = L - span + 1
        n = min(max(mins, int(prob * L / span + rng.random())), choices)
        for s in rng.choice(choices, n, replace=False):
            mask[b, s:s + span] = 1
    return mask


def draws(c, mask, rng):
    G, V, d, K = c["quantizer.groups"], c["quantizer.entries"], c["model.dim"], c["loss.num_negatives"]
    rows = [(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[b, t]]
    S = len(rows)
    noise = (rng.standard_normal((S, d)) * c["mask.random_std"]).astype(np.float32)
    u = rng.random((S, G * V))
    gumbel = (-np.log(-np.log(u))).astype(np.float32)
    dist = np.zeros((S, K), dtype=np.int32)
    start = {}
    for i, (b, t) in enumerate(rows):
        start.setdefault(b, i)
    for i, (b, t) in enumerate(rows):
        members = [j for j, (bb, _) in enumerate(rows) if bb == b and j != i]
        dist[i] = rng.choice(members, K, replace=True)
    return noise, gumbel, dist


# ----------------------------------------------------------------------------------------------------
# Fixtures

MICRO = {
    # conv2d frontend + positional conv (even P) + random replacement, G = 1
    "a": dict(preset="tiny", t0=[95, 71], seed=1, over={
        "model.frontend": "conv2d", "model.frontend_channels": 4, "model.dim": 32, "model.heads": 4, "model.ffn_dim": 64,
        "model.conv_kernel": 5, "model.contrastive_blocks": 2, "model.mlm_blocks": 1, "model.position": "conv",
        "model.pos_conv_kernel": 6, "model.pos_conv_groups": 4, "model.final_dim": 16,
        "quantizer.groups": 1, "quantizer.entries": 24, "quantizer.dim": 16, "quantizer.tau_start": 2.0,
        "quantizer.tau_end": 0.5, "quantizer.tau_decay": 0.8, "mask.replacement": "random", "mask.span": 4,
        "loss.num_negatives": 5, "optimizer.lr": 0.01, "optimizer.warmup": 3, "optimizer.clip_norm": 1.0}),
    # stack frontend + shaw + learned mask embedding + causal even depthwise kernel, polynomial schedule
    "b": dict(preset="tiny", t0=[53, 38], seed=2, over={
        "model.frontend": "stack", "model.dim": 32, "model.heads": 2, "model.ffn_dim": 48, "model.conv_kernel": 4,
        "model.causal_conv": True, "model.contrastive_blocks": 1, "model.mlm_blocks": 2, "model.position": "shaw",
        "model.shaw_left": 3, "model.shaw_right": 2, "model.final_dim": 12,
        "quantizer.groups": 1, "quantizer.entries": 16, "quantizer.dim": 32, "quantizer.tau_decay": 0.9,
        "mask.replacement": "learned", "mask.span": 4, "loss.num_negatives": 4,
        "optimizer.lr": 0.005, "optimizer.warmup": 2, "optimizer.schedule": "polynomial", "optimizer.max_steps": 10,
        "optimizer.clip_norm": 0.5}),
    # rope + G = 2 codebooks + detached targets + loss weights, even "same" depthwise kernel
    "c": dict(preset="tiny", t0=[83, 99], seed=3, over={
        "model.frontend": "conv2d", "model.frontend_channels": 3, "model.dim": 32, "model.heads": 4, "model.ffn_dim": 64,
        "model.conv_kernel": 6, "model.contrastive_blocks": 2, "model.mlm_blocks": 1, "model.position": "rope",
        "model.final_dim": 16, "quantizer.groups": 2, "quantizer.entries": 12, "quantizer.dim": 16,
        "quantizer.detach_targets": True, "quantizer.tau_decay": 0.95, "mask.span": 3, "loss.num_negatives": 6,
        "loss.mlm_weight": 0.5, "loss.diversity_weight": 0.3, "loss.kappa": 0.2,
        "optimizer.lr": 0.003, "optimizer.warmup": 4, "optimizer.clip_norm": 2.0, "optimizer.weight_decay": 0.1}),
    # dropout (given masks) + layer drop (given decisions) + odd positional kernel, conv2d frontend
    "d": dict(preset="tiny", t0=[77, 90], seed=4, dropped=[False, True, False, False], over={
        "model.frontend": "conv2d", "model.frontend_channels": 4, "model.dim": 32, "model.heads": 4, "model.ffn_dim": 64,
        "model.conv_kernel": 5, "model.contrastive_blocks": 2, "model.mlm_blocks": 2, "model.position": "conv",
        "model.pos_conv_kernel": 5, "model.pos_conv_groups": 2, "model.final_dim": 16, "model.dropout": 0.15,
        "model.layer_drop": 0.3, "quantizer.entries": 20, "quantizer.dim": 32, "mask.span": 4, "loss.num_negatives": 5,
        "optimizer.lr": 0.01, "optimizer.warmup": 3}),
    # the Hugging Face family (tiny2's architecture, small): stack front end without LayerNorm(d), no context
    # projection, shaw, causal odd depthwise kernel, learned mask embedding, dropout (given masks)
    "e": dict(preset="tiny", t0=[61, 44], seed=5, over={
        "model.frontend": "stack", "model.frontend_norm": False, "model.context_proj": False, "model.dim": 32,
        "model.heads": 2, "model.ffn_dim": 48, "model.conv_kernel": 5, "model.causal_conv": True,
        "model.contrastive_blocks": 1, "model.mlm_blocks": 2, "model.position": "shaw", "model.shaw_left": 4,
        "model.shaw_right": 2, "model.final_dim": 12, "model.dropout": 0.1, "quantizer.entries": 16, "quantizer.dim": 32,
        "quantizer.tau_decay": 0.9, "mask.replacement": "learned", "mask.span": 4, "loss.num_negatives": 4,
        "optimizer.lr": 0.005, "optimizer.warmup": 2}),
    # LoRA on all eight Linear layers of every block (r = 3, α = 5), base frozen (the trajectory
    # trains the adapters only; the gradients stored are those of every tensor)
    "f_lora": dict(preset="tiny", t0=[91, 66], seed=5, over={
        "model.frontend": "conv2d", "model.frontend_channels": 3, "model.dim": 24, "model.heads": 2, "model.ffn_dim": 40,
        "model.conv_kernel": 5, "model.contrastive_blocks": 1, "model.mlm_blocks": 1, "model.position": "conv",
        "model.pos_conv_kernel": 4, "model.pos_conv_groups": 2, "model.final_dim": 12,
        "quantizer.entries": 16, "quantizer.dim": 16, "quantizer.tau_decay": 0.9, "mask.span": 4, "loss.num_negatives": 4,
        "optimizer.lr": 0.01, "optimizer.warmup": 2, "optimizer.clip_norm": 0.5,
        "adapter.kind": "lora", "adapter.rank": 3, "adapter.alpha": 5.0,
        "adapter.targets": "attn.q,attn.k,attn.v,attn.out,ffn.fc1,ffn.fc2,conv.pw1,conv.pw2", "train.trainable": "adapters"}),
    # Hypernetwork layers (FFN and pointwise-conv weights of 3 blocks from E = 2 layer embeddings,
    # per-block rank-2 residuals), layer drop of the middle block (given)
    "g_hyper": dict(preset="tiny", t0=[87, 70], seed=6, dropped=[False, True, False], over={
        "model.frontend": "conv2d", "model.frontend_channels": 3, "model.dim": 24, "model.heads": 2, "model.ffn_dim": 40,
        "model.conv_kernel": 5, "model.contrastive_blocks": 2, "model.mlm_blocks": 1, "model.position": "conv",
        "model.pos_conv_kernel": 4, "model.pos_conv_groups": 2, "model.final_dim": 12, "model.layer_drop": 0.2,
        "quantizer.entries": 16, "quantizer.dim": 16, "quantizer.tau_decay": 0.9, "mask.span": 4, "loss.num_negatives": 4,
        "optimizer.lr": 0.01, "optimizer.warmup": 2,
        "model.hypernetwork": "ffn+conv", "model.hyper_dim": 2, "model.hyper_rank": 2}),
    # Hyper-lora speaker adapters (speaker vector from the signal, S = 3, E = 2, r = 2) on four
    # Linear layers of 3 blocks, 3 utterances (each its own factors), layer drop of the middle block (given),
    # base frozen (the trajectory trains the speaker encoder and the generator only)
    "h_hyperlora": dict(preset="tiny", t0=[89, 64, 77], seed=7, dropped=[False, True, False], over={
        "model.frontend": "conv2d", "model.frontend_channels": 3, "model.dim": 24, "model.heads": 2, "model.ffn_dim": 40,
        "model.conv_kernel": 5, "model.contrastive_blocks": 2, "model.mlm_blocks": 1, "model.position": "conv",
        "model.pos_conv_kernel": 4, "model.pos_conv_groups": 2, "model.final_dim": 12, "model.layer_drop": 0.2,
        "quantizer.entries": 16, "quantizer.dim": 16, "quantizer.tau_decay": 0.9, "mask.span": 4, "loss.num_negatives": 4,
        "optimizer.lr": 0.01, "optimizer.warmup": 2, "optimizer.clip_norm": 0.5,
        "adapter.kind": "hyper-lora", "adapter.rank": 2, "adapter.alpha": 3.0, "adapter.speaker_dim": 3,
        "adapter.layer_dim": 2, "adapter.targets": "attn.q,attn.v,ffn.fc1,conv.pw2", "train.trainable": "adapters"}),
    # Hyper-lora with the speaker table (N = 2 known speakers + the unknown row, S = 3): 4 utterances
    # of speakers 1, unknown (−1), 1 (a row shared by two utterances), 0; otherwise as h_hyperlora
    "i_hyperlora_table": dict(preset="tiny", t0=[89, 64, 77, 58], seed=8, dropped=[False, True, False], speakers=[1, -1, 1, 0], over={
        "model.frontend": "conv2d", "model.frontend_channels": 3, "model.dim": 24, "model.heads": 2, "model.ffn_dim": 40,
        "model.conv_kernel": 5, "model.contrastive_blocks": 2, "model.mlm_blocks": 1, "model.position": "conv",
        "model.pos_conv_kernel": 4, "model.pos_conv_groups": 2, "model.final_dim": 12, "model.layer_drop": 0.2,
        "quantizer.entries": 16, "quantizer.dim": 16, "quantizer.tau_decay": 0.9, "mask.span": 4, "loss.num_negatives": 4,
        "optimizer.lr": 0.01, "optimizer.warmup": 2, "optimizer.clip_norm": 0.5,
        "adapter.kind": "hyper-lora", "adapter.speaker": "table", "adapter.speakers": 2, "adapter.rank": 2, "adapter.alpha": 3.0,
        "adapter.speaker_dim": 3, "adapter.layer_dim": 2, "adapter.targets": "attn.q,attn.v,ffn.fc1,conv.pw2",
        "train.trainable": "adapters"}),
}
# series: C = 6 channels, the stack front end over k = 3 steps (LayerNorm(18)), no LayerNorm(d); missing values:
# the whole step 17 of utterance 0, single values at (0, 40, 2), (0, 62, 4), (1, 5, 0), (1, 33, 5), and one in
# utterance 0's step 90, dropped with its partial group (T0 = 91 → T = 30); otherwise as b
MICRO["k_series"] = dict(preset="tiny", t0=[91, 75], seed=10,
                         nan=[(0, 17, None), (0, 40, 2), (0, 62, 4), (0, 90, 1), (1, 5, 0), (1, 33, 5)],
                         over=dict(MICRO["b"]["over"], **{
                             "data.kind": "series", "data.channels": 6, "model.stack_frames": 3,
                             "model.frontend_norm": False}))
# tokens: V = 5 (A C G T N), the embed front end (e = 8) over k = 4 ids, LayerNorm(d); T0 = 128 and 100
# (T = 32 and 25, padding id 0); otherwise as b
MICRO["l_tokens"] = dict(preset="tiny", t0=[128, 100], seed=11, over=dict(MICRO["b"]["over"], **{
    "data.kind": "tokens", "data.vocab_size": 5, "model.frontend": "embed", "model.frontend_channels": 8,
    "model.stack_frames": 4}))
# series as series-tiny builds it: no LayerNorm before the projection (model.stack_norm false), LayerNorm(d);
# otherwise as k_series
MICRO["m_series_plain"] = dict(MICRO["k_series"], seed=12, over={
    k: v for k, v in dict(MICRO["k_series"]["over"], **{"model.stack_norm": False}).items()
    if k != "model.frontend_norm"})


CTC = {
    # the CTC head on a conv2d / positional-conv encoder, V = 9 (blank, `|`, 7 letters): a repeated label, an
    # utterance with a single label; no masking, no dropout
    "j_ctc": dict(preset="tiny", t0=[95, 71], seed=9, labels=[[3, 1, 4, 4, 2, 8, 1, 5], [6]], over={
        "model.frontend": "conv2d", "model.frontend_channels": 4, "model.dim": 32, "model.heads": 4, "model.ffn_dim": 64,
        "model.conv_kernel": 5, "model.contrastive_blocks": 2, "model.mlm_blocks": 1, "model.position": "conv",
        "model.pos_conv_kernel": 6, "model.pos_conv_groups": 4, "model.head": "ctc", "model.vocab_size": 9,
        "finetune.mask_time_prob": 0.0, "finetune.freeze_frontend": False}),
}


def fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_fixture(name, spec, outdir):
    from safetensors.numpy import save_file
    c, model, feats, rng = fixture_model_and_features(spec)
    t0 = spec["t0"]
    B, T0 = len(t0), max(t0)
    T = encoder_length(c, T0)
    lengths = [encoder_length(c, n) for n in t0]
    mask = make_mask(c, lengths, T, rng)
    noise, gumbel, dist = draws(c, mask, rng)
    init = {f"param.{n}": p.detach().float().numpy().copy() for n, p in model.named_parameters()}
    extra = {}
    dropped, masks = spec.get("dropped"), None
    if c["model.dropout"] > 0:
        p, d, f = c["model.dropout"], c["model.dim"], c["model.ffn_dim"]
        nblocks = c["model.contrastive_blocks"] + c["model.mlm_blocks"]
        masks = []
        for i in range(nblocks):
            if dropped is not None and dropped[i]:
                continue
            for width in (f, d, d, d, f, d):
                masks.append(((rng.random((B, T, width)) >= p) / (1 - p)).astype(np.float32))
        for k, mk in enumerate(masks):
            extra[f"noise.dropout.{k}"] = mk
    if dropped is not None:
        extra["noise.dropped"] = np.array(dropped, dtype=np.uint8)
    if "speakers" in spec:
        extra["input.speakers"] = np.array(spec["speakers"], dtype=np.int32)
    tmasks = [torch.tensor(mk, dtype=torch.float64) for mk in masks] if masks is not None else None

    args = lambda tau: (torch.tensor(feats, dtype=torch.float64), t0, torch.tensor(mask.astype(bool)),
                        torch.tensor(noise, dtype=torch.float64), torch.tensor(gumbel, dtype=torch.float64),
                        torch.tensor(dist), tau, tmasks, dropped, spec.get("speakers"))
    model.zero_grad()
    loss, met = model(*args(tau_at(c, 0)))
    loss.backward()
    assert math.isfinite(loss.item()) and all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    grads = {f"grad.{n}": (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().numpy().copy()
             for n, p in model.named_parameters()}
    out = np.array([loss.item(), met["L_w"].item(), met["L_m"].item(), met["L_d"].item(), float(met["c_acc"]),
                    float(met["m_acc"]), met["prob_ppl"].item(), met["code_ppl"].item(), tau_at(c, 0), float(met["S"])])
    # 5 AdamW steps: loss at each step before its update.
    opt = make_optimizer(model, c)
    traj = []
    for step in range(5):
        for g in opt.param_groups:
            g["lr"] = lr_at(c, step)
        opt.zero_grad()
        loss, _ = model(*args(tau_at(c, step)))
        traj.append(loss.item())
        loss.backward()
        if c["optimizer.clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable(model, c)], c["optimizer.clip_norm"])
        opt.step()
    tensors = {"input.features": feats, "input.lengths": np.array(t0, dtype=np.int32), "input.mask": mask,
               "noise.mask": noise, "noise.gumbel": gumbel, "noise.distractors": dist,
               "out.metrics": out, "out.trajectory": np.array(traj)}
    tensors.update(init)
    tensors.update(grads)
    tensors.update(extra)
    meta = {"overrides": "\n".join(f"{k}={fmt(v)}" for k, v in sorted(spec["over"].items())),
            "preset": spec["preset"],
            "metrics": "loss,L_w_sum,L_m_sum,L_d,contrastive_correct,mlm_correct,prob_perplexity,code_perplexity,tau,masked"}
    path = os.path.join(outdir, f"fixture_{name}.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"{path}: S={met['S']} loss={out[0]:.6f} trajectory={['%.6f' % x for x in traj]}")


# ----------------------------------------------------------------------------------------------------
# Self-check of the series and token front ends: central finite differences in float64 against autograd

def selfcheck(h=1e-6):
    """The stack front end on a series (C = 3, k = 3) and the embed front end (V = 5, e = 3, k = 2), each with and
    without LayerNorm(d), d = 5, parameters perturbed: the gradient of Σ R ⊙ z (R fixed, N(0, 1)) with respect to every
    parameter element by central differences against autograd. The series holds NaN: a whole encoder frame (steps
    3–5 of utterance 0), a whole step, single values, and one in the dropped partial group. Checks z and every
    gradient finite and runs torch.autograd.gradcheck; returns the max relative error max|fd − ag| / max|ag| over
    the tensors."""
    from torch.func import functional_call
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_series = rng.standard_normal((2, 11, 3))
    x_series[0, 3:6] = np.nan                 # a whole encoder frame
    x_series[1, 7] = np.nan                   # a whole step
    x_series[0, 8, 1] = x_series[1, 1, 2] = np.nan
    x_series[0, 10, 0] = np.nan               # in the trailing partial group (T0 = 11, k = 3: T = 3)
    x_tokens = rng.integers(0, 5, (2, 9, 1)).astype(np.float64)
    x_tokens[1, 7:] = 0                       # padding
    cases = []
    for norm in (True, False):
        base = {"model.dim": 5, "model.frontend_norm": norm}
        cases.append((f"series stack k=3 C=3 frontend_norm={norm}", dict(base, **{
            "data.kind": "series", "data.channels": 3, "model.frontend": "stack", "model.stack_frames": 3}), x_series))
        cases.append((f"series stack k=3 C=3 stack_norm=False frontend_norm={norm}", dict(base, **{
            "data.kind": "series", "data.channels": 3, "model.frontend": "stack", "model.stack_frames": 3,
            "model.stack_norm": False}), x_series))
        cases.append((f"tokens embed k=2 V=5 e=3 frontend_norm={norm}", dict(base, **{
            "data.kind": "tokens", "data.vocab_size": 5, "model.frontend": "embed", "model.frontend_channels": 3,
            "model.stack_frames": 2}), x_tokens))
    worst = 0.0
    for label, over, x in cases:
        c = preset("tiny")
        c.update(over)
        fe = FeatureEncoder(c).double()
        with torch.no_grad():
            for p in fe.parameters():
                p.add_(0.3 * torch.randn_like(p))
        xt = torch.tensor(x, dtype=torch.float64)
        z = fe(xt)
        R = torch.randn_like(z)
        assert z.shape[1] == x.shape[1] // c["model.stack_frames"] and bool(torch.isfinite(z).all()), label
        fe.zero_grad()
        (z * R).sum().backward()
        errs = []
        for name, p in fe.named_parameters():
            ag = p.grad.detach().clone()
            assert bool(torch.isfinite(ag).all()), (label, name)
            fd = torch.zeros_like(p)
            with torch.no_grad():
                for i in range(p.numel()):
                    v = p.view(-1)[i].item()
                    p.view(-1)[i] = v + h
                    up = (fe(xt) * R).sum().item()
                    p.view(-1)[i] = v - h
                    dn = (fe(xt) * R).sum().item()
                    p.view(-1)[i] = v
                    fd.view(-1)[i] = (up - dn) / (2 * h)
            errs.append(((fd - ag).abs().max() / ag.abs().max().clamp_min(1e-300)).item())
        names = [n for n, _ in fe.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_(True) for p in fe.parameters())
        ok = torch.autograd.gradcheck(lambda *ps: functional_call(fe, dict(zip(names, ps)), (xt,)), params,
                                      eps=h, atol=1e-7, rtol=1e-5)
        e = max(errs)
        worst = max(worst, e)
        print(f"selfcheck {label}: max relative error {e:.3e} over {sum(p.numel() for p in fe.parameters())} "
              f"elements ({', '.join(names)}); gradcheck {'passed' if ok else 'FAILED'}")
    print(f"selfcheck: max relative error {worst:.3e}")
    assert worst < 1e-6, worst
    return worst


# ----------------------------------------------------------------------------------------------------
# Bench: float32 eager training step (forward, backward, AdamW) on synthetic features

def bench(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: forward under torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--attention", choices=["explicit", "sdpa"], default="explicit",
                    help="sdpa: torch.nn.functional.scaled_dot_product_attention (not with Shaw positions)")
    a = ap.parse_args(argv)
    global SDPA
    SDPA = a.attention == "sdpa"
    import contextlib
    torch.set_num_threads(a.threads)
    c = preset(a.preset)
    model = W2VBert(c)
    opt = make_optimizer(model, c)
    rng = np.random.default_rng(0)
    T0 = int(a.seconds * 100) - 1
    t0 = [T0] * a.batch
    feats = torch.tensor(rng.standard_normal((a.batch, T0, feature_width(c))), dtype=torch.float32)
    T = encoder_length(c, T0)
    mask = make_mask(c, [T] * a.batch, T, rng)
    noise, gumbel, dist = draws(c, mask, rng)
    times = []
    for step in range(a.steps + 1):
        t = time.perf_counter()
        opt.zero_grad()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if a.precision == "bf16" else contextlib.nullcontext()
        with ctx:
            loss, _ = model(feats, t0, torch.tensor(mask.astype(bool)), torch.tensor(noise), torch.tensor(gumbel),
                            torch.tensor(dist), tau_at(c, step))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["optimizer.clip_norm"])
        opt.step()
        if step > 0:
            times.append(time.perf_counter() - t)
    med = sorted(times)[len(times) // 2]
    import resource  # peak resident memory of this process (Linux reports kilobytes)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"impl": "pytorch-eager", "torch": torch.__version__, "preset": a.preset, "batch": a.batch,
                      "seconds": a.seconds, "threads": a.threads, "precision": a.precision, "attention": a.attention,
                      "step_time_median": med,
                      "audio_seconds_per_second": a.batch * a.seconds / med, "peak_rss_bytes": peak}))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "bench":
        bench(sys.argv[2:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "selfcheck":
        torch.set_num_threads(1)
        selfcheck()
    else:
        outdir = sys.argv[2] if len(sys.argv) >= 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
        os.makedirs(outdir, exist_ok=True)
        torch.set_num_threads(1)
        selfcheck()
        only = sys.argv[3:]   # fixture names to (re)write; all when none are given
        for name, spec in MICRO.items():
            if not only or name in only:
                write_fixture(name, spec, outdir)
        for name, spec in CTC.items():
            if not only or name in only:
                write_ctc_fixture(name, spec, outdir)
