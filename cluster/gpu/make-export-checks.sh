#!/usr/bin/env bash
# Builds the checkpoints cluster/gpu/check-export.py checks on the GPU machine. Runs on the CPU machine.
#
# For each format and family below: quantize a store (small calibration: 8 windows of 128 tokens), measure its
# perplexity with `eval --store` (the full protocol: kjv.test, windows of 512, at most 128; it records eval.json in
# the store), export it, and write NAME.json beside the checkpoint with the store's perplexity. Checkpoints go to
# OUT (default build/export-checks, git-ignored), stores and the modified model to WORK (default build/export-work).
#
#   name           family       store                                               export
#   llama-gptq-v2  tiny-llama*  rtn W4 g64 asym; layer 0 v_proj all >= 0: zero 0    gptq (writes gptq_v2)
#   llama-nvfp4    tiny-llama   rtn FP4 E2M1 g64, no scale constraint                compressed-tensors (nvfp4-pack-quantized)
#   llama-fp8      tiny-llama   rtn FP8 E4M3 per channel                             compressed-tensors (float-quantized)
#   opt-gptq       tiny-opt     gptq W4 g64 sym                                      gptq (v1)
#   opt-w8a8       tiny-opt     rtn W8 per channel sym, INT8 per-token activations   compressed-tensors (int-quantized)
#   falcon-pack    tiny-falcon  rtn W4 g64 asym                                      compressed-tensors (pack-quantized)
#   falcon-mxfp4   tiny-falcon  rtn FP4 g32, power-of-two scales (M1)                compressed-tensors (mxfp4-pack-quantized)
#
# * tiny-llama with the sign bit of model.layers.0.self_attn.v_proj.weight cleared (|W|): every group's minimum is
#   then 0, so asymmetric RTN gives zero points of 0 there — the store GPTQ v1 cannot hold, made on purpose.
#
# Then, on the GPU machine: python3 cluster/gpu/check-export.py build/export-checks
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/build/export-checks}"
WORK="${WORK:-$ROOT/build/export-work}"
BQ="$ROOT/cluster/bin/blockquant"
export BLOCKQUANT_HEAP="${BLOCKQUANT_HEAP:-3g}"
CALIB=(--nsamples 8 --seqlen 128)
MODELS="$ROOT/data-samples/models"

start=$(date +%s)
mkdir -p "$OUT" "$WORK/stores"

# the zero-point-0 model: a copy of tiny-llama with one layer's sign bits cleared (bf16: bit 15 of each value)
ZP0="$WORK/tiny-llama-zp0"
if [ ! -f "$ZP0/.complete" ]; then
  rm -rf "$ZP0" && cp -r "$MODELS/tiny-llama" "$ZP0" && rm -f "$ZP0/golden-logits.safetensors"
  python3 - "$ZP0" model.layers.0.self_attn.v_proj.weight <<'EOF'
import json, struct, sys, os
folder, tensor = sys.argv[1], sys.argv[2]
with open(os.path.join(folder, "model.safetensors.index.json")) as f:
    path = os.path.join(folder, json.load(f)["weight_map"][tensor])
with open(path, "r+b") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    entry = json.loads(f.read(n))[tensor]
    assert entry["dtype"] == "BF16", entry
    begin, end = entry["data_offsets"]
    f.seek(8 + n + begin)
    data = bytearray(f.read(end - begin))
    for i in range(1, len(data), 2):
        data[i] &= 0x7F  # little-endian bf16: the sign is bit 7 of the high byte
    f.seek(8 + n + begin)
    f.write(data)
print("%s: %s is now |W| (%d values)" % (path, tensor, (end - begin) // 2))
EOF
  touch "$ZP0/.complete"
fi

# name model export-format quantize-flags...
check() {
  local name="$1" model="$2" format="$3"
  shift 3
  local store="$WORK/stores/$name"
  echo "== $name: $model, $*, export --format $format" >&2
  if [ ! -f "$store/eval.json" ]; then
    rm -rf "$store"
    "$BQ" quantize --model "$model" "${CALIB[@]}" --no-eval --out "$store" "$@" > "$WORK/$name.quantize.log" 2>&1 \
      || { tail -5 "$WORK/$name.quantize.log"; exit 1; }
    "$BQ" eval --store "$store" > "$WORK/$name.eval.log" 2>&1 || { tail -5 "$WORK/$name.eval.log"; exit 1; }
  fi
  "$BQ" export --store "$store" --format "$format" --out "$OUT/$name" > "$WORK/$name.export.log" 2>&1 \
    || { tail -5 "$WORK/$name.export.log"; exit 1; }
  python3 - "$name" "$model" "$store" "$OUT/$name" "$format" <<'EOF'
import json, sys
name, model, store, ckpt, fmt = sys.argv[1:]
ev = json.load(open(store + "/eval.json"))
q = json.load(open(ckpt + "/config.json"))["quantization_config"]
layout = q.get("checkpoint_format") or q.get("format")
json.dump({"name": name, "family": model.rstrip("/").split("/")[-1], "export_format": fmt, "layout": layout, "store": store,
           "store_ppl": ev["ppl"], "eval": ev}, open(ckpt + ".json", "w"), indent=1)
print("%-14s %-22s store ppl %.4f (%d windows)" % (name, layout, ev["ppl"], ev["windows"]))
EOF
  grep -h "re-expresses\|writing gptq_v2" "$WORK/$name.export.log" >&2 || true
}

check llama-gptq-v2 "$ZP0" gptq --method rtn --wbits 4 --group 64
check llama-nvfp4 "$MODELS/tiny-llama" compressed-tensors --method rtn --wformat fp4 --wbits 4 --group 64
check llama-fp8 "$MODELS/tiny-llama" compressed-tensors --method rtn --wformat fp8 --wbits 8 --group 0
check opt-gptq "$MODELS/tiny-opt" gptq --method gptq --wbits 4 --group 64 --sym
check opt-w8a8 "$MODELS/tiny-opt" compressed-tensors --method rtn --wbits 8 --group 0 --sym --abits 8
check falcon-pack "$MODELS/tiny-falcon" compressed-tensors --method rtn --wbits 4 --group 64
check falcon-mxfp4 "$MODELS/tiny-falcon" compressed-tensors --method rtn --wformat fp4 --wbits 4 --group 32 --scale-constraint m1

echo "export checks in $OUT: $(du -sh "$OUT" | cut -f1), $(( $(date +%s) - start )) s" >&2
