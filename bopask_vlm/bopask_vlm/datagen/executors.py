"""Where dataset-generation tasks run: this process, a local process pool, or a Ray cluster, behind one
small interface (``submit(key, fn, *args)``, ``wait() -> (key, result, error)``) so that the runner's code
and the task functions are the same on every backend.

Losing a worker is not losing work: a pool broken by a killed worker process is rebuilt and its unfinished
tasks resubmitted; Ray resubmits a task whose worker process or node died (``max_retries``). A task that
still fails comes back with its error, for the caller to report.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

#: Modules the tasks need, imported by the driver before a process pool forks (each costs 0.1-0.6 s).
WORKER_IMPORTS = ("trimesh", "trimesh.ray.ray_pyembree", "fcl", "cv2", "PIL.Image", "PIL.PngImagePlugin",
                  "scipy.spatial", "open3d", "fast_simplification", "threadpoolctl", "bopask_vlm.prompts",
                  "bopask_vlm.datagen.qa", "bopask_vlm.datagen.runner")

Done = tuple[Hashable, Any, BaseException | None]


def one_blas_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with numpy's BLAS limited to one thread (threadpoolctl). Otherwise OpenBLAS keeps a
    second thread spinning through the tasks' many small matrix products: the same wall time for twice the
    CPU, taken from the other workers. (Ray workers start with ``OMP_NUM_THREADS=1``, which OpenBLAS
    follows.)"""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args)


class Executor:
    """Runs ``fn(*args)`` tasks; ``wait`` returns them as they finish, ``(key, result, None)`` or
    ``(key, None, error)``."""

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError

    def wait(self) -> Done:
        raise NotImplementedError

    def pending(self) -> int:
        raise NotImplementedError

    def share(self, value: Any) -> Any:
        """A handle for ``value`` to pass as a task argument (Ray: stored once, shared by the node's workers)."""
        return value

    def close(self) -> None:
        pass


class InlineExecutor(Executor):
    """Tasks run in this process, in submission order, when waited for."""

    def __init__(self) -> None:
        self.queue: deque[tuple[Hashable, Callable[..., Any], tuple[Any, ...]]] = deque()

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        self.queue.append((key, fn, args))

    def wait(self) -> Done:
        key, fn, args = self.queue.popleft()
        try:
            return key, one_blas_thread(fn, *args), None
        except Exception as e:  # a bug or an unforeseen bad input: report the task, keep going
            return key, None, e

    def pending(self) -> int:
        return len(self.queue)


class PoolExecutor(Executor):
    """A local process pool. The driver imports :data:`WORKER_IMPORTS` first, so forked workers start
    with them. A worker that dies (killed, out of memory) breaks the whole pool: it is rebuilt and every
    unfinished task resubmitted, each at most ``retries`` times."""

    def __init__(self, workers: int, retries: int = 2) -> None:
        for m in WORKER_IMPORTS:
            try:
                importlib.import_module(m)
            except ImportError:
                pass
        self.workers, self.retries = workers, retries
        self.tasks: dict[Hashable, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self.attempts: dict[Hashable, int] = {}
        self.futures: dict[Any, Hashable] = {}
        self.ready: deque[Done] = deque()
        self._new_pool()

    def _new_pool(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=self.workers)

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        self.tasks[key] = (fn, args)
        self.attempts.setdefault(key, 0)
        self.futures[self.pool.submit(one_blas_thread, fn, *args)] = key

    def wait(self) -> Done:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as fwait
        from concurrent.futures.process import BrokenProcessPool

        while not self.ready:
            done, _ = fwait(list(self.futures), return_when=FIRST_COMPLETED)
            lost: list[Hashable] = []
            for f in done:
                key = self.futures.pop(f)
                try:
                    self.ready.append((key, f.result(), None))
                except BrokenProcessPool:
                    lost.append(key)
                    continue
                except Exception as e:
                    self.ready.append((key, None, e))
                self.tasks.pop(key, None)
            if lost:
                # a worker died and the pool with it: every unfinished task is charged one attempt and
                # resubmitted to a new pool (which task killed its worker cannot be told)
                unfinished = set(lost) | set(self.futures.values())
                self.pool.shutdown(wait=False, cancel_futures=True)
                self._new_pool()
                self.futures = {}
                for key in [k for k in self.tasks if k in unfinished]:  # in submission order
                    self.attempts[key] += 1
                    if self.attempts[key] > self.retries:
                        self.ready.append((key, None, BrokenProcessPool(
                            f"a worker process died {self.attempts[key]} times while this task was unfinished")))
                        self.tasks.pop(key)
                    else:
                        fn, args = self.tasks[key]
                        self.futures[self.pool.submit(one_blas_thread, fn, *args)] = key
        return self.ready.popleft()

    def pending(self) -> int:
        return len(self.futures) + len(self.ready)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayExecutor(Executor):
    """Tasks as Ray remote functions on the cluster at ``address`` (None: the one this process is connected
    to, else a new local one). Ray resubmits a task whose worker or node died, up to ``retries`` times."""

    def __init__(self, address: str | None = None, retries: int = 2) -> None:
        import ray  # optional dependency, imported only when asked for

        self.ray, self.retries = ray, retries
        self.owned = not ray.is_initialized()
        if self.owned:
            ray.init(address=address, log_to_driver=False)
        self.remotes: dict[Callable[..., Any], Any] = {}
        self.refs: dict[Any, Hashable] = {}

    def share(self, value: Any) -> Any:
        return self.ray.put(value)

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        remote = self.remotes.get(fn)
        if remote is None:
            remote = self.remotes[fn] = self.ray.remote(max_retries=self.retries, retry_exceptions=False)(fn)
        self.refs[remote.remote(*args)] = key

    def wait(self) -> Done:
        done, _ = self.ray.wait(list(self.refs), num_returns=1)
        key = self.refs.pop(done[0])
        try:
            return key, self.ray.get(done[0]), None
        except Exception as e:  # RayTaskError, WorkerCrashedError, NodeDiedError, ... after the retries
            return key, None, e

    def pending(self) -> int:
        return len(self.refs)

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


def make_executor(backend: str, workers: int = 1, address: str | None = None, retries: int = 2) -> Executor:
    """``"process"`` (``workers`` processes; 1: this process) or ``"ray"``."""
    if backend == "ray":
        return RayExecutor(address, retries)
    if backend != "process":
        raise ValueError(f"unknown backend {backend!r} (process or ray)")
    return PoolExecutor(workers, retries) if workers > 1 else InlineExecutor()
