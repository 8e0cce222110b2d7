"""What a run directory holds, and whether a config may run there: the one pre-flight of the
command line (before TensorFlow loads) and of `run/train.prepare` (issue #39). No TensorFlow.

`check` reads the folder's config.json once and answers: a new run (the folder empty, or only a
run's leftovers); this config's run, to resume or already finished; or a refusal in one line
(ConfigError) for a planted link, a folder of someone else's files, a run of another config, or
of another precision. The command line passes its answer on to `train_and_evaluate`, which then
reads nothing again.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional

from cifar_resnet.spec import config as config_lib, rundir
from cifar_resnet.spec.config import Config, ConfigError


@dataclasses.dataclass(frozen=True)
class Preflight:
    """The answer of `check` for one config and one run directory.

    Attributes:
        workdir: the run directory.
        config: the request, its precision resolved where it was known.
        precision_known: whether `config.precision` is the policy the run trains in (False on
            the command line where only the backend can tell, on a GPU).
        saved: the folder's config.json, read once; None for a new run.
        finished: metrics.json of this config's finished run; None while it is still to train
            (or unreadable: training says so).
    """

    workdir: pathlib.Path
    config: Config
    precision_known: bool
    saved: Optional[Config] = None
    finished: Optional[dict] = None


def check(config: Config, workdir, *, precision: Optional[str],
          asked: Optional[str] = None) -> Preflight:
    """What `workdir` holds, and whether `config` may run there.

    Args:
        config: the validated request.
        workdir: the run directory (it may not exist yet).
        precision: the policy `config.precision` resolves to on this machine (cpu or build
            resolve it); None where only the backend can tell: the precision is then not
            compared, and the rest is.
        asked: the precision as requested ("auto" or a policy), for the refusal's words.

    Raises:
        ConfigError: in one line, and nothing written: a link where a run's file belongs
            (files.LinkError, exit 2 as well), a folder of other files and no run, an unreadable
            config.json (or one of an earlier version, naming the script that migrates it), or
            a run of another precision or another config.
    """
    workdir = pathlib.Path(workdir)
    rundir.refuse_links(workdir)
    path = rundir.RunDir(workdir).config
    if precision is not None:
        config = dataclasses.replace(config, precision=precision)
    if not path.exists():
        rundir.refuse_foreign_dir(workdir, ConfigError)
        return Preflight(workdir, config, precision is not None)
    saved = config_lib.load(path)
    if precision is not None and saved.precision != precision:
        raise config_lib.precision_refusal(workdir, saved.precision, precision,
                                           asked or precision)
    ignored = set(config_lib.NOT_IDENTITY) | ({"precision"} if precision is None else set())
    mine = saved.to_dict()
    diff = [k for k, v in config.to_dict().items() if mine[k] != v and k not in ignored]
    if diff:
        changes = ", ".join(f"{k}: {mine[k]!r} -> {getattr(config, k)!r}" for k in diff)
        raise ConfigError(f"{workdir} holds a run with another config ({changes}); "
                          + rundir.another_config_hint(workdir, config, diff))
    try:
        finished = rundir.finished_metrics(workdir)
    except rundir.MetricsUnreadable:  # training says what to do about it
        finished = None
    return Preflight(workdir, config, precision is not None, saved, finished)
