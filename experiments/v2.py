"""He et al. 2016, "Identity Mappings in Deep Residual Networks": original (v1) vs pre-activation
(v2) Residual Units on CIFAR-10.

Pairs: ResNet-110 with basic blocks, v1 vs full pre-activation; ResNet-164 with bottleneck blocks,
v1 vs v2; and ResNet-1001 v2 (bottleneck). The paper's v1 1001-layer net is in
cifar_resnet/spec/paper.py for reference but not trained here: the issue asks for ResNet-1001 v2 only.

Recipe (He 2016 sec 4 / appendix, as He 2015's): batch 128, lr 0.1 divided by 10 at 32k and 48k
iterations, 64k iterations (164 epochs of all 50k images = 64,124), weight decay 1e-4, momentum
0.9, final test error reported; 0.01 warm-up for 400 iterations at depth >= 110 (He 2016 uses it for ResNet-110 and ResNet-1001 v1; we apply the default rule).
Bottleneck nets use projection shortcuts where the shape changes (option B): with it ResNet-164
has 1.7M parameters, the paper's count. The paper's ResNet-1001 v2 4.92% is with batch 128 on
2 GPUs; its Table 4 also gives 4.62% with batch 64, not reproduced here.

Where the numbers come from: the issue text gives 6.61/6.37, 5.93/5.46, 7.61/4.92; they match
our reading of He 2016 Table 3 (CIFAR-10 column, "original Residual Unit" vs "pre-act Residual
Unit"), and 6.61/6.37 and 5.93/5.46 also appear in its Table 2 ("full pre-activation"). They were
checked against a text transcription of arXiv:1603.05027 (not the PDF), the same check as for
experiments/ablation_*.py; 6.61 is He 2015's ResNet-110 mean of 5 runs (Table 6).
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    preset="paper",
    batch_size=128,           # images per SGD iteration (He 2016: 128)
    lr=0.1,                   # base learning rate
    iterations=64000,         # SGD iterations at batch 128 (He 2016: 64k)
    lr_milestones=(0.5, 0.75),  # fractions of the iterations: 32k and 48k
    lr_factors=(0.1, 0.01),   # lr multipliers from each milestone on
    # all 50k training images: val_fraction left unset (the default), so a run directory
    # made when the default was the 45k/5k split resumes as it was; --set val_fraction=0.1 for it.
)

NETS = {
    "resnet110_v1": dict(version=1, depth=110, block="basic", shortcut="A"),
    "resnet110_v2": dict(version=2, depth=110, block="basic", shortcut="A"),     # pre-activation
    "resnet164_v1": dict(version=1, depth=164, block="bottleneck", shortcut="B"),  # 1.7M params
    "resnet164_v2": dict(version=2, depth=164, block="bottleneck", shortcut="B"),
    "resnet1001_v2": dict(version=2, depth=1001, block="bottleneck", shortcut="B"),  # 10.2M params
}

PAPER = paper.entries(paper.TABLE3_CIFAR10, NETS)  # test error in %

PANELS = {
    "basic": ["resnet110_v1", "resnet110_v2"],
    "bottleneck": ["resnet164_v1", "resnet164_v2", "resnet1001_v2"],
}
