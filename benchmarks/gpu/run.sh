#!/usr/bin/env bash
# The prepared GPU run: benchmarks/gpu/run.sh [options] OUTDIR (stages and outputs: gpu_run.py).
#   --total=SECONDS       the call's budget (default 540; --smoke 1200): the runs stop in time for
#                         the test errors and the pack; SIGTERM at SECONDS (it then stops the runs
#                         within 10 s and packs), SIGKILL 20 s later.
#   --resume-from DIR     continue the runs an earlier call packed into DIR (its OUTDIR, carried)
#   --resume              continue the runs in --work (the same, still-warm machine)
#   --nets=a,b            resnet20 (default), plain20, plain56, resnet56
#   --throughput          the throughput table after training, as time allows
#   --log-every=N         iterations per history row/test evaluation/checkpoint (default a pass)
#   --smoke               toy size on a CPU, its own bundle
#   --work=DIR --bundle=DIR
# Needs `make gpu-bundle` first (carried as .gpu-bundle). Exit status: 0 when the call packed
# what it had (also when cut short at --total), 1 when a stage failed, 2 bad usage, 137 only if
# even the pack did not finish in the 20 s grace.
set -euo pipefail
cd "$(dirname "$0")/../.."
args=() out="" total="" smoke=0 want_dir=0
for a in "$@"; do
  if [ $want_dir = 1 ]; then args+=("--resume-from=$a"); want_dir=0; continue; fi
  case $a in
    --smoke) smoke=1; args+=("$a") ;;
    --resume|--throughput) args+=("$a") ;;
    --resume-from) want_dir=1 ;;
    --total=*) total=${a#--total=} ;;
    --resume-from=*|--nets=*|--work=*|--bundle=*|--log-every=*) args+=("$a") ;;
    -*) echo "unknown option $a; allowed: --total=S, --resume-from DIR, --resume, --nets=LIST," \
             "--throughput, --smoke, --work=DIR, --bundle=DIR" >&2; exit 2 ;;
    *) out=$a ;;
  esac
done
if [ -z "$out" ] || [ $want_dir = 1 ]; then
  echo "usage: benchmarks/gpu/run.sh [--total=SECONDS] [--resume-from DIR] [--smoke] OUTDIR" >&2
  exit 2
fi
if [ -z "$total" ]; then total=$([ $smoke = 1 ] && echo 1200 || echo 540); fi
case $total in ''|*[!0-9]*) echo "--total: whole seconds, got '$total'" >&2; exit 2 ;; esac
# --preserve-status: the exit status is the call's own (0 after a pack at the deadline), not 124.
exec timeout --preserve-status -k 20 -s TERM "$total" \
  "${PYTHON:-python3}" -m benchmarks.gpu.gpu_run "$out" --total="$total" ${args[@]+"${args[@]}"}
