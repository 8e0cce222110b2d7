"""He et al. 2016, "Identity Mappings in Deep Residual Networks", Table 2 / Figure 4: where BN and
ReLU go around the addition, on ResNet-110 (basic units) and ResNet-164 (bottleneck units),
CIFAR-10.

Each net sets `unit` (cifar_resnet/nets/variants.py):

    row (Fig. 4)                    unit
    (a) original                    "original"          conv-BN-ReLU-conv-BN, add, ReLU
    (b) BN after addition           "bn_after_add"      conv-BN-ReLU-conv, add, BN, ReLU
    (c) ReLU before addition        "relu_before_add"   conv-BN-ReLU-conv-BN-ReLU, add
    (d) ReLU-only pre-activation    "relu_only_preact"  ReLU-conv-BN-ReLU-conv-BN, add
    (e) full pre-activation         "full_preact"       BN-ReLU-conv-BN-ReLU-conv, add (v2)

As the paper's appendix says, the pre-activation nets ((d), (e)) activate the stem's output
before it splits into the two paths of the first unit, and add one activation after the last
addition. Bottleneck nets use projection shortcuts where the shape changes (option B), as the
appendix says; basic nets use option A as He 2015.

Recipe: He 2015 sec 4.2 (batch 128, lr 0.1 / 10 at 32k and 48k, 64k iterations, weight decay
1e-4, momentum 0.9, 0.01 warm-up for 400 iterations at depth >= 110), all 50k training images,
final test error (`--set val_fraction=0.1` for a 45k/5k split). The paper reports the median
of 5 runs.

Where the numbers come from: the issue lists them; we checked them against a text transcription
of arXiv:1603.05027 found with the search tool (Table 2 and sec. 4.1), not against the PDF.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    version=1, preset="paper", batch_size=128, lr=0.1, iterations=64000,
    lr_milestones=(0.5, 0.75), lr_factors=(0.1, 0.01),
    # all 50k training images: val_fraction left unset (the default), so a run directory
    # made when the default was the 45k/5k split resumes as it was; --set val_fraction=0.1 for it.
)

_DEPTHS = {110: dict(depth=110, block="basic", shortcut="A"),
           164: dict(depth=164, block="bottleneck", shortcut="B")}
_ROWS = paper.TABLE2_ROWS  # unit -> (Fig. 4 panel, row name, {depth: error %})

NETS = {f"resnet{d}_{unit}": dict(_DEPTHS[d], unit=unit) for unit in _ROWS for d in _DEPTHS}

PAPER = {  # test error in %
    f"resnet{d}_{unit}": dict(error=errors[d], source=paper.HE2016_TABLE2,
                              note=f"row '{row}', Fig. 4({panel}), ResNet-{d} column")
    for unit, (panel, row, errors) in _ROWS.items() for d in _DEPTHS
}

PANELS = {}
