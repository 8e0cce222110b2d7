"""He et al. 2015 Figure 6 and Table 6 at 20, 56 and 110 layers, and He et al. 2016's
pre-activation ResNet-56, the paper's recipe to its end (`make full-repro`, issues #22 and #37).

Seven nets, one after the other, in this order: ResNet-20, ResNet-56, plain-20, plain-56
(issue #22), then ResNet-110, plain-110 (both with the paper's 400-iteration warm-up at lr 0.01)
and ResNet-56 v2 (pre-activation bottleneck, the net of `make train DEPTH=56 VERSION=2`). The
project's own runs of the last three are a pinned sweep of their own (full_repro_110.py: the same
nets and recipe), begun after the first four had finished; `report` draws all seven together.
The recipe is figure6.py's, unchanged: SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 32k and 48k iterations, 64k iterations (164 passes of 391 = 64,124), pad-4
crop and flip, all 50,000 training images, a test evaluation after every pass.

Precision: bfloat16 where the CPU has it natively (avx512_bf16 or AMX), float32 elsewhere
(`precision="auto"`); each run's config.json states the policy it used,
and a run resumes only in that policy. `deterministic=True` so that a run resumed across many
sessions trains bit for bit as an unbroken one would.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    dataset="cifar10",        # `make full-repro` passes --data-dir (DATA_DIR)
    version=1,
    shortcut="A",             # option A for the residual nets (ignored by plain nets)
    preset="paper",
    batch_size=128,           # images per SGD iteration (paper: 128)
    lr=0.1,                   # base learning rate (paper: 0.1)
    iterations=64000,         # SGD iterations (paper: 64k); whole passes: 64,124
    lr_milestones=(0.5, 0.75),  # fractions of the iterations: 32k and 48k (paper)
    lr_factors=(0.1, 0.01),   # lr multipliers from each milestone on
    val_fraction=0.0,         # all 50k training images (paper, Table 6)
    precision="auto",         # bfloat16 where native, else float32 (config.json says which)
    deterministic=True,       # resumes bit for bit across sessions
)

# Residual nets first: Table 6's numbers and the half of Figure 6 not yet shown on CPU.
NETS = {
    "resnet20": dict(depth=20),
    "resnet56": dict(depth=56),
    "plain20": dict(depth=20, plain=True),
    "plain56": dict(depth=56, plain=True),
    "resnet110": dict(depth=110, warmup_iterations=400),
    "plain110": dict(depth=110, plain=True, warmup_iterations=400),
    "resnet56_v2": dict(version=2, depth=56, block="bottleneck", shortcut="B"),
}

PAPER = paper.entries(paper.TABLE6, NETS)  # test error in %

# Figure 6's left and middle panels; the paper leaves plain-110 out ("higher than 60%"): its own
# panel, against ResNet-110; and ResNet-56 in both versions.
PANELS = {
    "plain": ["plain20", "plain56"],
    "resnet": ["resnet20", "resnet56", "resnet110"],
    "110 layers": ["plain110", "resnet110"],
    "v1 and v2": ["resnet56", "resnet56_v2"],
}
