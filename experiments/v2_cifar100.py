"""He et al. 2016, "Identity Mappings in Deep Residual Networks": original (v1) vs pre-activation
(v2) Residual Units on CIFAR-100 (Table 3, CIFAR-100 column).

Pairs: ResNet-164 and ResNet-1001, bottleneck units, v1 vs v2. CIFAR-100 is read from the
official python layout (`cifar-100-python/`: train, test, meta) with its 100 "fine" labels;
`--set label_mode=coarse` would train on the 20 superclasses, which the paper does not report.

Recipe: the CIFAR-10 one of experiments/v2.py, which He 2016 uses for both data sets: batch 128,
lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations, weight decay 1e-4, momentum 0.9,
0.01 warm-up for 400 iterations at depth >= 110 (the default rule); projection shortcuts where
the shape changes (option B); a 45k/5k train/val split for model selection.

Where the numbers come from: the issue text gives 25.16/24.33 (ResNet-164) and 27.82/22.71
(ResNet-1001). The ResNet-1001 v2 figure agrees with Papers with Code's 77.3% accuracy for this
paper on CIFAR-100; the table itself could not be read here (no copy of the paper's text was
available to this project's tools), so the other three are as the issue states them.

GPU-hours (README's method): forward FLOPs counted from the layer shapes (ResNet-164: 0.50
GFLOP per image, ResNet-1001: 2.98; 100 classes add 0.00005), scaled to He 2016's 27 hours on
2 GPUs for ResNet-1001 (54 GPU-hours for 64k iterations): about 9 per ResNet-164 run and 54 per
ResNet-1001 run, 126 for the four.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    preset="paper",
    dataset="cifar100",       # 100 classes; the classifier's width follows (Config.num_classes)
    label_mode="fine",
    batch_size=128,           # images per SGD iteration (He 2016: 128)
    lr=0.1,                   # base learning rate
    iterations=64000,         # SGD iterations at batch 128 (He 2016: 64k)
    lr_milestones=(0.5, 0.75),  # fractions of the iterations: 32k and 48k
    lr_factors=(0.1, 0.01),   # lr multipliers from each milestone on
    val_fraction=0.1,         # 45k/5k train/val split for model selection
)

NETS = {
    "resnet164_v1": dict(version=1, depth=164, block="bottleneck", shortcut="B"),
    "resnet164_v2": dict(version=2, depth=164, block="bottleneck", shortcut="B"),
    "resnet1001_v1": dict(version=1, depth=1001, block="bottleneck", shortcut="B"),
    "resnet1001_v2": dict(version=2, depth=1001, block="bottleneck", shortcut="B"),
}

PAPER = paper.entries(paper.TABLE3_CIFAR100, NETS)  # test error in %, CIFAR-100

PANELS = {
    "resnet164": ["resnet164_v1", "resnet164_v2"],
    "resnet1001": ["resnet1001_v1", "resnet1001_v2"],
}
