#!/usr/bin/env python3
"""The PyTorch GPTQ baseline that `quantize --method gptq` is timed against, on the same GPU in the same call.

The standard GPTQ pipeline as GPTQModel and llm-compressor run it (the algorithm of Frantar et al. 2022, Alg. 1,
as in IST-DASLab/gptq): the model's blocks one after another, each on the quantized prefix's outputs; inside a
block, per true-sequential group (q/k/v, o, gate/up, down) the block is run over every calibration window with the
group's input captured into a float32 Hessian H = 2/N Σ x xᵀ, then each layer of the group is quantized by the
blocked column loop (128 columns at a time, lazy batch updates, Eq. 4–5 of the paper, with the inverse Hessian's
upper Cholesky factor), asymmetric min-max groups found at each group's first column; the block then runs once more
for the next block's inputs. Forward passes in bfloat16 (the model's dtype), Hessians and the column loop in float32.

It reads a Hugging Face Llama checkpoint (safetensors, any sharding) with its own forward pass (RMSNorm, rotary,
grouped-query attention through scaled_dot_product_attention, SwiGLU), so no transformers version matters, and
draws the calibration windows exactly as blockquant does (the texts tokenized without special tokens and
concatenated, then java.util.Random(seed).nextInt(n − seqlen) per window); it prints the windows' CRC32, which
`quantize` prints too, so the two runs provably calibrate on the same tokens.

  python3 cluster/gpu/gptq_baseline.py --model DIR --calib a.txt b.txt --nsamples 128 --seqlen 2048 \
      --wbits 4 --group 128 [--blocks N] [--json OUT.json]
"""
import argparse
import json
import math
import os
import struct
import sys
import time
import zlib

import torch
import torch.nn.functional as F
from safetensors import safe_open


class JavaRandom:
    """java.util.Random: the 48-bit LCG and nextInt(bound) (blockquant's calibration draw)."""

    def __init__(self, seed):
        self.seed = (seed ^ 0x5DEECE66D) & ((1 << 48) - 1)

    def next(self, bits):
        self.seed = (self.seed * 0x5DEECE66D + 0xB) & ((1 << 48) - 1)
        r = self.seed >> (48 - bits)
        return r - (1 << 32) if r >= 1 << 31 else r

    def next_int(self, bound):
        if bound & (-bound) == bound:
            return (bound * self.next(31)) >> 31
        while True:
            bits = self.next(31)
            val = bits % bound
            if bits - val + (bound - 1) < (1 << 31):
                return val


def calibration(model_dir, texts, nsamples, seqlen, seed):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ids = []
    for t in texts:
        with open(t, encoding="utf-8") as f:
            ids.extend(tok.encode(f.read(), add_special_tokens=False).ids)
    rnd = JavaRandom(seed)
    windows = []
    for _ in range(nsamples):
        start = rnd.next_int(len(ids) - seqlen)
        windows.append(ids[start:start + seqlen])
    crc = 0
    for w in windows:
        crc = zlib.crc32(struct.pack("<%di" % len(w), *w), crc)
    return torch.tensor(windows, dtype=torch.long), crc, len(ids)


class Checkpoint:
    def __init__(self, model_dir):
        self.dir = model_dir
        index = os.path.join(model_dir, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                self.where = json.load(f)["weight_map"]
        else:
            with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
                self.where = {k: "model.safetensors" for k in f.keys()}
        self.files = {}

    def get(self, name, device):
        fname = self.where[name]
        if fname not in self.files:
            self.files[fname] = safe_open(os.path.join(self.dir, fname), "pt", device="cpu")
        return self.files[fname].get_tensor(name).to(device)


def rms_norm(x, w, eps):
    v = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(v + eps)).to(x.dtype) * w


def rotary(cfg, seqlen, device):
    dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    t = torch.arange(seqlen, device=device, dtype=torch.float32)
    f = torch.outer(t, inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos(), emb.sin()


def rotate(x, cos, sin):
    h = x.shape[-1] // 2
    r = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return (x.float() * cos + r.float() * sin).to(x.dtype)


GROUPS = [["q_proj", "k_proj", "v_proj"], ["o_proj"], ["gate_proj", "up_proj"], ["down_proj"]]
PREFIX = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
          "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def block_forward(cfg, w, x, cos, sin, capture=None):
    """One Llama decoder block on x [b, s, d]; capture(name, input) sees each linear's input."""
    b, s, d = x.shape
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = d // nh
    eps = cfg.get("rms_norm_eps", 1e-6)

    def lin(name, inp):
        if capture is not None:
            capture(name, inp)
        return inp @ w[name].t()

    h = rms_norm(x, w["input_layernorm"], eps)
    q = lin("q_proj", h).view(b, s, nh, hd).transpose(1, 2)
    k = lin("k_proj", h).view(b, s, nkv, hd).transpose(1, 2)
    v = lin("v_proj", h).view(b, s, nkv, hd).transpose(1, 2)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    if nkv != nh:
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, d)
    x = x + lin("o_proj", a)
    h = rms_norm(x, w["post_attention_layernorm"], eps)
    g = lin("gate_proj", h)
    u = lin("up_proj", h)
    return x + lin("down_proj", F.silu(g) * u)


