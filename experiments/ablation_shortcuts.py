"""He et al. 2016, "Identity Mappings in Deep Residual Networks", Table 1 / Figure 2: shortcut
variants on ResNet-110 (CIFAR-10), every Residual Unit changed, after-addition ReLU kept.

Each net is `unit="original"` with one `shortcut_variant` (cifar_resnet/nets/variants.py):
y = a(x) * h(x) + b(x) * F(x), x_next = ReLU(y).

    row                      a (shortcut)   b (F)   net here
    original                 1              1       resnet110
    constant scaling         0              1       plain110 (the paper: "this is a plain net")
    constant scaling         0.5            1       scaling_0.5_1
    constant scaling         0.5            0.5     scaling_0.5_0.5 ("frozen gating")
    exclusive gating         1 - g(x)       g(x)    exclusive_gating_bg{0..-7}
    shortcut-only gating     1 - g(x)       1       shortcut_only_gating_bg{0,-6}
    1x1 conv shortcut        1x1 conv       1       conv1x1 (option C of He 2015)
    dropout shortcut         dropout 0.5    1       dropout_0.5

g(x) = sigmoid(W_g x + b_g), a 1x1 convolution; the paper searched the initial b_g from 0 to -10
in steps of -1 on a held-out split and reports b_g = 0 to -5 as "fail", -6: 8.70, -7: 9.81; we
list b_g = 0 and -5 for the failing range. "fail" means a test error above 20% (Table 1
caption); such rows have error None and say so in their note.

Recipe: He 2015 sec 4.2 (batch 128, lr 0.1 / 10 at 32k and 48k, 64k iterations, weight decay
1e-4, momentum 0.9, 0.01 warm-up for 400 iterations at depth 110), as He 2016's appendix says;
all 50k training images, final test error (`--set val_fraction=0.1` for a 45k/5k split).
The paper reports the median of 5 runs.

Where the numbers come from: the issue lists them; we checked them against a text transcription
of arXiv:1603.05027 found with the search tool (Table 1 and sec. 3.1), not against the PDF.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    version=1, depth=110, block="basic", shortcut="A", preset="paper",
    batch_size=128, lr=0.1, iterations=64000, lr_milestones=(0.5, 0.75),
    lr_factors=(0.1, 0.01),
    # all 50k training images: val_fraction left unset (the default), so a run directory
    # made when the default was the 45k/5k split resumes as it was; --set val_fraction=0.1 for it.
)

NETS = {
    "resnet110": dict(),
    "plain110": dict(plain=True),
    "scaling_0.5_1": dict(shortcut_variant="scaling", shortcut_scale=0.5, residual_scale=1.0),
    "scaling_0.5_0.5": dict(shortcut_variant="scaling", shortcut_scale=0.5, residual_scale=0.5),
    "exclusive_gating_bg0": dict(shortcut_variant="exclusive_gating", gate_bias_init=0.0),
    "exclusive_gating_bg-5": dict(shortcut_variant="exclusive_gating", gate_bias_init=-5.0),
    "exclusive_gating_bg-6": dict(shortcut_variant="exclusive_gating", gate_bias_init=-6.0),
    "exclusive_gating_bg-7": dict(shortcut_variant="exclusive_gating", gate_bias_init=-7.0),
    "shortcut_only_gating_bg0": dict(shortcut_variant="shortcut_only_gating", gate_bias_init=0.0),
    "shortcut_only_gating_bg-6": dict(shortcut_variant="shortcut_only_gating",
                                      gate_bias_init=-6.0),
    "conv1x1": dict(shortcut_variant="conv1x1", shortcut="C"),
    "dropout_0.5": dict(shortcut_variant="dropout", shortcut_dropout=0.5),
}

PAPER = paper.entries(paper.TABLE1, NETS)  # test error in %; None: "fail"

PANELS = {}
