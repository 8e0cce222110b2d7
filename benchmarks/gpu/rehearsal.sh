#!/usr/bin/env bash
# make gpu-rehearsal: the real GPU call (benchmarks/gpu/run.sh, ResNet-20 on the real compact
# CIFAR-10) rehearsed on this CPU with the GPU machine's versions: Python 3.12, jax/jaxlib 0.11.2
# (CPU), numpy 2.5.2, keras from the bundle's wheels, no TensorFlow. Call 1 gets SIGTERM at CUT
# seconds (any moment you choose); call 2, on a fresh work folder as on a fresh machine,
# continues from call 1's OUTDIR (--resume-from). rehearsal_check.py then checks the exit
# statuses, the packed summary, partial metrics, checkpoints, the compile counts and the resume.
#   CUT=300 TOTAL1=540 TOTAL2=420 LOG_EVERY=30 benchmarks/gpu/rehearsal.sh
# LOG_EVERY: iterations per checkpoint and test evaluation (a pass, 390, takes minutes here).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY312=${PY312:-/root/.pyenv/versions/3.12.1/bin/python}
VENV=${REHEARSAL_VENV:-/tmp/gpu-rehearsal-venv}
DIR=${REHEARSAL_DIR:-/tmp/gpu-rehearsal}
CUT=${CUT:-300} TOTAL1=${TOTAL1:-540} TOTAL2=${TOTAL2:-420} LOG_EVERY=${LOG_EVERY:-30}
if [ ! -f .gpu-bundle/manifest.json ]; then
  echo "no .gpu-bundle: run make gpu-bundle first" >&2; exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY312" -m venv "$VENV"
  # What the GPU machine has (its jax has CUDA; this one is the CPU build of the same version).
  "$VENV/bin/pip" install -q "jax[cpu]==0.11.2" "jaxlib==0.11.2" "numpy==2.5.2" h5py rich \
    absl-py ml_dtypes packaging pillow || exit 2
fi
if "$VENV/bin/python" -c "import keras" 2>/dev/null || "$VENV/bin/python" -c "import tensorflow" 2>/dev/null; then
  echo "$VENV has keras or tensorflow installed; the rehearsal needs neither" >&2; exit 2
fi
rm -rf "$DIR"; mkdir -p "$DIR"
export PYTHON=$VENV/bin/python JAX_PLATFORMS=cpu
common=(--log-every="$LOG_EVERY")
t0=$(date +%s)
benchmarks/gpu/run.sh --total="$TOTAL1" "${common[@]}" --work="$DIR/work1" "$DIR/out1" \
  > "$DIR/call1.log" 2>&1 &
pid=$!
( sleep "$CUT"; kill -TERM $pid 2>/dev/null ) &
cutter=$!
wait $pid; rc1=$?
kill $cutter 2>/dev/null; wait $cutter 2>/dev/null
t1=$(date +%s)
echo "call 1: exit $rc1 after $((t1 - t0)) s (SIGTERM at $CUT s)"
benchmarks/gpu/run.sh --total="$TOTAL2" "${common[@]}" --resume-from "$DIR/out1" \
  --work="$DIR/work2" "$DIR/out2" > "$DIR/call2.log" 2>&1
rc2=$?
t2=$(date +%s)
echo "call 2: exit $rc2 after $((t2 - t1)) s (--total=$TOTAL2)"
"$VENV/bin/python" benchmarks/gpu/rehearsal_check.py "$DIR" $rc1 $((t1 - t0)) $CUT $rc2 \
  $((t2 - t1)) "$TOTAL2"
