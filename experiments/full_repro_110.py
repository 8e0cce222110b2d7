"""He et al. 2015 Table 6 and Figure 6 at 110 layers, and He et al. 2016's pre-activation
ResNet-56, the paper's recipe to its end (issue #37), beside `full_repro` (20 and 56 layers).

Three nets, one after the other, in this order:
- ResNet-110: v1, option-A shortcuts (He 2015 Table 6: 6.43, mean of 5 runs 6.61 +- 0.16);
- plain-110: the same 110 layers without shortcuts (He 2015 Figure 6: "higher than 60%", not
  plotted by the paper);
- ResNet-56 v2: pre-activation, bottleneck blocks, projection shortcuts where the shape changes
  (He 2016), the net of the README's `make train DEPTH=56 VERSION=2` (the paper reports no
  56-layer v2 on CIFAR-10, so it has no number to compare with).

The recipe is full_repro.py's to the iteration, unchanged: SGD momentum 0.9, weight decay 1e-4,
batch 128, lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations (164 passes of 391 =
64,124), pad-4 crop and flip, all 50,000 training images, a test evaluation after every pass.
At depth 110 both nets start with the paper's warm-up (He 2015 sec 4.2: lr 0.01 until the
training error is below 80%, "about 400 iterations"; here exactly 400, the runner's default at
depth >= 110), then lr 0.1. ResNet-56 v2 has no warm-up, as `make train` trains it.

Precision: bfloat16 where the CPU has it natively, else float32 (`precision="auto"`, as
`make train ... PRECISION=auto`); each run resumes only in the policy its config.json states.
`deterministic=True` so that a run resumed across many sessions is bit for bit an unbroken one.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    dataset="cifar10",        # `run_pinned.sh` passes --data-dir (DATA_DIR)
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

# ResNet-110 first: Table 6's most cited row, and both residual panels of Figure 6 need it.
NETS = {
    "resnet110": dict(version=1, depth=110, shortcut="A", warmup_iterations=400),
    "plain110": dict(version=1, depth=110, plain=True, warmup_iterations=400),
    "resnet56_v2": dict(version=2, depth=56, block="bottleneck", shortcut="B"),
}

PAPER = paper.entries(paper.TABLE6, NETS)  # test error in %; ResNet-110 only

PANELS = {
    "plain": ["plain110"],
    "resnet": ["resnet110"],
    "v2": ["resnet56_v2"],
}
