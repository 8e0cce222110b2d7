"""Every number this project quotes from the papers, once, with its source.

- He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition" (arXiv:1512.03385),
  section 4.2 and Table 6: CIFAR-10 test error of ResNet v1 (option A), one run each except
  ResNet-110 (best of 5, with the mean and standard deviation of the 5).
- He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks" (arXiv:1603.05027):
  Table 1 (shortcut variants on ResNet-110), Table 2 (activation placements on ResNet-110/164)
  and Table 3 (v1 vs pre-activation, CIFAR-10 and CIFAR-100); medians of 5 runs.
- The Keras example (keras-team/keras, examples/cifar10_resnet.py, November 2017): its docstring's
  test accuracies after 200 epochs, stored as error = 100 - accuracy.

Errors are test errors in %. Each entry is a dict {"error", "source", and optionally "params",
"mean", "std", "note"}: the PAPER format of an experiment file (spec/experiments.py), so an
experiment names its nets' entries instead of copying numbers. `error` is None where the paper
reports "fail" (He 2016 Table 1: test error above 20%).

Where the numbers were checked: Table 6 against the paper's text; He 2016's tables against a text
transcription of arXiv:1603.05027 found with the search tool, not against the PDF.
"""

from __future__ import annotations

# He 2015 sec. 4.2: training is terminated at 64k iterations (lr divided by 10 at 32k and 48k).
ITERATIONS = 64000

HE2015_TABLE6 = "He 2015 Table 6"
HE2016_TABLE1 = "He 2016 Table 1"
HE2016_TABLE2 = "He 2016 Table 2"
HE2016_TABLE3 = "He 2016 Table 3"
KERAS_EXAMPLE = "Keras example cifar10_resnet.py docstring table (200-epoch accuracy)"

# He 2015 Table 6: ResNet v1, option-A shortcuts, CIFAR-10, 64k iterations on all 50k images.
TABLE6 = {
    "resnet20": dict(error=8.75, params="0.27M", source=HE2015_TABLE6),
    "resnet32": dict(error=7.51, params="0.46M", source=HE2015_TABLE6),
    "resnet44": dict(error=7.17, params="0.66M", source=HE2015_TABLE6),
    "resnet56": dict(error=6.97, params="0.85M", source=HE2015_TABLE6),
    "resnet110": dict(error=6.43, mean=6.61, std=0.16, params="1.7M", source=HE2015_TABLE6,
                      note="best of 5 runs; 6.61 +- 0.16 is the mean +- std of the 5"),
    "resnet1202": dict(error=7.93, params="19.4M", source=HE2015_TABLE6,
                       note="overfits: training error < 0.1%, test error above ResNet-110's"),
}

# He 2016 Table 3: original (v1) vs pre-activation (v2) units. ResNet-110 v1 is He 2015's mean.
TABLE3_CIFAR10 = {
    "resnet110_v1": dict(error=6.61, source=HE2016_TABLE3,
                         note="He 2015 Table 6 ResNet-110 mean of 5 runs (best 6.43)"),
    "resnet110_v2": dict(error=6.37, source=HE2016_TABLE3),
    "resnet164_v1": dict(error=5.93, source=HE2016_TABLE3),
    "resnet164_v2": dict(error=5.46, source=HE2016_TABLE3),
    "resnet1001_v1": dict(error=7.61, params="10.2M", source=HE2016_TABLE3),
    "resnet1001_v2": dict(error=4.92, params="10.2M", source=HE2016_TABLE3),
}
TABLE3_CIFAR100 = {
    "resnet164_v1": dict(error=25.16, source=HE2016_TABLE3),
    "resnet164_v2": dict(error=24.33, source=HE2016_TABLE3),
    "resnet1001_v1": dict(error=27.82, source=HE2016_TABLE3),
    "resnet1001_v2": dict(error=22.71, source=HE2016_TABLE3),
}

# He 2016 Table 2 / Figure 4: unit -> (panel, row name, {depth: error}); ResNet-110 uses basic
# units, ResNet-164 bottleneck units.
TABLE2_ROWS = {
    "original": ("a", "original Residual Unit", {110: 6.61, 164: 5.93}),
    "bn_after_add": ("b", "BN after addition", {110: 8.17, 164: 6.50}),
    "relu_before_add": ("c", "ReLU before addition", {110: 7.84, 164: 6.14}),
    "relu_only_preact": ("d", "ReLU-only pre-activation", {110: 6.71, 164: 5.91}),
    "full_preact": ("e", "full pre-activation", {110: 6.37, 164: 5.46}),
}