def quantize_minmax(x, bits, sym):
    """Per-row scale and zero of x [rows, cols] (GPTQ's Quantizer.find_params, per group)."""
    maxq = 2 ** bits - 1
    xmin = torch.minimum(x.min(1).values, torch.zeros(1, device=x.device))
    xmax = torch.maximum(x.max(1).values, torch.zeros(1, device=x.device))
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    both0 = (xmin == 0) & (xmax == 0)
    xmin[both0], xmax[both0] = -1, 1
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1), maxq


def gptq(W, H, bits, group, sym, damp, blocksize=128):
    """The blocked column loop (Alg. 1): W [out, in] float32, H [in, in] float32; returns the dequantized W and the loss."""
    W = W.clone()
    H = H.clone()
    cols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, device=W.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    losses = torch.zeros(W.shape[0], device=W.device)
    scale = zero = None
    maxq = 2 ** bits - 1
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if scale is None or (group > 0 and c % group == 0):
                scale, zero, maxq = quantize_minmax(W[:, c:c + group] if group > 0 else W, bits, sym)
            w = W1[:, i:i + 1]
            d = Hinv1[i, i]
            q = scale * (torch.clamp(torch.round(w / scale) + zero, 0, maxq) - zero)
            Q1[:, i:i + 1] = q
            losses += ((w - q) ** 2).squeeze(1) / d ** 2 / 2
            err = (w - q) / d
            W1[:, i:] -= err @ Hinv1[i:i + 1, i:]
            Err1[:, i:i + 1] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q, losses.sum().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", nargs="+", required=True)
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--sym", action="store_true")
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=16, help="windows per forward pass")
    ap.add_argument("--blocks", type=int, default=0, help="quantize only the first N blocks (0: all)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()

    dev = torch.device("cuda")
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") not in ("llama", "mistral"):
        sys.exit(f"gptq_baseline: {a.model}/config.json: model_type {cfg.get('model_type')!r}, this baseline reads Llama")
    ck = Checkpoint(a.model)
    tokens, crc, source = calibration(a.model, a.calib, a.nsamples, a.seqlen, a.seed)
    print(f"calibration: {a.nsamples} windows of {a.seqlen} tokens (seed {a.seed}) from {source} tokens "
          f"(token crc32 {crc:08x})", flush=True)
    torch.cuda.synchronize()
    t_start = time.time()
    emb = ck.get("model.embed_tokens.weight", dev)
    x = torch.cat([emb[tokens[i:i + a.batch].to(dev)] for i in range(0, a.nsamples, a.batch)])
    del emb
    cos, sin = rotary(cfg, a.seqlen, dev)
    n = cfg["num_hidden_layers"] if a.blocks <= 0 else min(a.blocks, cfg["num_hidden_layers"])
    per_block, forward_s, solve_s = [], 0.0, 0.0
    tokens_total = a.nsamples * a.seqlen
    for b in range(n):
        torch.cuda.synchronize()
        t0 = time.time()
        p = f"model.layers.{b}."
        w = {m: ck.get(p + PREFIX[m] + "." + m + ".weight", dev) for m in PREFIX}
        w["input_layernorm"] = ck.get(p + "input_layernorm.weight", dev)
        w["post_attention_layernorm"] = ck.get(p + "post_attention_layernorm.weight", dev)
        for grp in GROUPS:
            tf = time.time()
            H = torch.zeros(w[grp[0]].shape[1], w[grp[0]].shape[1], device=dev, dtype=torch.float32)

            def capture(name, inp, H=H, first=grp[0]):
                if name == first:
                    f = inp.reshape(-1, inp.shape[-1]).float()
                    H.addmm_(f.t(), f)

            with torch.no_grad():
                for i in range(0, a.nsamples, a.batch):
                    block_forward(cfg, w, x[i:i + a.batch], cos, sin, capture)
            H.mul_(2.0 / tokens_total)
            torch.cuda.synchronize()
            ts = time.time()
            forward_s += ts - tf
            for m in grp:
                q, _ = gptq(w[m].float(), H, a.wbits, a.group, a.sym, a.damp)
                w[m] = q.to(w[m].dtype)
            torch.cuda.synchronize()
            solve_s += time.time() - ts
            del H
        tf = time.time()
        with torch.no_grad():
            x = torch.cat([block_forward(cfg, w, x[i:i + a.batch], cos, sin) for i in range(0, a.nsamples, a.batch)])
        torch.cuda.synchronize()
        forward_s += time.time() - tf
        per_block.append(time.time() - t0)
        print(f"block {b + 1}/{n}: {per_block[-1]:.2f} s", flush=True)
        del w
    total = time.time() - t_start
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    out = {"implementation": "pytorch", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "blocks": n, "nsamples": a.nsamples, "seqlen": a.seqlen, "wbits": a.wbits, "group": a.group,
           "token_crc32": f"{crc:08x}", "seconds": round(total, 2), "seconds_per_block": round(total / n, 3),
           "forward_and_hessian_seconds": round(forward_s, 2), "column_loop_seconds": round(solve_s, 2),
           "peak_gpu_gib": round(peak, 2), "forward_dtype": "bfloat16", "hessian_dtype": "float32"}
    report(out, a.json)


def report(out, path):
    """The run's figures as one JSON line on stdout, and in PATH when given."""
    print(json.dumps(out), flush=True)
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
