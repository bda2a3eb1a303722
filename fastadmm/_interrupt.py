"""Turn Ctrl-C during a fit into a flag checked between iterations, so state stays consistent.

The first SIGINT sets the flag (the loop stops after the current iteration and returns status
"interrupted"); a second one raises KeyboardInterrupt at once, as usual.  Outside the main
thread signals cannot be caught, and a KeyboardInterrupt raised there is handled by the caller.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class InterruptFlag:
    def __init__(self) -> None:
        self.raised = False

    def __bool__(self) -> bool:
        return self.raised


@contextmanager
def deferred_sigint():
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag.raised:
            raise KeyboardInterrupt
        flag.raised = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not allowed here (e.g. an embedded interpreter)
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
