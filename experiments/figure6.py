"""He et al. 2015, "Deep Residual Learning for Image Recognition", Figure 6 (section 4.2).

Training on CIFAR-10: training error (dashed) and test error (bold) against iterations.
Left: plain-20/32/44/56, where deeper plain nets have HIGHER training error (degradation).
Middle: ResNet-20/32/44/56/110, where deeper is better. Right: ResNet-110 and ResNet-1202.

Eleven runs: the ten nets plotted (ResNet-110 is in the middle and right panels but is trained
once) and plain-110, which the paper trained but did not plot (caption: "The error of plain-110
is higher than 60% and not displayed"); it appears in the results table, not in the panels.
Its first iterations lengthen its first kernels a billionfold behind BatchNorm, so its loss is
at first millions, nearly all weight decay (docs/full-repro, "Plain-56"); the runner judges
divergence on the cross-entropy alone and lets it train.

Plain nets are the same stacks of 3x3 layers without shortcuts. Recipe as Table 6 (see
table6.py): SGD, batch 128, lr 0.1 /10 at 32k and 48k, 64k iterations (164 epochs of 391 =
64,124), weight decay 1e-4, all 50,000 training images, final test error reported.
The paper gives no numbers for the plain nets; the residual nets' errors are Table 6's.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    version=1,
    shortcut="A",             # option A for the residual nets (ignored by plain nets)
    preset="paper",
    batch_size=128,           # images per SGD iteration (paper: 128)
    lr=0.1,                   # base learning rate (paper: 0.1)
    iterations=64000,         # SGD iterations at batch 128 (paper: 64k)
    lr_milestones=(0.5, 0.75),  # fractions of the iterations: 32k and 48k (paper)
    lr_factors=(0.1, 0.01),   # lr multipliers from each milestone on
    # all 50k training images: val_fraction left unset (the default), so a run directory
    # made when the default was the 45k/5k split resumes as it was; --set val_fraction=0.1 for it.
)

NETS = {
    "plain20": dict(depth=20, plain=True),
    "plain32": dict(depth=32, plain=True),
    "plain44": dict(depth=44, plain=True),
    "plain56": dict(depth=56, plain=True),
    "plain110": dict(depth=110, plain=True),  # trained, not plotted in the paper (error > 60%)
    "resnet20": dict(depth=20),
    "resnet32": dict(depth=32),
    "resnet44": dict(depth=44),
    "resnet56": dict(depth=56),
    "resnet110": dict(depth=110),    # 400 warm-up iterations at lr 0.01 (default at depth >= 110)
    "resnet1202": dict(depth=1202),
}

# Test error in %. The plain nets' errors are only curves in the paper (plain-110: "> 60%"),
# so they have no entry here.
PAPER = paper.entries(paper.TABLE6, NETS)  # test error in %; none for the plain nets

PANELS = {
    "plain": ["plain20", "plain32", "plain44", "plain56"],
    "resnet": ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"],
    "deep": ["resnet110", "resnet1202"],
}
