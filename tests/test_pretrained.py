"""Shipped trained weights (nets/pretrained.py): `resnet_v1(..., weights="cifar10")`."""

import numpy as np
import pytest

from cifar_resnet.nets import models, pretrained
from cifar_resnet.results import evaluate
from cifar_resnet.spec import files


def _ship(monkeypatch, tmp_path, model, **settings):
    """Saves `model`'s weights as a shipped file of a temporary weights folder."""
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    path = tmp_path / f"{model.name}_cifar10.weights.h5"
    model.save_weights(path)
    entry = dict(file=path.name, sha256=files.sha256(path), shortcut="A", preset="paper",
                 num_classes=10, input_shape=(32, 32, 3), trained="a test", test_error=12.5)
    monkeypatch.setitem(pretrained.CIFAR10, model.name, {**entry, **settings})
    return path


def test_shipped_weights_load_and_name_their_error(monkeypatch, tmp_path, capsys):
    trained = models.resnet_v1(depth=8)
    _ship(monkeypatch, tmp_path, trained)
    loaded = models.resnet_v1(depth=8, weights="cifar10")
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trained.predict(x, verbose=0))
    err = capsys.readouterr().err
    assert "resnet8_v1 cifar10 weights" in err and "test error 12.50%" in err
    fresh = models.resnet_v1(depth=8)  # weights=None: a new random net
    assert not np.array_equal(fresh.predict(x, verbose=0), trained.predict(x, verbose=0))


def test_a_weights_path_loads_like_keras_applications(tmp_path):
    trained = models.resnet_v2(depth=11)
    path = tmp_path / "mine.weights.h5"
    trained.save_weights(path)
    loaded = models.resnet_v2(depth=11, weights=str(path))
    for a, b in zip(loaded.weights, trained.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(pretrained.WeightsError, match="not found"):
        models.resnet_v2(depth=11, weights=str(tmp_path / "missing.weights.h5"))


def test_a_file_of_another_net_or_no_weights_is_one_line_naming_it(tmp_path):
    """Issue #38 item 9: not a 132-line ValueError, nor an OSError without the file's name."""
    other = tmp_path / "resnet14.weights.h5"
    models.resnet_v1(depth=14).save_weights(other)
    with pytest.raises(pretrained.WeightsError) as info:
        models.resnet_v1(depth=8, weights=str(other))
    message = str(info.value)
    assert "\n" not in message and str(other) in message
    assert "holds another net (13 convolutions, a 64->10 classifier" in message
    assert "than resnet8_v1 (7 convolutions" in message
    junk = tmp_path / "random.weights.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(pretrained.WeightsError,
                       match=f"weights file {junk}: not a Keras weights file: 5,000 bytes"):
        models.resnet_v1(depth=8, weights=str(junk))


def test_a_corrupt_file_fails_its_checksum(monkeypatch, tmp_path):
    path = _ship(monkeypatch, tmp_path, models.resnet_v1(depth=8))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.WeightsError, match="SHA-256 .* is not the shipped"):
        models.resnet_v1(depth=8, weights="cifar10")


def test_weights_that_are_missing_or_do_not_fit_are_refused(monkeypatch, tmp_path):
    _ship(monkeypatch, tmp_path, models.resnet_v1(depth=8))
    with pytest.raises(pretrained.WeightsError, match="no cifar10 weights are shipped for "
                                                      "resnet14_v1; shipped: .*resnet8_v1"):
        models.resnet_v1(depth=14, weights="cifar10")
    with pytest.raises(pretrained.WeightsError, match=r"num_classes=100 \(trained with 10\)"):
        models.resnet_v1(depth=8, num_classes=100, weights="cifar10")
    with pytest.raises(pretrained.WeightsError, match=r"shortcut='B' \(trained with 'A'\)"):
        models.resnet_v1(depth=8, shortcut="B", weights="cifar10")
    with pytest.raises(pretrained.WeightsError, match="expected None, 'cifar10', or a path"):
        models.resnet_v1(depth=8, weights="imagenet")


