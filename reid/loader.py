"""DataLoaders that survive Ctrl-C: an interrupted run ends with one line, not a worker's traceback.

Loader workers ignore Ctrl-C; the main process holds one while torch starts workers, hands a
batch over or stops them (where Python would swallow it or a worker would print a traceback)
and raises it as soon as that is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from torch.utils.data import DataLoader, Dataset


def _ignore_sigint(_: int) -> None:
    """In a loader worker: leave Ctrl-C to the main process, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then raise it; a second one is raised at once.

    Python swallows a KeyboardInterrupt raised in an at-fork hook or a finaliser, where torch
    starts and stops loader workers, and the run would go on; one raised while a batch is
    handed over leaves a worker printing a traceback. Outside the main thread, or where a
    program installed its own Ctrl-C handler, the block runs as it is.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pressed = False

    def hold(signum: int, frame: Any) -> None:
        nonlocal pressed
        if pressed:
            raise KeyboardInterrupt
        pressed = True

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if pressed:
            raise KeyboardInterrupt


_END = object()


class _Loader(DataLoader):
    """A DataLoader whose workers start, hand over each batch and stop with Ctrl-C held."""

    def __iter__(self) -> Iterator[Any]:
        batches = None
        try:
            with ctrl_c_held():
                batches = super().__iter__()
            while True:
                with ctrl_c_held():
                    batch = next(batches, _END)
                if batch is _END:
                    return
                yield batch
        finally:
            with ctrl_c_held():
                batches = None  # the workers stop here, not later in a finaliser


def make_loader(dataset: Dataset, **kwargs: Any) -> DataLoader:
    """A DataLoader whose workers ignore Ctrl-C and whose main process never loses one, so an
    interrupted run ends with one line. Run an iterator to its end or close it: one left to
    the garbage collector stops its workers in a finaliser, where a Ctrl-C is lost."""
    return _Loader(dataset, worker_init_fn=_ignore_sigint, **kwargs)
