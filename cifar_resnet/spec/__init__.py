"""What a run is, before TensorFlow loads: the one folder of the package that imports no Keras,
no TensorFlow and no JAX (tests/test_layout.py checks it, imports of imports included).

- `config`: `Config`, every setting of a run, validated once; `choices`: the one validator;
  `presets`, `architecture`: what a net may be, checked without building it; `schedules`: the
  learning-rate functions; `paper`: every number quoted from the papers.
- `experiments`: the experiment files (experiments/*.py) read into recipes and nets.
- `rundir`: the run directory, every file's name; `files`: atomic, link-safe writes.
- `datasets`: the CIFAR files found, read safely and split (numpy); `dataid`: their identity.
- `cpu`: the CPU's flags, oneDNN's switch and the precision it suits; `estimate`: how long a
  run will take.

The folders that need Keras (nets/, data/, run/, results/) import from this one, never the
reverse, so the command line checks every flag, config and data file here, before the slow
TensorFlow import.
"""
