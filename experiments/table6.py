"""He et al. 2015, "Deep Residual Learning for Image Recognition", Table 6 (section 4.2).

CIFAR-10 test error of ResNet v1 with option-A shortcuts (identity, zero-padded channels) at
depths 20 to 1202, trained with the paper's recipe: SGD with momentum 0.9, weight decay 1e-4,
batch 128 on all 50,000 training images, lr 0.1 divided by 10 at 32k and 48k iterations, stop at
64k; ResNet-110 and 1202 warm up at lr 0.01 for 400 iterations (the defaults of config.Config).
The paper chose the 64k stopping point on a 45k/5k train/val split, then trained the reported
nets on all 50k; so does this file, and reports the FINAL test error. Whole epochs of 50k at
batch 128 are 391 iterations, so 64k becomes 164 epochs = 64,124 iterations (lr drops at
32,000 and 48,000). `--set val_fraction=0.1` restores the split for model-selection studies.

The paper reports ResNet-110 as "best (mean +- std)" over 5 runs; the other nets once.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    version=1,
    shortcut="A",             # zero-padding identity shortcuts (paper, CIFAR)
    preset="paper",           # Torch init, BN and weight-decay semantics (see README)
    batch_size=128,           # images per SGD iteration (paper: 128)
    lr=0.1,                   # base learning rate (paper: 0.1)
    iterations=64000,         # SGD iterations at batch 128 (paper: 64k = 164 epochs of 391)
    lr_milestones=(0.5, 0.75),  # fractions of the iterations: 32k and 48k (paper)
    lr_factors=(0.1, 0.01),   # lr multipliers from each milestone on (paper: /10, /100)
    # all 50k training images: val_fraction left unset (the default), so a run directory
    # made when the default was the 45k/5k split resumes as it was; --set val_fraction=0.1 for it.
)

NETS = {
    "resnet20": dict(depth=20),      # n = 3 basic blocks per stage
    "resnet32": dict(depth=32),      # n = 5
    "resnet44": dict(depth=44),      # n = 7
    "resnet56": dict(depth=56),      # n = 9
    "resnet110": dict(depth=110),    # n = 18; 400 warm-up iterations at lr 0.01 (default)
    "resnet1202": dict(depth=1202),  # n = 200; warm-up too
}

PAPER = paper.entries(paper.TABLE6, NETS)  # test error in %

PANELS = {}
