"""The learning-rate schedules: the paper's step schedule, warm-up, and ReduceLROnPlateau."""

import keras
import numpy as np
import pytest

from cifar_resnet.run import callbacks
from cifar_resnet.spec import schedules


def test_paper_schedule_drops_at_32k_and_48k():
    lr = schedules.step_lr(0.1, 64000, (0.5, 0.75), (0.1, 0.01))
    assert [lr(s) for s in (0, 31999, 32000, 47999, 48000, 63999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_warmup_holds_0_01_for_400_iterations():
    lr = schedules.step_lr(0.1, 64000, (0.5, 0.75), (0.1, 0.01), warmup_steps=400, warmup_lr=0.01)
    assert (lr(0), lr(399), lr(400)) == (0.01, 0.01, 0.1)


def test_milestones_scale_with_a_shorter_run():
    lr = schedules.step_lr(0.1, 1000, (0.5, 0.75), (0.1, 0.01))
    assert (lr(499), lr(500), lr(750)) == pytest.approx((0.1, 0.01, 0.001))


@pytest.mark.parametrize("milestones,factors", [((0.75, 0.5), (0.1, 0.01)), ((0.5,), (0.1, 0.01)),
                                                ((1.5,), (0.1,))])
def test_bad_milestones_are_refused(milestones, factors):
    with pytest.raises(ValueError, match="lr_milestones"):
        schedules.step_lr(0.1, 100, milestones, factors)


def test_linear_schedule_rises_then_falls_to_zero():
    lr = schedules.linear_lr(0.1, 1000, warmup_steps=100, warmup_lr=0.01)
    assert [lr(s) for s in (0, 50, 100, 550, 999)] == pytest.approx(
        [0.01, 0.055, 0.1, 0.05, 0.1 / 900])
    assert schedules.linear_lr(0.2, 10)(0) == 0.2  # no warm-up


def test_linear_schedule_stays_at_zero_past_the_planned_iterations():
    # Whole epochs may run past the plan (64,124 iterations for 64,000): never a negative rate.
    lr = schedules.linear_lr(0.1, 64000)
    assert [lr(s) for s in (64000, 64123)] == [0.0, 0.0]


def test_linear_schedule_refuses_warmup_as_long_as_the_run():
    with pytest.raises(ValueError, match="warmup_iterations 10 must be below"):
        schedules.linear_lr(0.1, 10, warmup_steps=10, warmup_lr=0.01)


def test_cosine_schedule_rises_then_follows_a_half_cosine_to_zero():
    lr = schedules.cosine_lr(0.1, 1000, warmup_steps=100, warmup_lr=0.01)
    # 0.1 * (1 + cos(pi * t)) / 2 at t = 0, 1/4, 1/2, 3/4 of the 900 iterations after warm-up.
    assert [lr(s) for s in (0, 50, 100, 325, 550, 775)] == pytest.approx(
        [0.01, 0.055, 0.1, 0.05 * (1 + 0.5 ** 0.5), 0.05, 0.05 * (1 - 0.5 ** 0.5)])
    assert [lr(s) for s in (1000, 1390)] == pytest.approx([0.0, 0.0])  # past the plan: 0
    assert schedules.cosine_lr(0.2, 10)(0) == 0.2  # no warm-up


def test_config_picks_the_schedule_and_names_the_allowed_ones():
    from cifar_resnet.spec import config as config_lib
    linear = config_lib.resolve(overrides=dict(lr_schedule="linear", warmup_iterations=10))
    assert schedules.learning_rate(linear, 110)(60) == pytest.approx(0.05)
    assert schedules.learning_rate(config_lib.resolve(), 64000)(32000) == pytest.approx(0.01)
    cosine = config_lib.resolve(overrides=dict(lr_schedule="cosine", warmup_iterations=10))
    assert schedules.learning_rate(cosine, 110)(60) == pytest.approx(0.05)
    with pytest.raises(config_lib.ConfigError, match="lr_schedule 'cosin' is not one of "
                                                     "'step', 'linear', 'cosine'"):
        config_lib.resolve(overrides=dict(lr_schedule="cosin"))


class _RecordLR(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.lrs = []

    def on_train_batch_end(self, batch, logs=None):
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _fit(callbacks, epochs=4, steps=3, model=None, initial_epoch=0):
    keras.utils.set_random_seed(0)
    if model is None:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(1.0), "mse")
    x, y = np.ones((steps * 2, 4), "float32"), np.zeros((steps * 2, 1), "float32")
    model.fit(x, y, batch_size=2, epochs=epochs, callbacks=callbacks, verbose=0,
              initial_epoch=initial_epoch)
    return model


def _always_reduce():
    # Epoch 0 improves on +inf; after that nothing "improves" (min_delta huge), so it halves the
    # rate at the end of every later epoch.
    return keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                             min_delta=1e9, min_lr=0.0)


def test_keras_scheduler_silently_undoes_plateau_reductions():
    """The problem StepSchedule solves: LearningRateScheduler resets the rate every epoch."""
    rec = _RecordLR()
    _fit([keras.callbacks.LearningRateScheduler(lambda epoch: 0.1), _always_reduce(), rec])
    assert rec.lrs == pytest.approx([0.1] * 12)


def test_step_schedule_keeps_plateau_reductions():
    rec = _RecordLR()
    lr = schedules.step_lr(0.1, 12, (0.5,), (0.1,))  # drops after iteration 6
    _fit([callbacks.StepSchedule(lr), _always_reduce(), rec])
    expected = [0.1] * 6 + [0.005] * 3 + [0.0025] * 3
    assert rec.lrs == pytest.approx(expected, rel=1e-5)


def test_step_schedule_recovers_its_scale_on_resume():
    lr = schedules.step_lr(0.1, 12, (0.5,), (0.1,))
    model = _fit([callbacks.StepSchedule(lr), _always_reduce()], epochs=2)  # halved once
    rec = _RecordLR()
    fresh = callbacks.StepSchedule(lr)
    _fit([fresh, rec], epochs=4, model=model, initial_epoch=2)
    assert fresh.scale == pytest.approx(0.5, rel=1e-5)
    assert rec.lrs == pytest.approx([0.005] * 6, rel=1e-5)


def test_linear_schedule_resumes_to_the_same_rates():
    lr = schedules.linear_lr(0.1, 12, warmup_steps=2, warmup_lr=0.01)
    unbroken = _RecordLR()
    _fit([callbacks.StepSchedule(lr), unbroken])
    model = _fit([callbacks.StepSchedule(lr)], epochs=2)
    resumed = _RecordLR()
    _fit([callbacks.StepSchedule(lr), resumed], model=model, initial_epoch=2)
    assert resumed.lrs == pytest.approx(unbroken.lrs[6:], rel=1e-6)
    assert unbroken.lrs == pytest.approx([lr(s) for s in range(12)], rel=1e-6)
