"""The cells of a long run (a benchmark grid, random ops through the RTL) side by side, on local
processes or as tasks of a Ray cluster: one call, two engines, results as they finish.

`ray` is None (local spawn processes, the default), "local" (start a Ray instance here with
`jobs` CPUs), "auto" (the cluster `ray start` runs on this machine) or a cluster address
(ray://host:10001 or host:6379). Every node must have this checkout and its venv at the same
path, with the data and checkpoints the cells read; results come back to the caller, which
writes the records, so a cluster run resumes like a local one.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context

from golden.errors import PyiosoError

PR_SET_PDEATHSIG = 1        # prctl(2): the signal a process gets when its parent dies
RAY_HELP = ("run the cells as Ray tasks: 'local' (a Ray instance on this machine, --jobs CPUs), 'auto' (the "
            "cluster of this machine) or a cluster address (ray://host:10001); default: local processes")


class _Star:
    """fn(*args) as a one-argument callable a pool can pickle."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, args: tuple):
        return self.fn(*args)


def unordered(fn: Callable, items: Iterable[tuple], jobs: int, ray: str | None = None,
              initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """fn(*item) for every item, `jobs` at once, yielded as each finishes."""
    items = list(items)
    if not items:
        return
    if ray is None:
        yield from _local(fn, items, jobs, initializer, initargs)
        return
    with _ray_pool(jobs, ray, initializer, initargs) as pool:
        yield from pool.imap_unordered(_Star(fn), items, chunksize=1)


def _local(fn: Callable, items: list[tuple], jobs: int, initializer, initargs) -> Iterator:
    """Spawned processes. One that dies (killed, out of memory) ends the run with an error: a
    multiprocessing.Pool would wait for its item forever."""
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_start,
                               initargs=(os.getpid(), initializer, initargs))
    try:
        for future in as_completed([pool.submit(fn, *item) for item in items]):
            yield future.result()
    except BrokenProcessPool:
        raise PyiosoError("a worker process died (killed, or out of memory: see `dmesg`) before its result came "
                          "back; the results that came back are kept: run the same command again to resume") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def die_with_parent(parent: int) -> None:
    """End this process with `parent`, the process that started it (on Linux its death sends
    SIGTERM) instead of running on, orphaned, holding its cell's lock; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:      # it died before that took hold
            os._exit(1)


def _worker_start(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def _ray_pool(jobs: int, ray: str, initializer, initargs):
    import ray as ray_module
    from ray.util.multiprocessing import Pool

    started = not ray_module.is_initialized()
    if started:
        _check_reachable(ray)
        try:
            if ray == "local":
                # Ray starts its workers at niceness 15: beside any other work here they would starve
                ray_module.init(num_cpus=jobs, include_dashboard=False, logging_level="warning",
                                log_to_driver=False, _system_config={"worker_niceness": 0})
            else:
                ray_module.init(address=ray, logging_level="warning", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise PyiosoError(f"--ray {ray}: no Ray cluster to connect to ({str(err).splitlines()[0]}): start one "
                              "with `ray start --head`, give its address, or use --ray local") from None
    try:
        with Pool(processes=jobs, initializer=initializer, initargs=initargs) as pool:
            yield pool
    finally:
        if started:
            ray_module.shutdown()


def _check_reachable(ray: str) -> None:
    """A cluster address that nothing listens on is named at once (Ray itself retries for minutes)."""
    if ray in ("local", "auto"):
        return
    host, _, port = ray.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise PyiosoError(f"--ray {ray}: no Ray cluster to connect to ({err}): start one with `ray start --head`, "
                          "give its address (host:6379 or ray://host:10001), or use --ray local") from None
