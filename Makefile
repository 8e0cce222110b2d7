# Two commands do everything on a fresh machine: `make train` and `make test` create the
# virtual environment (.venv) on first use. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

# make train DEPTH=56 VERSION=2 [PLAIN=1] [SHORTCUT=A|B|C] [PRESET=paper|keras-example]
#            [EPOCHS=N] [DATA_DIR=DIR] [DATASET=cifar10|synthetic] [SEED=k] [WORKDIR=DIR] [ARGS=...]
DEPTH ?= 20
VERSION ?= 1
TRAIN_FLAGS = --depth $(DEPTH) --version $(VERSION) $(if $(PLAIN),--plain) \
	$(if $(SHORTCUT),--shortcut $(SHORTCUT)) $(if $(PRESET),--preset $(PRESET)) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	$(if $(DATASET),--dataset $(DATASET)) $(if $(SEED),--seed $(SEED)) \
	$(if $(WORKDIR),--workdir $(WORKDIR)) $(ARGS)

.PHONY: setup train smoke test clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

train: setup
	$(PY) -m cifar_resnet train $(TRAIN_FLAGS)

# A tiny net on synthetic data: checks the whole path in well under a minute.
smoke: setup
	$(PY) -m cifar_resnet train --dataset synthetic --depth 8 --epochs 2 \
		--set synthetic_train=512 --set synthetic_test=256 --workdir runs/smoke $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

clean-venv:
	rm -rf $(VENV)
	rm -rf $(VENV)

# Side-by-side training throughput vs the PyTorch reference (needs the bench extra: torch).
# make bench [QUICK=1] [NETS=resnet20_v1,...] [IMPLS=keras,torch,...] [DATA_DIR=...]
.PHONY: bench
bench: setup
	$(PY) -m cifar_resnet.bench $(if $(QUICK),--quick) $(if $(NETS),--nets $(NETS)) \
		$(if $(IMPLS),--impls $(IMPLS)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)
