"""He et al. 2015 Figure 6 (section 4.2) at 20 and 56 layers, on 2 CPU cores (`make cpu-repro`).

Both halves of the figure, on TRAINING error (dashed): plain-56 ends above plain-20
(degradation), and ResNet-56 ends at or below ResNet-20 (residual learning removes it).

The paper's recipe shape, shortened: SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 50% and 75% of the iterations (the paper's 32k/48k of 64k), pad-4 crop and
flip, all 50,000 training images (no validation split, as in the paper's Table 6 runs), and
20 epochs = 7,820 iterations instead of 64k (3,910 at lr 0.1). Test errors after 7,820
iterations are far from Table 6's; the comparisons between the four nets are what this shows.

bfloat16 (`precision="auto"`) because the machine it was sized on has native bf16
(avx512_bf16 and AMX); on a CPU without it, precision "auto" trains in float32 instead and says
so (cifar_resnet/spec/cpu.py), and each run's config.json records the precision used.

Sized to about 3 hours of a 2-core CPU with native bf16; the measured times, the results and
the 8-epoch version: docs/cpu-repro/README.md. The runs resume, so they may run in several parts.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    dataset="cifar10",        # `make cpu-repro` passes --data-dir (DATA_DIR)
    version=1,
    shortcut="A",             # option A for the residual nets (ignored by plain nets)
    preset="paper",
    batch_size=128,           # images per SGD iteration (paper: 128)
    lr=0.1,                   # base learning rate (paper: 0.1)
    epochs=20,                # epochs of 50k images = 7,820 iterations (paper: 64k)
    log_every="1 pass",       # a history row and test evaluation every 391 iterations: 20 points
    lr_milestones=(0.5, 0.75),  # fractions of the 7,820 iterations: 3,910 and 5,865
    lr_factors=(0.1, 0.01),   # lr multipliers from each milestone on (paper: /10, /100)
    val_fraction=0.0,         # all 50k training images (paper, Table 6)
    precision="auto",         # bfloat16: native on the machine this was sized on
)

# Residual nets first: the half of the figure that needs the most iterations to show.
NETS = {
    "resnet20": dict(depth=20),
    "resnet56": dict(depth=56),
    "plain20": dict(depth=20, plain=True),
    "plain56": dict(depth=56, plain=True),
}

PAPER = paper.entries(  # after the paper's 64k iterations, for reference only
    paper.TABLE6, NETS, note="after 64k iterations; this schedule is 7,820")

PANELS = {
    "plain": ["plain20", "plain56"],
    "resnet": ["resnet20", "resnet56"],
}
