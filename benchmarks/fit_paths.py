"""The README's "From Python" path against a one-iterator dataset: images/s of each epoch of
`model.fit` (issue #40 item 6).

    python -m benchmarks.fit_paths arrays|repeated|per_epoch [--images N] [--epochs E]

`arrays` is `model.fit(x, y, batch_size=128)` as the README's snippet once had it: Keras builds a
new tf.data iterator over the arrays at every epoch. `per_epoch` is a tf.data dataset without
`repeat()`, also a new iterator each epoch. `repeated` is the same dataset repeated, with
`steps_per_epoch`: one iterator for the whole fit, as the runner's own input pipeline
(data/pipeline.make_dataset) has. ResNet-20, float32, batch 128, SGD, the first N training
images of the shared CIFAR-10 copy. Run the variants one after the other on a quiet machine.
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("arrays", "repeated", "per_epoch"))
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--data-dir", default="../shared/data/cifar-10-python.tar.gz")
    args = parser.parse_args(argv)

    from cifar_resnet import resnet_v1  # before keras: it turns TensorFlow's oneDNN kernels on
    from cifar_resnet.spec.datasets import load_cifar10
    import keras
    import tensorflow as tf

    (x, y), _ = load_cifar10(args.data_dir, download=False)
    x, y = x[:args.images], y[:args.images]
    x = (x / 255 - x.mean(axis=0) / 255).astype("float32")
    y = keras.utils.to_categorical(y, 10)
    model = resnet_v1(input_shape=(32, 32, 3), depth=20, num_classes=10)
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                  optimizer=keras.optimizers.SGD(0.1, momentum=0.9))

    class EpochSpeed(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rate = args.images / (time.perf_counter() - self.start)
            print(f"{args.mode} epoch {epoch}: {rate:.0f} img/s", flush=True)

    fit = dict(epochs=args.epochs, verbose=0, callbacks=[EpochSpeed()])
    if args.mode == "arrays":
        model.fit(x, y, batch_size=128, **fit)
        return 0
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(args.images)
    if args.mode == "repeated":
        model.fit(ds.repeat().batch(128).prefetch(2), steps_per_epoch=args.images // 128, **fit)
    else:
        model.fit(ds.batch(128).prefetch(2), **fit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
