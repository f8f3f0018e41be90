#!/usr/bin/env python3
"""Prints docs/memory.md's computed table: each JVM's and the work area's peak, from the sizes the code allocates.

Run: python3 docs/memory_table.py. GB = 1e9 bytes. Calibration 128 windows x 2048 tokens, --windows-per-task W.
"""
SHAPES = {  # hidden, heads, kv heads, MLP, vocab, blocks
    "Llama-3-8B": (4096, 32, 8, 14336, 128256, 32),
    "Llama-2-70B": (8192, 64, 8, 28672, 32000, 80),
    "Llama-3-405B": (16384, 128, 8, 53248, 128256, 126),
}
N, S = 128, 2048

def gb(x):
    return f"{x / 1e9:.1f}"

def rows(w):
    out = []
    for name, (h, heads, kvh, f, vocab, L) in SHAPES.items():
        d = h // heads
        q, kv = heads * d, kvh * d
        block = 4 * (2 * h * q + 2 * h * kv + 3 * h * f)        # float32 weights of one block
        parts = N // w
        acts = w * S * h * 4                                      # one partition's hidden states
        mlp = 3 * w * S * f * 4                                   # gate, up, their product
        attn = 2 * w * heads * S * S * 4                          # scores and probabilities, all heads at once
        n = f                                                     # widest linear input (down_proj)
        hess_task = 2 * block + n * n * 8 + n * n * 4             # fp + partly quantized block, float64 sum, float32 XᵀX
        prepare = n * n * (8 + 4 + 8 + 4)                         # damped H, float32 copy, dtrtri's float64, its float32
        layer = block + n * n * 4 + 3 * h * n * 4                 # block, factor, GPTQ's working copies of W
        output = 2 * block + acts * 2 + mlp + attn                # fp and quantized block, in and out, inner activations
        exec_gptq = max(hess_task + acts + mlp + attn, prepare, layer, output)
        omni_all = 2 * N * S * h * 4                              # OmniQuant: every window's inputs and targets
        exec_omni = 3 * block + omni_all + mlp + attn             # fp, learnable copy, gradients
        head_chunk = 128 * 2**20                                  # eval: head read by ~128 MB float32 chunks
        exec_eval = block + 2 * acts + mlp + attn + head_chunk + w * S * (head_chunk // (4 * h)) * 4
        work_seq = 2 * N * S * h * 4 + parts * n * n * 8          # two blocks' inputs + one group's partial Hessians
        work_par = (L + 1) * N * S * h * 4                        # every block's captured inputs
        export_exec = 64 * 2**20 + block // 2                     # a part of block -1 or a block's packed tensors
        out.append((name, w, block, exec_gptq, prepare, exec_omni, exec_eval, export_exec, work_seq, work_par))
    return out

print("| model | W | block fp32 | executor heap, GPTQ (peak task) | of it: Hessian factor task | executor, OmniQuant | executor, eval | executor, export | `_work` sequential | `_work` parallel |")
print("|---|---|---|---|---|---|---|---|---|---|")
for w in (4, 1):
    for r in rows(w):
        name, w_, block, g, prep, o, e, x, ws, wp = r
        print(f"| {name} | {w_} | {gb(block)} | {gb(g)} | {gb(prep)} | {gb(o)} | {gb(e)} | {gb(x)} | {gb(ws)} | {gb(wp)} |")
