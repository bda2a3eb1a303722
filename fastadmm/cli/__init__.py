"""The command ``python -m fastadmm.mnist`` (the course report's experiment), one module per job:

* ``args``: the parser, the defaults that follow the task (methods, accuracy targets), the checks;
* ``digits``: which data, the train/test split and the line that says so; MPI shards;
* ``training``: one fit of one method for one seed (progress, warnings, memory check);
* ``report``: each run's summary, smoothness, the median and range over seeds, the table, results.json;
* ``plots``: curves.png (one line per method, or the median with a min-max band over seeds);
* ``experiment``: signals, the experiment loop (every method once per seed), ``main`` and ``run``.
"""

from .._extras import require

require("the command python -m fastadmm.mnist", "mnist")  # before anything imports tqdm or matplotlib

from .args import UsageError  # noqa: E402
from .experiment import main, run  # noqa: E402

__all__ = ["UsageError", "main", "run"]
