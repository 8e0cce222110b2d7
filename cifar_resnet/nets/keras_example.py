"""The nets of the old keras-team/keras ``examples/cifar10_resnet.py``, where they differ from
the paper's: its "wider" v2 body (bottleneck widths 16/64/128, stride on the first 1x1 conv,
projection shortcuts without BN on each stage's first unit).

`models.resnet_v2(preset="keras-example")` builds it (preset option ``v2_layout``); its v1 net
is the paper's layout with the preset's options (`architecture.MODEL_PRESETS`), so it needs
nothing here. The recipe side of the preset is in `presets`.
"""

from keras import layers

from cifar_resnet.nets import blocks


def v2_body(inputs, n, block, shortcut, plain, cfg):
    """The example's "wider" v2: bottleneck widths 16/64/128, stride on 1x1."""
    kw = blocks.layer_kwargs(cfg)
    x = blocks.resnet_layer(inputs, 16, name="stem", **kw)
    filters_in = 16
    for stage in range(3):
        filters_out = filters_in * (4 if stage == 0 else 2)
        for b in range(n):
            name = f"stage{stage + 1}_block{b + 1}"
            strides = 2 if stage > 0 and b == 0 else 1
            # The stem's BN-ReLU already pre-activates the very first unit.
            preact = not (stage == 0 and b == 0)
            y = blocks.resnet_layer(x, filters_in, 1, strides,
                             activation="relu" if preact else None,
                             batch_normalization=preact, conv_first=False,
                             name=name, suffix="1", **kw)
            y = blocks.resnet_layer(y, filters_in, conv_first=False, name=name,
                             suffix="2", **kw)
            y = blocks.resnet_layer(y, filters_out, 1, conv_first=False, name=name,
                             suffix="3", **kw)
            if plain:
                x = y
                continue
            if b == 0:
                x = blocks.resnet_layer(x, filters_out, 1, strides, activation=None,
                                 batch_normalization=False,
                                 name=f"{name}_shortcut", **kw)
            x = layers.Add(name=f"{name}_add")([x, y])
        filters_in = filters_out
    return x
