"""Where the DAG's tasks run: in this process, a local process pool, or Ray (a local or remote cluster).

Contract: `imap(fn, tasks)` yields `(i, fn(tasks[i]))` for every task as each finishes (so the caller can
cache a result the moment it exists: an interrupted sweep keeps every finished point), whatever ran where;
`fn` is a module-level function (stages.run_task) that never raises. The same tasks give the same rows under every
executor: determinism lives in the tasks (seeds, fixed windows), not in where they ran.
"""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from codesign.errors import CodesignError, ConfigError

EXECUTORS = ("local", "ray")


class ExecutorError(CodesignError):
    """The executor cannot start (Ray missing or its cluster unreachable)."""


class InlineExecutor:
    """Runs every task in this process, in order (tests, debugging, `--workers 0`)."""

    name = "inline"

    def imap(self, fn: Callable[[dict], dict], tasks: list[dict]) -> Iterator[tuple[int, dict]]:
        for i, t in enumerate(tasks):
            yield i, fn(t)

    def close(self) -> None:
        pass


class LocalExecutor:
    """A pool of `workers` processes (spawned, so no forked torch/numba thread state), reused across waves so
    a worker keeps its loaded model between points."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def imap(self, fn, tasks):
        if not tasks:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        futures = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class RayExecutor:
    """Ray tasks, one CPU each: `address=None` starts a local Ray; `host:port` or `ray://host:port` joins a
    cluster, which is checked for a listening socket first so a wrong address fails in one line, fast."""

    name = "ray"

    def __init__(self, address: str | None, workers: int):
        try:
            import ray
        except ImportError:
            raise ExecutorError("--executor ray needs Ray: pip install 'codesign[ray]'") from None
        if address:
            _check_reachable(address)
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kwargs = {"address": address} if address else {"num_cpus": max(1, workers)}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kwargs)

    def imap(self, fn, tasks):
        if not tasks:
            return
        remote = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = {remote.remote(t): i for i, t in enumerate(tasks)}
        pending = list(refs)
        while pending:
            done, pending = self._ray.wait(pending, num_returns=1)
            yield refs[done[0]], self._ray.get(done[0])

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    hostport = address.removeprefix("ray://")
    if address == "auto":
        return
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address!r} is not host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ExecutorError(f"Ray cluster at {address} is unreachable ({exc.strerror or exc})") from None


def make_executor(name: str, workers: int = 1, ray_address: str | None = None):
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is not one of {', '.join(EXECUTORS)}")
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 runs in this process), got {workers}")
    if name == "ray":
        return RayExecutor(ray_address, workers)
    if ray_address:
        raise ConfigError("--ray-address needs --executor ray")
    return InlineExecutor() if workers == 0 else LocalExecutor(workers)
