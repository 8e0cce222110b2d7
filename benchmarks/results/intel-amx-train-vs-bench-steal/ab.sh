#!/bin/bash
# Pause the repro, run variants alternately, resume.  usage: ab.sh OUT ROUNDS
HERE=$(cd "$(dirname "$0")" && pwd); OUT=$1; ROUNDS=${2:-1}
cd "$HERE/../../.."
PIDS=$(pgrep -f "cifar_resnet sweep cpu_repro")
trap 'kill -CONT $PIDS' EXIT
kill -STOP $PIDS
mkdir -p $OUT
for r in $(seq $ROUNDS); do
 for v in ${VARIANTS:-full nocb bench tbonly}; do
  rm -rf /tmp/dg/$v
  case $v in
   full) cmd=".venv/bin/python $HERE/train_variant.py /tmp/dg/$v - 2";;
   nocb) cmd=".venv/bin/python $HERE/train_variant.py /tmp/dg/$v SignalStop,StepSchedule,DivergenceStop,TensorBoard 0";;
   tbonly) cmd=".venv/bin/python $HERE/train_variant.py /tmp/dg/$v TensorBoard 2";;
   bench) cmd=".venv/bin/python -m benchmarks.bench --nets resnet20_v1 --impls keras-bf16 --steps 80 --epochs ${BENCH_EPOCHS:-3} --dataset synthetic --synthetic-size 10240 --out /tmp/dg/bench";;
  esac
  S0=$(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  /usr/bin/time -f "TIME $v r$r wall %e user %U sys %S" env PYTHONPATH=/work/main $cmd > $OUT/$v-r$r.log 2>&1
  S1=$(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat); echo "$S0 $S1" | awk '{printf "steal %.1f%%\n", 100*($3-$1)/($4-$2)}'
  tail -n 1 $OUT/$v-r$r.log; grep -hE "\"ips\"|^EPOCH" $OUT/$v-r$r.log; [ $v = bench ] && grep -h "keras-bf16" /tmp/dg/bench/bench.md | head -3
 done
done
