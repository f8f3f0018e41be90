#!/usr/bin/env python3
"""The computed part of docs/memory.md: peak memory per JVM and work-area disk, from the sizes the code allocates.

python3 docs/memory_table.py [W] [SLOTS]: W calibration windows per task (--windows-per-task, default 4),
SLOTS parallel task slots (GPUs; default 8). Calibration 128 windows x 2048 tokens. GB = 1e9 bytes.
"""
import sys

SHAPES = {  # hidden, heads, kv heads, MLP, vocab, blocks
    "Llama-3-8B": (4096, 32, 8, 14336, 128256, 32),
    "Llama-2-70B": (8192, 64, 8, 28672, 32000, 80),
    "Llama-3-405B": (16384, 128, 8, 53248, 128256, 126),
}
N, S = 128, 2048
W = int(sys.argv[1]) if len(sys.argv) > 1 else 4
SLOTS = int(sys.argv[2]) if len(sys.argv) > 2 else 8


def gb(x):
    return f"{x / 1e9:.1f}"


print(f"| shape | block fp32 | GPTQ: Hessian task | GPTQ: factor task | GPTQ: layer task | output pass | OmniQuant task |"
      f" eval task | export task | `_work` sequential | `_work` parallel | store |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, (h, heads, kvh, f, vocab, L) in SHAPES.items():
    d = h // heads
    q, kv = heads * d, kvh * d
    block = 4 * (2 * h * q + 2 * h * kv + 3 * h * f)      # ExecutorBlocks: one float32 block
    x = W * S * h * 4                                       # one partition's hidden states (ActivationFiles)
    inner = 3 * W * S * f * 4 + 2 * W * heads * S * S * 4   # MLP gate/up/product, attention scores and probabilities
    n = f                                                   # the widest linear input: down_proj
    hessian = 2 * block + x + inner + n * n * 8 + n * n * 4  # fp + partly quantized block, float64 sum, float32 XᵀX
    factor = n * n * (8 + 8 + 4 + 4)                        # two partial sums while adding, then float32/float64 copies
    layer = block + n * n * 4 + 3 * h * n * 4               # block, the factor, GPTQ's copies of the weight
    output = 2 * block + 2 * x + inner                      # fp and quantized block, inputs and outputs
    omni = 3 * block + 2 * N * S * h * 4 + inner            # every window's inputs and targets in one task
    head_rows = 128 * 2**20 // (4 * h)                      # eval: the head read in ~128 MB float32 slices
    evaluate = block + 2 * x + inner + head_rows * h * 4 + W * S * head_rows * 4
    export = max(64 * 2**20, block // 8 * 2)                # a 64 MiB part of block -1, or a block's packed tensors
    work_seq = 2 * N * S * h * 4 + SLOTS * n * n * 8        # two blocks' inputs, one group's partial Hessians
    work_par = (L + 1) * N * S * h * 4                      # every block's captured inputs until the store is done
    store = L * block // 8 + 2 * vocab * h * 2              # 4-bit layers (scales aside) + bf16 embedding and head
    print(f"| {name} | {gb(block)} | {gb(hessian)} | {gb(factor)} | {gb(layer)} | {gb(output)} | {gb(omni)} |"
          f" {gb(evaluate)} | {gb(export)} | {gb(work_seq)} | {gb(work_par)} | {gb(store)} |")
