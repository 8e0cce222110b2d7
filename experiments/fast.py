"""Time to accuracy on 2 CPU cores: ResNet-20 (He et al. 2015 sec 4.2) to 91.25% test accuracy.

91.25% is the paper's 8.75% error of ResNet-20 (Table 6), reached there after 64k iterations
(182 epochs of the 45k split). Same net (option A, the paper preset's init and BN), same
optimizer (SGD, momentum 0.9, batch 128); what changes, and why:
  - all 50k training images (val_fraction=0): no model selection, the target is test accuracy;
  - 32 epochs (12,512 iterations, a fifth of the paper's 64k), sized to 45 minutes of this
    project's 2 cores: lr rises linearly from 0.01 to 0.1 over the first epoch, then falls
    along a half cosine to zero (`lr_schedule="cosine"`), which spends twice as long below
    lr 0.01 as a linear decay; Nesterov momentum;
  - weight decay 5e-4 (the usual choice for short CIFAR schedules; the paper: 1e-4) on the conv
    kernels only, not on BatchNorm's scales and offsets nor the classifier
    (`weight_decay_on="kernels"`); label smoothing 0.1;
  - the test set evaluated every 2 epochs (`log_every="2 passes"`), not every epoch, to keep the
    evaluations to ~3 minutes of the budget;
  - precision from the CPU (`precision="auto"`, cifar_resnet/spec/cpu.py): bfloat16 mixed precision
    where the CPU computes bf16 natively (avx512_bf16 or AMX), the fastest path there
    (docs/benchmarks.md); float32 on a CPU without, where bf16 is emulated. The run's
    config.json says which.

Run (the curve is the run's history.csv: test error and wall time every 2 epochs):

    make fast-recipe    # sweep fast, report, evaluate --head 1000 [--tta flip] into docs/fast
    make fast-recipe-torch    # the same recipe in the independent PyTorch trainer

What it reached, against the independent PyTorch trainer of the same recipe, and the curve:
docs/benchmarks.md ("Time to accuracy") and docs/fast/.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    dataset="cifar10",
    version=1,
    shortcut="A",
    preset="paper",
    batch_size=128,
    lr=0.1,                     # peak, after the warm-up
    epochs=32,                  # 32 x 391 = 12,512 iterations (paper: 64k); sized to 45 min
    lr_schedule="cosine",       # warm-up, then a half cosine to 0 (schedules.cosine_lr)
    warmup_iterations="1 pass",  # rising from warmup_lr (391 iterations at batch 128)
    warmup_lr=0.01,
    nesterov=True,
    weight_decay=5e-4,          # paper: 1e-4 over 64k iterations
    weight_decay_on="kernels",  # not BatchNorm's scale and offset, nor the biases
    label_smoothing=0.1,
    val_fraction=0.0,           # train on all 50k; report test error only
    log_every="2 passes",       # evaluate every 782 iterations: 16 points, ~3 min of the budget
    precision="auto",           # bfloat16 where the CPU has it natively; config.json records it
)

NETS = {"resnet20": dict(depth=20)}

PAPER = paper.entries(paper.TABLE6, NETS, note="after 64k iterations; this recipe runs 12.5k")
