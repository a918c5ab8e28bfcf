"""sim-eval on the datagen's executors (inline, process pool, Ray): scenes spread over the workers, the same
episodes whichever executor ran them; and the run's own bookkeeping (the progress bar counts every scene built,
topping up included)."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pybullet  # noqa: F401  (a requirement: a missing install fails here, never skips)
import pytest

from bopask_sim.evaluate import sim_eval
from bopask_vlm.clients import OracleClient

#: 4 grasps need two scenes of 3 objects (a grasp question per object): the run tops up after its one planned
#: scene; the answers of the answer-error model (its calibrated level travels to the workers)
RUN = dict(episodes=4, tasks=("grasp",), scenes=1, num_objects=3, direct=False, snapshots=0, log=None,
           answer_error=("nvila15b-sft",))


def _episodes(out) -> list[dict]:
    keep = ("task", "scene", "record_id", "noise_px", "mode", "success", "reason", "detail", "measure", "level",
            "answer_metric")
    return [{k: e[k] for k in keep} for e in map(json.loads, (out / "episodes.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def inline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_inline")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # tqdm draws on sys.stderr
        m = sim_eval(OracleClient(), out_dir=out, executor="inline", progress=True, **RUN)
    return m, _episodes(out), err.getvalue()


def test_the_progress_bar_counts_the_scenes_the_summary_names(inline_run):
    m, _, err = inline_run
    bars = re.findall(r"sim scenes: .*?(\d+)/(\d+)", err)
    assert bars, "the scene bar was drawn"
    done, total = map(int, bars[-1])
    assert len(m["scenes"]) >= 2 and done == total == len(m["scenes"])  # was 1/1 with two scenes built
    assert m["by_task"]["grasp"]["nvila15b-sft"]["n"] == 4 and set(m["scenes_by_task"]["grasp"]) == set(m["scenes"])


def test_a_process_pool_gives_the_same_episodes(tmp_path, inline_run):
    m_ref, eps_ref, _ = inline_run
    m = sim_eval(OracleClient(), out_dir=tmp_path, executor="process", workers=2, progress=False, **RUN)
    assert m["scenes"] == m_ref["scenes"] and len(m["scenes"]) >= 2  # the scenes spread over both workers
    assert _episodes(tmp_path) == eps_ref
    assert m["by_task"] == m_ref["by_task"]


def test_a_local_ray_cluster_gives_the_same_episodes(tmp_path, inline_run):
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
    m_ref, eps_ref, _ = inline_run
    with pytest.MonkeyPatch.context() as mp:
        # loopback only (see test_datagen_ray): Ray keeps 127.0.0.1 when clusters are "not enabled"
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        c = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": 0, "include_dashboard": False})
        for _ in range(2):
            c.add_node(**node)
        c.wait_for_nodes()
        try:
            ray.init(address=c.address, log_to_driver=False)
            # the same two scenes built, one per node (the level is calibrated on their records); two grasps
            m = sim_eval(OracleClient(), out_dir=tmp_path, executor="ray", progress=False,
                         **{**RUN, "episodes": 2, "scenes": 2})
        finally:
            if ray.is_initialized():
                ray.shutdown()
            c.shutdown()
    assert m["executor"] == "ray" and m["scenes"] == m_ref["scenes"] and not m["errors"]
    assert m["levels"] == m_ref["levels"]
    got = _episodes(tmp_path)
    ref = {e["record_id"]: e for e in eps_ref}
    assert len(got) == 2 and all(e == ref[e["record_id"]] for e in got)  # each the same as the inline run's
