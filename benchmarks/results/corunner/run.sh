#!/bin/bash
# The bench beside one busy single-threaded process (the co-runner load of a shared machine).
# Run from the repository root: bash benchmarks/results/corunner/run.sh
python3 -c "while True: pass" & HOG=$!
trap 'kill $HOG' EXIT
.venv/bin/python -m cifar_resnet.bench --nets resnet20_v1 --steps 20 --epochs 4 \
  --impls keras,keras:intra=1,keras-bf16,torch --data-dir ../shared/data/cifar-10-python.tar.gz \
  --out benchmarks/results/corunner
