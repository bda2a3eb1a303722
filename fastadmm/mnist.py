"""The MNIST experiment of the course report, end to end: ``python -m fastadmm.mnist``.

ADMM (:func:`fastadmm.train_admm`) and gradient methods (:func:`fastadmm.train_sgd`: full-batch
gradient descent, minibatch SGD, Adam) train the same net (784-100-50-10-1, squared error by
default) on the same digits (0 and 1 by default), side by side, once per seed (``--seeds``). The
command prints one line naming the data and the split, a progress bar per fit, and a table (per
method: test accuracy with the test-set size and errors, iterations and seconds to each accuracy
target and to a loss threshold, smoothness; median and min-max over the seeds), and writes
``curves.png`` and ``results.json`` to ``--out``. ``python -m fastadmm.mnist --help`` defines
every number.

The code lives in :mod:`fastadmm.cli`; this module is the entry point:

* ``main(argv=None) -> int``: the command; returns the exit status (0 done, 1 results not written,
  2 bad argument or data, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, after writing what there is);
* ``run(seeds=[0, 1, 2], **options) -> dict``: the same experiment from Python, returning what
  results.json holds.
"""

from __future__ import annotations

import sys

from .cli import UsageError, main, run

__all__ = ["UsageError", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
