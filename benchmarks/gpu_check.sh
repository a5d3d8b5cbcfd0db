#!/usr/bin/env bash
# The GPU checks as one script (a few minutes on one GPU): benchmarks/gpu.py, then the demo sweep
# end to end on CUDA (every method, CoOp in its CUDA precision) with its Markdown table.
# Usage: bash benchmarks/gpu_check.sh [OUTDIR] [STEPS]   (python3 must have the project's packages)
# STEPS: a comma list of gpu,demo,grid,decode,determinism (default: all, about 22 minutes at their
# timeouts). A lent GPU allows 10 minutes a command and about 15 minutes in all, start-up
# included: run "grid" first (at most about 9 minutes: the whole-grid projection, issue 19's
# headline), then with what is left "decode" (4 min) or "gpu" (9 min), then "demo" (3 min).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/bench-gpu-check}"
steps=",${2:-gpu,demo,grid,decode,determinism},"
want() { [[ "$steps" == *",$1,"* ]]; }
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/nvidia-smi.txt"
demo="$(mktemp -d)"
out_abs="$(cd "$out" && pwd)"
if want gpu; then
(cd benchmarks && timeout 300 "$py" gpu.py --out "$out_abs") > "$out/gpu.log" 2>&1
echo "gpu.py exit $?"; grep -v -i warn "$out/gpu.log" | tail -40
(cd benchmarks && timeout 120 "$py" batched_fits.py --device cuda --repeats 3) \
    > "$out/batched_fits.log" 2>&1
echo "batched_fits.py on cuda: exit $?"; tail -12 "$out/batched_fits.log"
# Joint fits (bench run --joint-fits, auto on CUDA): CoOp cells one by one vs one text-encoder
# pass for 2 or 5 cells, RN50's text tower in fp16, 10 to 397 classes. About 1 minute.
(cd benchmarks && timeout 120 "$py" coop_joint.py --device cuda --backbone RN50-quickgelu \
    --classes 10,100,397 --members 2,5 --steps 20 --repeats 3 --name coop_joint_gpu \
    --out "$out_abs") > "$out/coop_joint.log" 2>&1
echo "coop_joint.py on cuda: exit $?"; tail -12 "$out/coop_joint.log"
fi
if want demo; then
start=$(date +%s)
BENCH_DEMO_DIR="$demo/demo" timeout 180 "$py" -m bench run --methods all --shots 1,2,4,8,16 \
    --device cuda --output "$demo/out" --quiet > "$out/demo_cuda.log" 2>&1
echo "demo run on cuda: exit $?, $(( $(date +%s) - start )) s"; tail -15 "$out/demo_cuda.log"
"$py" -m bench report "$demo/out" --format markdown --layout main --out "$out/demo_cuda.md" \
    && cat "$out/demo_cuda.md"
fi
# The paper grid (benchmarks/grid.py): the eleven datasets' stand-ins, every method, shots 1-16,
# seed 1, RN50-quickgelu (random weights) on CUDA with each method's real epochs, at scale 0.01
# and then 0.05 of the classes and test images, each bench run stopped after 240 s (the cells it
# finished are still analysed; later scales are then skipped). Results are written after each
# scale, with the projection to the whole grid (seeds 1-3, real configs). CoCoOp trains with
# batch 1 (a text-encoder pass over every class per image), so its 10 epochs become 2 here (the
# projection still counts 10). About 8 minutes at most.
if want grid; then
start=$(date +%s)
(cd benchmarks && timeout 520 "$py" grid.py --scales 0.01,0.05 --seeds 1 --device cuda \
    --workers 12 --set cocoop.epochs=2 --timeout 240 --work "$demo/grid" --name grid_gpu \
    --out "$out_abs") > "$out/grid.log" 2>&1
echo "grid.py on cuda: exit $?, $(( $(date +%s) - start )) s"; tail -60 "$out/grid.log"
fi
# --decode gpu (benchmarks/gpu_decode.py): input-pipeline img/s of the PIL path (12 workers) and
# of nvJPEG + tensor crops on the GPU, eval transform and 4 train views, on 4,096 generated JPEGs;
# max/mean pixel difference between the two paths; the demo CLIP's top-1 with each. About 2 min.
if want decode; then
start=$(date +%s)
(cd benchmarks && BENCH_DEMO_DIR="$demo/demo" timeout 240 "$py" gpu_decode.py --device cuda --images 4096 --workers 12 \
    --out "$out_abs") > "$out/gpu_decode.log" 2>&1
echo "gpu_decode.py on cuda: exit $?, $(( $(date +%s) - start )) s"
grep -v -i warn "$out/gpu_decode.log" | tail -30
fi
# The reproducibility policy on CUDA (bench/base/determinism.py): the same demo cells (the prompt
# learners and adapters, whose fits run on the GPU; fp16 CoOp) twice under each policy, and each
# pair compared cell by cell (benchmarks/determinism.py --compare): under portable every cell
# must have the same logits hash; under off the count shows what CUDA's defaults give. ~2 min.
if want determinism; then
for policy in portable off; do
  for rep in 1 2; do
    BENCH_DEMO_DIR="$demo/demo" timeout 120 "$py" -m bench run --device cuda --quiet \
        --methods coop,kgcoop,clip_adapter_visual,tip_adapter_f,taskres --shots 4,16 --seeds 1 \
        --determinism "$policy" --output "$demo/det-$policy-$rep" >> "$out/determinism_cuda.log" 2>&1
    echo "determinism $policy run $rep: exit $?"
  done
  (cd benchmarks && "$py" determinism.py --compare "$demo/det-$policy-1" "$demo/det-$policy-2") \
      | tee "$out/determinism_cuda_$policy.json"
done
fi
