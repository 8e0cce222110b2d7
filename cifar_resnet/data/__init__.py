"""CIFAR data: files and safe reading, identity, tf.data and device input."""
