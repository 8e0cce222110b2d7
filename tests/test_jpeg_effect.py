"""benchmarks/jpeg_effect.py: a final model's error on the exact test images, with and without
the JPEG loss the shared copy's other images carry."""

import json

import numpy as np
import pytest

from benchmarks import jpeg_effect


def test_jpeg_is_lossy_at_quality_75_and_keeps_shape_and_dtype():
    rng = np.random.default_rng(0)
    # Smooth images with colour detail finer than 4:2:0 chroma keeps.
    base = rng.integers(0, 256, size=(4, 8, 8, 3)).repeat(4, axis=1).repeat(4, axis=2)
    images = np.clip(base + rng.integers(-20, 21, size=base.shape), 0, 255).astype(np.uint8)
    out = jpeg_effect.jpeg(images)
    assert out.shape == images.shape and out.dtype == np.uint8
    change = np.abs(out.astype(int) - images).mean()
    assert 1 < change < 40
    assert np.abs(jpeg_effect.jpeg(images, quality=95).astype(int) - images).mean() < change


@pytest.mark.slow
def test_a_run_on_the_shared_copy_is_split_into_exact_recoded_and_other_images(real_data,
                                                                               tmp_path):
    from cifar_resnet.run import build
    from cifar_resnet.spec import config as config_lib
    config = config_lib.resolve(overrides=dict(depth=8, data_dir=str(real_data),
                                               precision="float32"))
    config_lib.save(config, tmp_path / "config.json")
    build.build_net(config).save(tmp_path / "final.keras")  # untrained: the split is the point
    out = tmp_path / "jpeg.json"
    assert jpeg_effect.main([str(tmp_path), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    parts = [r[k] for k in ("exact", "exact_through_jpeg", "others_jpeg_in_file")]
    assert [p["num_images"] for p in parts] == [1000, 1000, 9000]
    for p in parts:  # fractions with their binomial standard error
        assert 0 <= p["error"] <= 1
        assert p["std_error"] == pytest.approx(np.sqrt(p["error"] * (1 - p["error"])
                                                       / p["num_images"]))
    # Pillow's quality-75 4:2:0 JPEG changes a pixel about as much as the shared copy's loss
    # (its README: 5.8 grey levels on average).
    assert 5 < r["recoding_mean_abs_change"] < 7