def _shipped_net_and_test_set(name, project_data):
    """The shipped net loaded by `weights="cifar10"`, and the project copy's test images with
    the training images' normalization, as the run trained (conftest's project_data)."""
    from cifar_resnet.spec import datasets
    (x_train, _), test = datasets.load_cifar10(project_data, download=False)
    mean, std = datasets.compute_normalization(x_train, "pixel_mean")
    depth, plain = int(name.split("_")[0].lstrip("plainresnet")), name.startswith("plain")
    return models.resnet_v1(depth=depth, plain=plain, weights="cifar10"), test, dict(mean=mean,
                                                                                    std=std)


@pytest.mark.parametrize("name", sorted(pretrained.CIFAR10))
def test_each_shipped_file_gives_its_error_on_the_exact_test_images(name, project_data):
    """The 1,000 exact test images of the project's copy (skipped without it): the shipped
    weights' error there is the one their entry records."""
    model, (x_test, y_test), norm = _shipped_net_and_test_set(name, project_data)
    probs = evaluate.predict(model, x_test[:1000], **norm)
    error = 100 * np.mean(probs.argmax(1) != y_test[:1000])
    assert error == pytest.approx(pretrained.CIFAR10[name]["exact1000_error"], abs=0.05)


@pytest.mark.slow
@pytest.mark.all_test_images
@pytest.mark.parametrize("name", sorted(pretrained.CIFAR10))
def test_each_shipped_file_gives_its_errors_on_all_the_test_images(name, project_data):
    """test_error and tta_error, the numbers `weights="cifar10"` prints, are the shipped file's
    own in the float32 net it builds (skipped without the project's copy). 20,000 forward
    passes a net: `make test-weights` runs these when a net ships, `make test` leaves them out
    (ResNet-56 took 104 s of a 2-core Zen 4 in the suite)."""
    model, (x_test, y_test), norm = _shipped_net_and_test_set(name, project_data)
    for key, tta in (("test_error", None), ("tta_error", "flip")):
        probs = evaluate.predict(model, x_test, **norm, tta=tta)
        error = 100 * np.mean(probs.argmax(1) != y_test)
        assert error == pytest.approx(pretrained.CIFAR10[name][key], abs=0.005)


def test_preprocess_input_takes_raw_images_and_refuses_other_shapes():
    import cifar_resnet
    raw = np.zeros((2, 32, 32, 3), np.uint8)
    raw[1] = 255
    x = cifar_resnet.preprocess_input(raw)
    assert x.dtype == np.float32 and x.shape == raw.shape
    mean = -x[0]  # the shipped mean image, of pixels in [0, 1]
    assert mean.shape == (32, 32, 3) and 0.3 < mean.mean() < 0.6
    np.testing.assert_allclose(x[1], 1 - mean, atol=1e-6)
    # floats in [0, 255] and one image alone: the same
    np.testing.assert_array_equal(cifar_resnet.preprocess_input(raw[1].astype("float64")), x[1])
    with pytest.raises(pretrained.WeightsError, match=r"^preprocess_input: images of shape "
                                                      r"\(2, 3, 32, 32\); expected \(32, 32, 3\) "
                                                      r"or \(N, 32, 32, 3\), channels last$"):
        cifar_resnet.preprocess_input(raw.transpose(0, 3, 1, 2))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet20_v1", "resnet56_v1"])
def test_shipped_nets_give_their_error_on_raw_images_through_preprocess_input(name, project_data,
                                                                              capsys):
    """What a user has: the data's exact first 1,000 test images, raw uint8, through
    `cifar_resnet.preprocess_input`, give the entry's error; the loader's line says so. The
    shipped mean is the training images' of the data the nets were trained on."""
    import cifar_resnet
    from cifar_resnet.spec import datasets
    (x_train, _), (x_test, y_test) = datasets.load_cifar10(project_data, download=False)
    np.testing.assert_array_equal(cifar_resnet.preprocess_input(np.zeros((32, 32, 3), np.uint8)),
                                  -datasets.compute_normalization(x_train, "pixel_mean")[0])
    depth = int(name.split("_")[0].removeprefix("resnet"))
    model = cifar_resnet.resnet_v1(input_shape=(32, 32, 3), depth=depth, weights="cifar10")
    assert "cifar_resnet.preprocess_input(images)" in capsys.readouterr().err
    probs = model.predict(cifar_resnet.preprocess_input(x_test[:1000]), verbose=0)
    error = 100 * np.mean(probs.argmax(1) != y_test[:1000])
    assert error == pytest.approx(pretrained.CIFAR10[name]["exact1000_error"], abs=0.05)

