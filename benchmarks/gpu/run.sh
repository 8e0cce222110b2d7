#!/usr/bin/env bash
# The prepared GPU run: benchmarks/gpu/run.sh [--resume] OUTDIR, or --smoke OUTDIR on a CPU.
# Needs `make gpu-bundle` first (carried as .gpu-bundle); stages and outputs: gpu_run.py.
# Finishes within 9 minutes: the runs stop at an inner deadline (gpu_run.py --total, 510 s), the
# command gets SIGTERM at 540 s (it then stops the runs and packs) and SIGKILL 30 s later.
set -euo pipefail
cd "$(dirname "$0")/../.."
args=() out=""
for a in "$@"; do
  case $a in
    --smoke|--resume) args+=("$a") ;;
    --*=*) args+=("$a") ;;
    -*) echo "unknown option $a; allowed: --smoke, --resume, --work=DIR, --bundle=DIR" >&2; exit 2 ;;
    *) out=$a ;;
  esac
done
if [ -z "$out" ]; then
  echo "usage: benchmarks/gpu/run.sh [--smoke] [--resume] OUTDIR" >&2
  exit 2
fi
limit=540
case " ${args[*]-} " in *" --smoke "*) limit=1500 ;; esac
exec timeout -k 30 -s TERM $limit "${PYTHON:-python3}" -m benchmarks.gpu.gpu_run "$out" ${args[@]+"${args[@]}"}
