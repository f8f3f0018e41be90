#!/usr/bin/env python3
"""The PyTorch OmniQuant baseline that `quantize --method omniquant` is timed against, on the same GPU in the same call.

OmniQuant's block training (Shao et al. 2023; OpenGVLab/OmniQuant quantize/omniquant.py, quantizer.py,
int_llama_layer.py) in plain PyTorch autograd, training the objective blockquant trains
(core/.../algo/OmniQuantCalibrator.java, omniquant/ResidentObjective.java): the blocks one after another; block i
is trained on its inputs, the quantized prefix's outputs (the reference's quant_inps), against the full-precision
block's outputs on the full-precision stream (fp_inps), by AdamW on the MSE, float32, for --epochs passes of
nsamples // batch-size steps; then the quantized block's outputs become block i+1's inputs.
  LWC (eq. 2-3): per output row or group, levels between sigmoid(beta)*min(W) and sigmoid(gamma)*max(W),
    gamma = beta = 4 at the start, round through the straight-through estimator (the reference's quantizer).
  LET (eq. 4-6, --let), for Llama as blockquant: a scale after input_layernorm (q, k, v columns), one after
    post_attention_layernorm (gate, up), one per value channel between v's rows and o_proj's columns, and,
    when Q and K are quantized (abits < 8), eq. 6's query/key scale per key channel (a RoPE pair shares one);
    no shifts (RMSNorm, no biases: the reference's use_shift is off for Llama). Started as blockquant does:
    s = max|X|^a / max|W|^(1-a) (a = 0.5) from this block's inputs on the full-precision stream (the reference's
    act_scales come from the unquantized model), W = q_proj, up_proj, o_proj, the value
    scale the max over the query heads that read it, |s| >= 1e-2 after every update (truncate_number).
  Activations (--abits < 16): per-token fake quantization of every linear's input, below 8 bits asymmetric
    min-max with Q, K (after RoPE) and V quantized per head and token too (the reference's rule, blockquant's
    default); at 8 bits symmetric absmax on the linears' inputs only. Backward: the reference's autograd (and
    blockquant's): straight through inside the clamp, each row's dynamic scale through its min/max (absmax).
  Windows: shuffled each epoch by blockquant's seeded Fisher-Yates, java.util.Random(seed + block index), the
    order carried from epoch to epoch (the reference walks them in order).
What differs from blockquant: attention is torch's fused scaled_dot_product_attention (blockquant: explicit
Q·Kᵀ, causal softmax, P·V); float32 rounding orders differ (cuBLAS, sigmoid, norms), so losses agree closely but
not bit for bit and drift apart over epochs; the windows stay on the GPU (blockquant copies each step's batch
from the heap); the next block's inputs come from the training-form forward, not the folded stored block (the
same up to rounding). Nothing is folded or stored. Llama only (no biases, full rotary).
Timing: each step reads its loss back (.item(), as blockquant and the reference do), each epoch is timed between
torch.cuda.synchronize() calls; the first epoch of a block includes warm-up and is reported apart. Precision:
float32 products unless --tf32; blockquant's GPU block tasks use TF32 by default (spark.blockquant.tf32), so
compare --tf32 with a plain `quantize`, or this script without it with
BLOCKQUANT_JAVA_OPTS=-Dspark.blockquant.tf32=false.

  python3 cluster/gpu/omniquant_baseline.py --model DIR --calib a.txt,b.txt --wbits 4 --group 0 --abits 16 \
      --let --epochs 20 --batch-size 1 [--blocks N] [--tf32] [--json OUT.json]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gptq_baseline import Checkpoint, JavaRandom, PREFIX, calibration, report, rms_norm, rotate  # noqa: E402

LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MIN_SCALE = 1e-2  # the reference's truncate_number


def inv_freq(cfg, hd):
    """RoPE inverse frequencies as blockquant's ModelSpecReader: theta at top level or under rope_parameters,
    default or Llama-3 scaling, rounded to the checkpoint's dtype as Transformers' buffer is."""
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = cfg["rope_theta"] if cfg.get("rope_theta") is not None else params.get("rope_theta", 10000.0)
    if cfg.get("partial_rotary_factor", 1.0) != 1.0:
        sys.exit("omniquant_baseline: partial_rotary_factor is not supported")
    exps = torch.arange(0, hd, 2, dtype=torch.float32)[: hd // 2] / hd
    inv = (1.0 / torch.pow(torch.tensor(float(theta), dtype=torch.float64), exps.double())).float()
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "llama3":
        factor, low = params.get("factor", 8.0), params.get("low_freq_factor", 1.0)
        high, old = params.get("high_freq_factor", 4.0), params.get("original_max_position_embeddings", 8192)
        out = []
        for f in inv.tolist():
            wl = 2 * math.pi / f
            if wl < old / high:
                out.append(f)
            elif wl > old / low:
                out.append(f / factor)
            else:
                sm = (old / wl - low) / (high - low)
                out.append((1 - sm) * f / factor + sm * f)
        inv = torch.tensor(out, dtype=torch.float32)
    elif kind != "default":
        sys.exit(f"omniquant_baseline: rope_type {kind!r} is not supported (default or llama3)")
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or "float32"
    if dtype == "bfloat16":
        inv = inv.to(torch.bfloat16).float()
    elif dtype == "float16":
        inv = inv.half().float()
    return inv


def rotary_tables(inv, seqlen, dev):
    """cos and sin [seqlen, head_dim] of the angles p·inv_freq (float32, as blockquant)."""
    f = torch.outer(torch.arange(seqlen, dtype=torch.float32), inv)
    emb = torch.cat([f, f], dim=-1).double()
    return emb.cos().float().to(dev), emb.sin().float().to(dev)


def fq(x, spec):
    """x fake-quantized per token by spec = (bits, asymmetric), or x when spec is None, differentiated as the
    reference's autograd does (and blockquant's backward): round_ste inside the clamp, the scale from the row's
    amin/amax (absmax when symmetric) without a detach, so its gradient reaches the row's extremes; the rounded
    zero point gets none."""
    if spec is None:
        return x
    bits, asym = spec
    if asym:  # the reference's UniformAffineQuantizer, symmetric=False: the row's own min and max
        qmax = 2 ** bits - 1
        mn, mx = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        scale = ((mx - mn) / qmax).clamp(1e-5, 1e4)
        zero = (-mn / scale).clamp(-1e4, 1e4).round().detach()
        return ((round_ste(x / scale) + zero).clamp(0, qmax) - zero) * scale
    qmax = 2 ** (bits - 1) - 1  # symmetric absmax (the W8A8 rule); an all-zero row stays zero
    absmax = x.abs().amax(-1, keepdim=True)
    scale = torch.where(absmax == 0, torch.ones_like(absmax), absmax / qmax)
    return round_ste(x / scale).clamp(-qmax - 1, qmax) * scale


def round_ste(x):
    """round with the straight-through estimator (the reference's round_ste)."""
    return (x.round() - x).detach() + x


def lwc_quantize(w, gamma, beta, group, bits):
    """LWC, eq. 2-3, on w [rows, cols] in groups of `group` columns, gamma/beta [rows·groups, 1] (None: plain
    min-max): h = sigmoid(gamma)·max, l = sigmoid(beta)·min (eq. 3, the group's own min and max),
    scale = clamp((h - l)/(2^N - 1), 1e-5, 1e4), zero = round(-l/scale) without a gradient,
    Ŵ = scale·(clamp(round_ste(W/scale) + zero, 0, 2^N - 1) - zero) (eq. 2)."""
    x = w.reshape(-1, group)
    qmax = 2 ** bits - 1
    xmax, xmin = x.amax(-1, keepdim=True), x.amin(-1, keepdim=True)
    if gamma is not None:
        xmax, xmin = torch.sigmoid(gamma) * xmax, torch.sigmoid(beta) * xmin
    scale = ((xmax - xmin) / qmax).clamp(1e-5, 1e4)
    zero = (-xmin / scale).clamp(-1e4, 1e4).round().detach()
    q = (round_ste(x / scale) + zero).clamp(0, qmax)
    return ((q - zero) * scale).reshape(w.shape)


def let_indices(nh, nkv, hd, dev):
    """Query channel (= o_proj column) → its value/key channel; key channel → its qk-scale entry (RoPE pairs
    (i, i + hd/2) share i's, as blockquant's EquivalentTransform.qkParam)."""
    j = torch.arange(nh * hd)
    kv_of_q = (j // hd) // (nh // nkv) * hd + j % hd
    c = torch.arange(nkv * hd)
    qk_of_kv = torch.where(c % hd >= hd // 2, c - hd // 2, c)
    return {"kv_of_q": kv_of_q.to(dev), "qk_of_q": qk_of_kv[kv_of_q].to(dev), "qk_of_k": qk_of_kv.to(dev)}


def let_transform(w, let, ix):
    """LET, eq. 4-6, on the full-precision block: X̃ = X ⊘ s folded into the norm (w/s) and s ⊙ W into its
    readers' columns (eq. 4-5); v rows / s and o_proj columns · s per value channel (exact: P's rows sum to 1);
    eq. 6: q rows / s, k rows · s. Returns the two norm weights and the seven transformed weights."""
    n1, n2 = w["input_layernorm"], w["post_attention_layernorm"]
    W = {m: w[m] for m in LINEARS}
    if let is None:
        return n1, n2, W
    sa, sm, so = let["attn_scale"], let["mlp_scale"], let["out_scale"]
    n1, n2 = n1 / sa, n2 / sm
    for m in ("q_proj", "k_proj", "v_proj"):
        W[m] = W[m] * sa
    for m in ("gate_proj", "up_proj"):
        W[m] = W[m] * sm
    W["v_proj"] = W["v_proj"] * torch.reciprocal(so)[:, None]
    W["o_proj"] = W["o_proj"] * so[ix["kv_of_q"]]
    if "qk_scale" in let:
        qk = let["qk_scale"]
        W["q_proj"] = W["q_proj"] * torch.reciprocal(qk)[ix["qk_of_q"]][:, None]
        W["k_proj"] = W["k_proj"] * qk[ix["qk_of_k"]][:, None]
    return n1, n2, W


def effective(w, lwc, let, ix, group, bits):
    """One step's block: LET (eq. 4-6), then LWC (eq. 2-3) on every transformed weight."""
    n1, n2, W = let_transform(w, let, ix)
    q = {}
    for m in LINEARS:
        gamma, beta = lwc.get(m, (None, None))
        q[m] = lwc_quantize(W[m], gamma, beta, group if group > 0 else W[m].shape[1], bits)
    return n1, n2, q


def block(cfg, n1, n2, W, x, cos, sin, acts, capture=None):
    """One Llama decoder block on x [b, s, d] with norm weights n1, n2 and linear weights W; acts = (spec of the
    linears' inputs, spec of Q, K, V per head and token), each None when off; capture(name, input) sees the
    unquantized inputs of q_proj, o_proj and up_proj (LET's statistics)."""
    b, s, _ = x.shape
    nh, nkv, hd, eps = cfg["nh"], cfg["nkv"], cfg["hd"], cfg["eps"]
    lin, qkv = acts
    h = rms_norm(x, n1, eps)
    if capture:
        capture("q_proj", h)
    hq = fq(h, lin)
    q = (hq @ W["q_proj"].t()).view(b, s, nh, hd).transpose(1, 2)
    k = (hq @ W["k_proj"].t()).view(b, s, nkv, hd).transpose(1, 2)
    v = (hq @ W["v_proj"].t()).view(b, s, nkv, hd).transpose(1, 2)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    q, k, v = fq(q, qkv), fq(k, qkv), fq(v, qkv)  # a kv head before it is repeated for its query heads
    if nkv != nh:
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, nh * hd)
    if capture:
        capture("o_proj", a)
    x = x + fq(a, lin) @ W["o_proj"].t()
    h = rms_norm(x, n2, eps)
    if capture:
        capture("up_proj", h)
    hq = fq(h, lin)
    m = F.silu(hq @ W["gate_proj"].t()) * (hq @ W["up_proj"].t())
    return x + fq(m, lin) @ W["down_proj"].t()


def truncate(scales):
    """The reference's truncate_number: |s| < 1e-2 becomes ±1e-2, in place."""
    with torch.no_grad():
        for s in scales:
            away = torch.where(s < 0, torch.full_like(s, -MIN_SCALE), torch.full_like(s, MIN_SCALE))
            s.copy_(torch.where(s.abs() < MIN_SCALE, away, s))


def let_init(cfg, w, x, cos, sin, alpha, qk, ix, fwd_batch):
    """LET's start, as blockquant's OmniQuantCalibrator.initialize (SmoothQuant eq. 4, the reference's):
    s = max(max|X|^α / max|W|^(1-α), 1e-5) per input channel (both maxima clamped at 1e-5), X the input of
    q_proj, up_proj, o_proj in the full-precision block run on x (the block's full-precision-stream inputs), W that layer;
    the value scale per value channel is the max over the query heads reading it; the qk scale starts at 1."""
    amax = {}

    def capture(name, t):
        m = t.abs().amax(dim=(0, 1))
        amax[name] = m if name not in amax else torch.maximum(amax[name], m)

    with torch.no_grad():
        for i in range(0, x.shape[0], fwd_batch):
            block(cfg, w["input_layernorm"], w["post_attention_layernorm"], w, x[i:i + fwd_batch], cos, sin,
                  (None, None), capture)

    def smooth(name):
        act = amax[name].double().clamp(min=1e-5)
        wmax = w[name].abs().amax(0).double().clamp(min=1e-5)
        return (act.pow(alpha) / wmax.pow(1 - alpha)).clamp(min=1e-5).float()

    out = torch.zeros(cfg["nkv"] * cfg["hd"], device=x.device)
    out = out.scatter_reduce(0, ix["kv_of_q"], smooth("o_proj"), reduce="amax")
    let = {"attn_scale": smooth("q_proj"), "mlp_scale": smooth("up_proj"), "out_scale": out}
    if qk:
        let["qk_scale"] = torch.ones_like(out)
    let = {k: v.detach().clone().requires_grad_(True) for k, v in let.items()}
    truncate(let.values())
    return let


def shuffle(order, rnd):
    """blockquant's per-epoch Fisher-Yates shuffle with java.util.Random, in place."""
    for i in range(len(order) - 1, 0, -1):
        j = rnd.next_int(i + 1)
        order[i], order[j] = order[j], order[i]


def step_flops(cfg, w, windows, seq):
    """blockquant's trainingStepFlops: 3 × (the linears' 2·tokens·in·out + attention's
    4·windows·heads·seq²·head_dim)."""
    fwd = sum(2.0 * windows * seq * w[m].shape[0] * w[m].shape[1] for m in LINEARS)
    return 3 * (fwd + 4.0 * windows * cfg["nh"] * seq * seq * cfg["hd"])


def train_block(a, cfg, w, x, tgt, cos, sin, ix, acts, qk, b, n, xf):
    """Block b's training, as blockquant's OmniQuantCalibrator.train: LET started from xf's statistics (the
    full-precision stream's inputs), LWC at gamma = beta = 4, then epochs × (nsamples // batch) AdamW steps on
    MSE(quantized block(x), tgt), the windows shuffled each epoch. Returns the LWC and LET parameters, each epoch's mean loss and each epoch's seconds."""
    dev = x.device
    batch = min(a.batch_size, a.nsamples)
    steps = a.nsamples // batch
    let = let_init(cfg, w, xf, cos, sin, a.alpha, qk, ix, a.fwd_batch) if a.let else None
    lwc = {}
    if a.lwc:
        for m in LINEARS:
            groups = w[m].shape[1] // a.group if a.group > 0 else 1
            lwc[m] = tuple(torch.full((w[m].shape[0] * groups, 1), 4.0, device=dev, requires_grad=True)
                           for _ in range(2))
    param_groups = []
    if lwc:
        param_groups.append({"params": [t for pair in lwc.values() for t in pair], "lr": a.lwc_lr})
    if let:
        param_groups.append({"params": list(let.values()), "lr": a.let_lr})
    opt = torch.optim.AdamW(param_groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.wd)
    rnd = JavaRandom(a.seed + b)
    order = list(range(a.nsamples))
    flops = step_flops(cfg, w, batch, a.seqlen)
    losses, seconds = [], []
    for e in range(a.epochs):
        shuffle(order, rnd)
        perm = torch.tensor(order, device=dev)
        torch.cuda.synchronize()
        te = time.perf_counter()
        total = 0.0
        for s in range(steps):
            pick = perm[s * batch:(s + 1) * batch]
            n1, n2, W = effective(w, lwc, let, ix, a.group, a.wbits)
            loss = F.mse_loss(block(cfg, n1, n2, W, x[pick], cos, sin, acts), tgt[pick])
            value = loss.item()
            if not math.isfinite(value):
                sys.exit(f"omniquant_baseline: block {b + 1}: loss is {value} in epoch {e}")
            total += value
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if let:
                truncate(let.values())
        torch.cuda.synchronize()
        sec = time.perf_counter() - te
        losses.append(total / steps)
        seconds.append(sec)
        print(f"block {b + 1}/{n} omniquant: epoch {e} loss {total / steps:.6g}, {sec:.2f} s, "
              f"{1000 * sec / steps:.2f} ms a step, {steps * flops / sec / 1e9:.1f} GFLOP/s", flush=True)
    return lwc, let, losses, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", nargs="+", required=True, help="text files, comma-separated or several")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--group", type=int, default=0, help="0: per output channel")
    ap.add_argument("--abits", type=int, default=16, help="2..8, or 16: weight-only")
    ap.add_argument("--let", action="store_true")
    ap.add_argument("--lwc", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=1, help="windows per step")
    ap.add_argument("--lwc-lr", type=float, default=1e-2)
    ap.add_argument("--let-lr", type=float, default=5e-3)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--blocks", type=int, default=0, help="train only the first N blocks (0: all)")
    ap.add_argument("--dtype", choices=["float32"], default="float32")
    ap.add_argument("--tf32", action="store_true", help="TF32 matrix products")
    ap.add_argument("--inputs", choices=["quant", "fp"], default="quant",
                    help="train on the quantized prefix's outputs (blockquant's, the reference's) or on the fp stream")
    ap.add_argument("--fwd-batch", type=int, default=8, help="windows per forward-only pass")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    if not (a.lwc or a.let):
        sys.exit("omniquant_baseline: needs --lwc and/or --let")
    if not 2 <= a.wbits <= 8 or not (2 <= a.abits <= 8 or a.abits == 16):
        sys.exit("omniquant_baseline: --wbits 2..8, --abits 2..8 or 16")
    files = [p for arg in a.calib for p in arg.split(",") if p]

    dev = torch.device("cuda")
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    with open(os.path.join(a.model, "config.json")) as f:
        raw = json.load(f)
    if raw.get("model_type") not in ("llama", "mistral") or raw.get("attention_bias") or raw.get("mlp_bias"):
        sys.exit(f"omniquant_baseline: {a.model}/config.json: this baseline reads Llama without biases")
    nh = raw["num_attention_heads"]
    cfg = {"nh": nh, "nkv": raw.get("num_key_value_heads") or nh, "eps": raw.get("rms_norm_eps", 1e-6),
           "hd": raw.get("head_dim") or raw["hidden_size"] // nh}
    ck = Checkpoint(a.model)
    tokens, crc, source = calibration(a.model, files, a.nsamples, a.seqlen, a.seed)
    print(f"calibration: {a.nsamples} windows of {a.seqlen} tokens (seed {a.seed}) from {source} tokens "
          f"(token crc32 {crc:08x})", flush=True)
    cos, sin = rotary_tables(inv_freq(raw, cfg["hd"]), a.seqlen, dev)
    ix = let_indices(cfg["nh"], cfg["nkv"], cfg["hd"], dev)
    acts = (None if a.abits >= 16 else (a.abits, a.abits < 8), (a.abits, True) if a.abits < 8 else None)
    qk = a.let and acts[1] is not None
    batch = min(a.batch_size, a.nsamples)
    steps = a.nsamples // batch
    n = raw["num_hidden_layers"] if a.blocks <= 0 else min(a.blocks, raw["num_hidden_layers"])

    torch.cuda.synchronize()
    t_start = time.perf_counter()
    emb = ck.get("model.embed_tokens.weight", dev).float()
    xf = emb[tokens.to(dev)]                                   # the full-precision stream (fp_inps)
    del emb
    xq = xf.clone() if a.inputs == "quant" else None           # the quantized prefix's outputs (quant_inps)
    losses, epoch_s, block_s, train_s = [], [], [], []
    for b in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        p = f"model.layers.{b}."
        w = {m: ck.get(p + PREFIX[m] + "." + m + ".weight", dev).float() for m in LINEARS}
        w["input_layernorm"] = ck.get(p + "input_layernorm.weight", dev).float()
        w["post_attention_layernorm"] = ck.get(p + "post_attention_layernorm.weight", dev).float()
        for m in LINEARS:
            if a.group > 0 and w[m].shape[1] % a.group:
                sys.exit(f"omniquant_baseline: group {a.group} does not divide {m}'s {w[m].shape[1]} columns")
        with torch.no_grad():                                  # targets: the fp block on the fp stream
            tgt = torch.cat([block(cfg, w["input_layernorm"], w["post_attention_layernorm"], w,
                                   xf[i:i + a.fwd_batch], cos, sin, (None, None))
                             for i in range(0, a.nsamples, a.fwd_batch)])
        x = xq if a.inputs == "quant" else xf
        torch.cuda.synchronize()
        t_train = time.perf_counter()
        lwc, let, block_losses, block_epochs = train_block(a, cfg, w, x, tgt, cos, sin, ix, acts, qk, b, n, xf)
        torch.cuda.synchronize()
        train_s.append(time.perf_counter() - t_train)
        if a.inputs == "quant":
            with torch.no_grad():                              # the quantized block's outputs: the next inputs
                n1, n2, W = effective(w, lwc, let, ix, a.group, a.wbits)
                for i in range(0, a.nsamples, a.fwd_batch):
                    xq[i:i + a.fwd_batch] = block(cfg, n1, n2, W, xq[i:i + a.fwd_batch], cos, sin, acts)
        xf = tgt
        del w, lwc, let, tgt, x
        torch.cuda.synchronize()
        block_s.append(time.perf_counter() - t0)
        losses.append(block_losses)
        epoch_s.append(block_epochs)
        final = f"{block_losses[-1]:.6g}" if block_losses else "-"
        print(f"block {b + 1}/{n}: {block_s[-1]:.2f} s ({train_s[-1]:.2f} s training), final epoch loss {final}",
              flush=True)
    total = time.perf_counter() - t_start
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    later = [s for blk in epoch_s for s in blk[1:]]
    first = [blk[0] for blk in epoch_s if blk]
    ms_later = 1000 * sum(later) / (len(later) * steps) if later else float("nan")
    ms_first = 1000 * sum(first) / (len(first) * steps) if first else float("nan")
    print(f"omniquant baseline: {n} blocks, {a.epochs} epochs, {batch} windows/step: {ms_later:.2f} ms a step on "
          f"average (epochs 2..{a.epochs}), {total / n:.2f} s a block; first epochs (warm-up included) "
          f"{ms_first:.2f} ms a step; peak GPU memory {peak:.2f} GiB", flush=True)
    out = {"implementation": "pytorch", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "blocks": n, "nsamples": a.nsamples, "seqlen": a.seqlen, "seed": a.seed, "wbits": a.wbits,
           "group": a.group, "abits": a.abits, "lwc": a.lwc, "let": a.let, "qk_scale": qk, "epochs": a.epochs,
           "batch_size": batch, "steps_per_epoch": steps, "inputs": a.inputs, "token_crc32": f"{crc:08x}",
           "matmul": "tf32" if a.tf32 else "float32", "seconds": round(total, 2),
           "seconds_per_block": round(total / n, 3), "training_seconds": [round(t, 3) for t in train_s],
           "ms_per_step_after_first_epoch": None if math.isnan(ms_later) else round(ms_later, 3),
           "ms_per_step_first_epoch": None if math.isnan(ms_first) else round(ms_first, 3),
           "final_loss": [blk[-1] if blk else None for blk in losses], "epoch_loss": losses,
           "epoch_seconds": [[round(s, 4) for s in blk] for blk in epoch_s], "peak_gpu_gib": round(peak, 2)}
    report(out, a.json)


if __name__ == "__main__":
    main()