# He 2016 Table 1 / Figure 2: shortcut variants on ResNet-110, net name -> entry.
_FAIL = "fail: test error above 20% (Table 1 caption)"
TABLE1 = {
    "resnet110": dict(error=6.61, source=HE2016_TABLE1, note="row 'original', Fig. 2(a)"),
    "plain110": dict(error=None, source=HE2016_TABLE1,
                     note=f"row 'constant scaling' 0 / 1, Fig. 2(b); {_FAIL}"),
    "scaling_0.5_1": dict(error=None, source=HE2016_TABLE1,
                          note=f"row 'constant scaling' 0.5 / 1, Fig. 2(b); {_FAIL}"),
    "scaling_0.5_0.5": dict(error=12.35, source=HE2016_TABLE1,
                            note="row 'constant scaling' 0.5 / 0.5 (frozen gating), Fig. 2(b)"),
    "exclusive_gating_bg0": dict(error=None, source=HE2016_TABLE1,
                                 note=f"row 'exclusive gating', init b_g 0 to -5; {_FAIL}"),
    "exclusive_gating_bg-5": dict(error=None, source=HE2016_TABLE1,
                                  note=f"row 'exclusive gating', init b_g 0 to -5; {_FAIL}"),
    "exclusive_gating_bg-6": dict(error=8.70, source=HE2016_TABLE1,
                                  note="row 'exclusive gating', init b_g -6, Fig. 2(c)"),
    "exclusive_gating_bg-7": dict(error=9.81, source=HE2016_TABLE1,
                                  note="row 'exclusive gating', init b_g -7, Fig. 2(c)"),
    "shortcut_only_gating_bg0": dict(error=12.86, source=HE2016_TABLE1,
                                     note="row 'shortcut-only gating', init b_g 0, Fig. 2(d)"),
    "shortcut_only_gating_bg-6": dict(error=6.91, source=HE2016_TABLE1,
                                      note="row 'shortcut-only gating', init b_g -6, Fig. 2(d)"),
    "conv1x1": dict(error=12.22, source=HE2016_TABLE1, note="row '1x1 conv shortcut', Fig. 2(e)"),
    "dropout_0.5": dict(error=None, source=HE2016_TABLE1,
                        note=f"row 'dropout shortcut' 0.5, Fig. 2(f); {_FAIL}"),
}

# The Keras example's published test accuracies (%), best-on-test checkpoint after 200 epochs.
KERAS_EXAMPLE_ACCURACY = {
    "resnet20_v1": 92.16, "resnet32_v1": 92.46, "resnet44_v1": 92.50, "resnet56_v1": 92.71,
    "resnet110_v1": 92.65, "resnet56_v2": 93.01, "resnet110_v2": 93.15,
}
KERAS_EXAMPLE_TABLE = {net: dict(error=round(100 - accuracy, 2), source=KERAS_EXAMPLE)
                       for net, accuracy in KERAS_EXAMPLE_ACCURACY.items()}


def entries(table: dict, nets, note: str | None = None) -> dict:
    """The entries of `table` for those of `nets` it has, each a fresh dict (with `note` added).

    Args:
        table: one of this module's tables.
        nets: net names (an experiment's NETS).
        note: replaces each entry's note, e.g. "after 64k iterations; this schedule is 7,820".
    """
    return {net: dict(table[net], **({"note": note} if note else {}))
            for net in nets if net in table}


# The comparisons He 2015 draws between its CIFAR-10 nets (sec. 4.2, Table 6, Figure 6), each
# (a, b, what the paper finds), b the deeper or the residual net: results/paired.py tests each
# with one run of each net.
COMPARISONS = (
    ("plain20", "plain56", "Figure 6 (left): the deeper plain net has the higher error"),
    ("plain56", "plain110", "sec. 4.2: plain-110's error is higher than 60%"),
    ("plain20", "resnet20", "Figure 6: with shortcuts, lower error at the same depth"),
    ("plain56", "resnet56", "Figure 6: with shortcuts, lower error at the same depth"),
    ("plain110", "resnet110", "Figure 6: with shortcuts, lower error at the same depth"),
    ("resnet20", "resnet56", "Table 6: 8.75 against 6.97"),
    ("resnet56", "resnet110", "Table 6: 6.97 against 6.43 (mean of 5 runs 6.61)"),
)
