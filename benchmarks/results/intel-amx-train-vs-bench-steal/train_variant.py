"""A/B (benchmarks/results/intel-amx-train-vs-bench-steal): run_experiment bf16 ResNet-20 with some callbacks dropped. argv: workdir drop(comma names or '-') verbose"""
import sys, os, json, time
workdir, drop, verbose = sys.argv[1], sys.argv[2], int(sys.argv[3])
drop = set() if drop == "-" else set(drop.split(","))
import cifar_resnet
from cifar_resnet.__main__ import _import_tensorflow_quietly
_import_tensorflow_quietly()
import keras
from cifar_resnet.run import train
from cifar_resnet.spec import config as config_lib
from cifar_resnet.run import metrics as metrics_lib
orig_fit = keras.Model.fit
def fit(self, *a, callbacks=None, **kw):
    kept = [c for c in callbacks if type(c).__name__ not in drop]
    print("callbacks:", [type(c).__name__ for c in kept], file=sys.stderr)
    if "val" in drop:
        kw["validation_data"] = None
    return orig_fit(self, *a, callbacks=kept, **kw)
keras.Model.fit = fit
orig_metrics = metrics_lib.run_metrics
def run_metrics(history, params, images, times=(), steals=()):  # each timed epoch's rate, steal
    for t, st in zip(times, steals):
        print(f"EPOCH {images / t:.0f} img/s steal {st if st is None else round(100 * st, 1)}%")
    return orig_metrics(history, params, images, times, steals)
metrics_lib.run_metrics = run_metrics
cfg = config_lib.resolve(overrides=dict(depth=20, version=1, dataset="synthetic", synthetic_train=10240,
                                        synthetic_test=512, epochs=int(os.environ.get("EPOCHS", 4)), precision="mixed_bfloat16"))
m = train.run_experiment(cfg, workdir, verbose=verbose)
print(json.dumps({"drop": sorted(drop), "ips": m["images_per_sec"], "steal": m["cpu_steal"]}))
