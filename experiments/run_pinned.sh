#!/usr/bin/env bash
# Runs a sweep for days from a pinned copy of the code, in the background, at low priority:
# the way the long runs of issue #22 (`make full-repro`) go on across many sessions.
#
#   bash experiments/run_pinned.sh start EXPERIMENT [COMMIT]   start, or resume, in the background
#   bash experiments/run_pinned.sh status EXPERIMENT           the runs' state and the process
#   bash experiments/run_pinned.sh pause|cont EXPERIMENT       SIGSTOP / SIGCONT, around a timing
#   bash experiments/run_pinned.sh stop EXPERIMENT             SIGTERM: ends after the current batch
#   bash experiments/run_pinned.sh precision EXPERIMENT        the precision its runs train in
#
# Everything lives under $PINNED_HOME (default /work/EXPERIMENT with - for _, e.g. /work/full-repro,
# outside the work tree):
#   code/     a clone of this repository at COMMIT (default: HEAD when first started)
#   venv/     its own virtual environment, from code/requirements.txt
#   runs/     the run directories (runs/EXPERIMENT/<net>/seed0)
#   sweep.log every session's output, each start headed by the date, commit, CPU and precision
# The commit is fixed when code/ is made: a later `start` with another COMMIT is refused, so
# that a change on main never changes a run midway (each metrics.json records the commit too).
# DATA_DIR (default ../shared/data/cifar-10-python.tar.gz beside the repository) is the data.
# PRECISION (e.g. mixed_bfloat16) is the precision of an experiment whose runs have not started,
# or were lost: the campaign's, rather than what `auto` picks on this machine. A run that exists
# keeps its own; a PRECISION naming another is refused.
# One precision for the whole experiment: once a run has its config.json, every later start passes
# that run's precision (`--set precision=...`). Otherwise `precision: auto` would resolve anew on
# each machine: a session on a CPU without native bf16 would have a bfloat16 run refused
# (docs/reliability.md) and start the next net in float32.
set -euo pipefail
cmd=${1:?usage: run_pinned.sh start|status|pause|cont|stop EXPERIMENT [COMMIT]}
experiment=${2:?name the experiment, e.g. full_repro}
repo=$(cd "$(dirname "$0")/.." && pwd)
home=${PINNED_HOME:-/work/${experiment//_/-}}
data=${DATA_DIR:-$repo/../shared/data/cifar-10-python.tar.gz}
pidfile=$home/sweep.pid

# The precision of the experiment's runs so far (config.json), empty before the first (or where
# only runs from before the `precision` field exist: they resume in their own); two different
# ones are an error.
precision() {
  local found
  found=$(find "$home/runs/$experiment" -name config.json 2>/dev/null | sort \
          | xargs -r python3 -c 'import json, sys
found = {json.load(open(f)).get("precision") for f in sys.argv[1:]}
print("\n".join(sorted(found - {None, "auto"})))')
  if [ "$(printf '%s' "$found" | grep -c .)" -gt 1 ]; then
    echo "error: the runs in $home/runs/$experiment train in different precisions:" $found >&2
    return 2
  fi
  printf '%s' "$found"
}

alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null \
          && grep -q cifar_resnet "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; }

case $cmd in
start)
  if alive; then echo "already running: process $(cat "$pidfile") ($home)"; exit 0; fi
  fixed=$(precision)
  if [ -n "${PRECISION:-}" ] && [ -n "$fixed" ] && [ "$PRECISION" != "$fixed" ]; then
    echo "error: PRECISION=$PRECISION, but the runs in $home/runs/$experiment train in $fixed" >&2
    exit 2
  fi
  fixed=${fixed:-${PRECISION:-}}
  want=$(git -C "$repo" rev-parse "${3:-HEAD}")
  if [ ! -d "$home/code/.git" ]; then
    mkdir -p "$home"
    git clone --quiet --no-checkout "$repo" "$home/code"
    git -C "$home/code" checkout --quiet --detach "$want"
  fi
  have=$(git -C "$home/code" rev-parse HEAD)
  if [ -n "${3:-}" ] && [ "$have" != "$want" ]; then
    echo "error: $home/code is pinned at $have, not $want; runs resume only on their own code" >&2
    exit 2
  fi
  if [ ! -f "$home/venv/.installed" ]; then
    python3 -m venv "$home/venv"
    "$home/venv/bin/pip" install --quiet -r "$home/code/requirements.txt"
    touch "$home/venv/.installed"
  fi
  [ -e "$data" ] || { echo "error: no data at $data (set DATA_DIR)" >&2; exit 2; }
  {
    echo "=== $(date -u +%FT%TZ) start: commit $have, $(lscpu | sed -n 's/^Model name: *//p'), flags:" \
         "$(grep -ow -e avx512f -e avx512_bf16 -e amx_bf16 /proc/cpuinfo | sort -u | tr '\n' ' ')," \
         "precision ${fixed:-auto}"
  } >> "$home/sweep.log"
  cd "$home/code"
  nohup nice -n 19 "$home/venv/bin/python" -m cifar_resnet sweep "$experiment" \
    --runs-dir "$home/runs" --data-dir "$data" ${fixed:+--set "precision=$fixed"} \
    >> "$home/sweep.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  echo "started process $! (commit ${have:0:10}); log: $home/sweep.log"
  ;;
status)
  alive && echo "running: process $(cat "$pidfile")" || echo "not running"
  # The pinned code, which reads its runs' config.json in the format it writes them (a later
  # checkout reads only its own: benchmarks/migrate_config_json.py); this checkout's before
  # anything is pinned.
  if [ -x "$home/venv/bin/python" ] && [ -d "$home/code" ]; then py=$home/venv/bin/python
    cd "$home/code"
  else py=$repo/.venv/bin/python; cd "$repo"; fi
  # The same precision as `start` passes, so the commands it prints are the ones that run.
  fixed=$(precision)
  fixed=${fixed:-${PRECISION:-}}
  "$py" -m cifar_resnet sweep "$experiment" --runs-dir "$home/runs" --data-dir "$data" --dry-run \
    ${fixed:+--set "precision=$fixed"}
  ;;
pause|cont|stop)
  alive || { echo "not running"; exit 0; }
  sig=$(case $cmd in pause) echo STOP;; cont) echo CONT;; stop) echo TERM;; esac)
  # The sweep and its children (none with --jobs 1, but a subprocess sweep has them).
  pkill -"$sig" -P "$(cat "$pidfile")" 2>/dev/null || true
  kill -"$sig" "$(cat "$pidfile")"
  echo "sent SIG$sig to process $(cat "$pidfile")"
  ;;
precision)
  fixed=$(precision)
  echo "${fixed:-auto (no run has started)}"
  ;;
*) echo "error: unknown command $cmd; use start, status, pause, cont, stop or precision" >&2
   exit 2 ;;
esac
