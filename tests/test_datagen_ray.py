"""Dataset generation on a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
with no CPUs, so that no task runs beside the driver, and two worker nodes of 1 CPU each; 127.0.0.1 only, small
object stores, no dashboard), through the same
``generate`` code path as the local backend: output identical byte for byte to the local backend's; a task's
worker process killed, or a whole node removed, mid-run loses nothing; a scene whose retries run out is
reported by name and a rerun resumes it."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from bopask_vlm.datagen import generate  # noqa: E402
from bopask_vlm.datagen.synthetic import make_scene  # noqa: E402

SEED = 5
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}


def _outputs(out: Path) -> dict[str, bytes]:
    files = {f"shards/{p.name}": p.read_bytes() for p in sorted((out / "shards").glob("*.jsonl"))}
    files["errors.jsonl"] = (out / "errors.jsonl").read_bytes()
    return files


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Four small synthetic scenes and the local backend's output for them (the reference)."""
    tmp = tmp_path_factory.mktemp("ray_datagen")
    root = tmp / "bop"
    for i in range(4):
        make_scene(root, seed=40 + i, num_objects=3, num_frames=2, width=320, height=240, scene_id=i)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = generate(root, tmp / "local", seed=SEED, progress=False)
    assert s["scenes_done"] == 4 and s["records_run"] > 0
    return root, _outputs(tmp / "local"), tmp


@pytest.fixture(scope="module")
def cluster():
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as mp:
        # Ray turns "127.0.0.1" into the host's routable address before connecting (services
        # .resolve_ip_for_localhost), unless clusters are "not enabled": then every process stays on loopback
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        # the head gets no CPU: with one, Ray's locality-aware leasing ran every scene task on the head (it
        # holds the shared model geometry) and the node-removal test had no task on a node it could remove
        c = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0, "include_dashboard": False})
        workers = [c.add_node(**NODE) for _ in range(2)]
        c.wait_for_nodes()
        try:
            yield c, workers
        finally:
            if ray.is_initialized():
                ray.shutdown()
            c.shutdown()


def _task_processes(name: str) -> list[tuple[int, int]]:
    """(pid, parent pid) of the processes running a Ray task of function ``name`` (their title is ray::name)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            title = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title == f"ray::{name}":
            out.append((int(d), ppid))
    return out


def _run_interrupted(root: Path, out: Path, address: str, act: Callable[[int, int], bool], retries: int = 2
                     ) -> tuple[dict, bool]:
    """``generate`` on the cluster in a thread; the first time a scene task runs, ``act(pid, ppid)`` (True
    once it did something). Returns the summary and whether ``act`` acted."""
    res: dict = {}
    errs: list[BaseException] = []

    def run() -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res.update(generate(root, out, seed=SEED, progress=False, backend="ray", address=address,
                                    retries=retries))
        except BaseException as e:  # re-raised in the test thread
            errs.append(e)

    th = threading.Thread(target=run)
    th.start()
    acted = False
    while th.is_alive() and not acted:
        for pid, ppid in _task_processes("scene_job"):
            if act(pid, ppid):
                acted = True
                break
        time.sleep(0.005)
    th.join(timeout=120)
    assert not th.is_alive(), "generate did not finish"
    if errs:
        raise errs[0]
    return res, acted


def _kill(pid: int, ppid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # finished just now: wait for the next one
        return False
    return True


def test_ray_cluster_output_is_identical_to_the_local_backend(dataset, cluster):
    root, ref, tmp = dataset
    c, _ = cluster
    assert len(c.list_all_nodes()) == 3
    s = generate(root, tmp / "ray", seed=SEED, progress=False, backend="ray", address=c.address)
    assert s["scenes_failed"] == [] and s["scenes_done"] == 4 and s["models_built"] > 0
    assert _outputs(tmp / "ray") == ref


def test_a_killed_task_process_is_retried_and_loses_nothing(dataset, cluster):
    root, ref, tmp = dataset
    c, _ = cluster
    s, killed = _run_interrupted(root, tmp / "killed", c.address, _kill)
    assert killed, "no scene task was seen running"
    assert s["scenes_failed"] == [] and s["scenes_done"] == 4
    assert _outputs(tmp / "killed") == ref


def test_a_scene_out_of_retries_is_reported_and_a_rerun_resumes_it(dataset, cluster):
    root, ref, tmp = dataset
    c, _ = cluster
    victims: list[int] = []

    def kill_once(pid: int, ppid: int) -> bool:
        if _kill(pid, ppid):
            victims.append(pid)
            return True
        return False

    s, killed = _run_interrupted(root, tmp / "norerun", c.address, kill_once, retries=0)
    assert killed
    assert len(s["scenes_failed"]) == 1 and s["scenes_done"] == 3  # exactly the killed task's scene
    failed = s["scenes_failed"][0]
    assert [e["scene"] for e in s["errors"] if e["stage"] == "worker"] == [failed]
    assert not (tmp / "norerun" / "shards" / f"test-{int(Path(failed).name):06d}.jsonl").exists()
    s2 = generate(root, tmp / "norerun", seed=SEED, progress=False, backend="ray", address=c.address)
    assert s2["scenes_run"] == 1 and s2["scenes_failed"] == []
    assert _outputs(tmp / "norerun") == ref  # the failure record is gone with the scene redone


def test_a_node_removed_mid_run_loses_nothing(dataset, cluster):
    root, ref, tmp = dataset
    c, workers = cluster
    raylets = {w.all_processes["raylet"][0].process.pid: w for w in workers}
    seen: set[int] = set()

    def remove_node(pid: int, ppid: int) -> bool:
        seen.add(ppid)
        node = raylets.get(ppid)
        if node is None:  # not (yet) a child of a raylet: wait for the next look
            return False
        c.remove_node(node)  # the node running this scene task; the other one finishes the run
        return True

    s, removed = _run_interrupted(root, tmp / "nodegone", c.address, remove_node)
    assert removed, f"no scene task ran on a worker node (raylets {sorted(raylets)}; task parents seen {seen})"
    assert len(c.list_all_nodes()) == 2
    assert s["scenes_failed"] == [] and s["scenes_done"] == 4
    assert _outputs(tmp / "nodegone") == ref
