#!/usr/bin/env bash
# Every GPU-side measurement of benchmarks/ in one go, and one table of what each found.
#
#   benchmarks/gpu_check.sh            # on a machine with CUDA: the full check (<= 8 min on one H100/H200)
#   benchmarks/gpu_check.sh --dry-run  # tiny sizes on the CPU (the default where CUDA is absent)
#
# Each row runs one benchmark script with a time limit, keeps its whole output in
# $GPU_CHECK_OUT/<name>.txt (default: a fresh temporary directory) and shows its wall time, its
# status and the line of its output that holds its result. A benchmark that fails or runs out of
# time is a row saying so; the others still run. The script exits 1 if any row failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

mode=full
if [ "${1:-}" = "--dry-run" ] || ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  mode=dry
fi
out=${GPU_CHECK_OUT:-$(mktemp -d)}
mkdir -p "$out"

# name; time limit (s); pattern of the result line; arguments (full); arguments (dry run)
checks=(
  "surface_vs_reference;150;\*\*[0-9.]+x\*\*;bench_landscape.py --device cuda --grid 3 --n 50000 --repeats 1 --resnet-repeats 1 --compile none --batch 2048;bench_landscape.py --grid 3 --n 32 --repeats 1 --resnet-repeats 1 --compile none --skip-resnet --subset-frac 0.5"
  "repulsion_share;60;^ *[0-9]+ \|.*%;bench_repulsion.py --device cuda --repeats 2 --checkpoints 1 4 16;bench_repulsion.py --repeats 1 --inner 2 --checkpoints 1 2"
  "ensemble_vmap_vs_loop;60;ratio loop / vmap;bench_ensemble.py --device cuda --members 8 --batch 2048 --repeats 3;bench_ensemble.py --device cpu --model small_cnn --image-size 8 --channels 1 --members 2 --batch 16 --repeats 1"
  "trainer_overhead;90;Trainer / hand loop;bench_trainer.py --device cuda --epochs 3 --repeats 2;bench_trainer.py --device cpu --epochs 2 --repeats 1"
  "curve_epoch_ratio;90;\*\*[0-9.]+\*\*;bench_curve.py --device cuda --epochs 2 --resnet-n 8192;bench_curve.py --epochs 1 --skip-resnet"
  "map_two_workers;120;^(small_cnn|resnet20) ;bench_map_workers.py --device cuda --grid 9 --n 5000 --model resnet20;bench_map_workers.py --grid 3 --n 16 --model small_cnn"
)

echo "gpu_check: $mode run, outputs in $out"
printf '%-24s %8s  %-10s %s\n' "measurement" "seconds" "status" "result"
failed=0
for row in "${checks[@]}"; do
  IFS=';' read -r name limit pattern full dry <<<"$row"
  args=$full
  if [ "$mode" = dry ]; then args=$dry; limit=$((limit < 60 ? limit : 60)); fi
  start=$(date +%s%N)
  # shellcheck disable=SC2086  # the arguments are words
  timeout "$limit" "$PY" benchmarks/$args >"$out/$name.txt" 2>&1
  rc=$?
  tenths=$(( ($(date +%s%N) - start) / 100000000 ))
  took="$((tenths / 10)).$((tenths % 10))"
  case $rc in
    0) status=ok ;;
    124) status="timed out"; failed=1 ;;
    *) status="failed ($rc)"; failed=1 ;;
  esac
  result=$(grep -iE "$pattern" "$out/$name.txt" | grep -vE "WARNING|INFO|core_worker" | tail -n 1 | tr -s ' ' | cut -c1-140)
  printf '%-24s %8s  %-10s %s\n' "$name" "$took" "$status" "${result:-(no result line; see $out/$name.txt)}"
done
exit $failed
