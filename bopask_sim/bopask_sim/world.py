"""A simulated tabletop in pybullet: the ``pybullet_data`` table (top at world z = 0), the ``pybullet_data`` Panda
standing on it, a few objects settled into stable resting poses, and the camera of the robot's calibration.
Deterministic per seed (object choice and placement from the seed; pybullet's DIRECT stepping is deterministic).

World frame: z up, origin on the table top (as the synthetic BOP scenes). The robot base ``panda_link0`` stands
at :data:`ROBOT_BASE_XY` on the table, facing +x, where the objects lie.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bopask_sim.camera import CAMERA_FRAME, T_parent_optical, d435_camera, read_calibration, viewpoint_calibration
from bopask_sim.objects import SCENE_FAMILIES, SimObject, catalogue, is_concave, object_mesh, pick_mixed
from bopask_sim.pb_frames import TIME_STEP, pb_from_pose, pose_from_pb
from bopask_sim.placement import Clutter, place
from bopask_sim.robot import Panda
from bopask_vlm.geometry import CameraModel, invert_transform, make_transform

TABLE_TOP_URDF_Z = 0.625  # pybullet_data table/table.urdf: top of its 5 cm slab at z 0.6 + 0.025
ROBOT_BASE_XY = (-0.5, 0.0)
OBJECT_AREA = 0.34  # objects lie in a square this wide around the world origin (all within the Panda's reach)
BASE_FRAME = "panda_link0"


class SceneError(ValueError):
    """A scene that cannot be built with the given arguments."""


def cache_dir() -> Path:
    """Where derived meshes are cached (``$BOPASK_SIM_CACHE``, else ``~/.cache/bopask_sim``)."""
    import os

    d = Path(os.environ.get("BOPASK_SIM_CACHE", Path.home() / ".cache" / "bopask_sim"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _quiet_stdout() -> Any:
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


#: V-HACD settings for the many small generated objects (coarser voxels and hull sampling than pybullet's defaults:
#: about 5x faster, the pieces' volume within 10 % of the default's on the objects tried)
FAST_VHACD: dict[str, Any] = {"resolution": 20000, "depth": 8, "concavity": 0.005, "planeDownsampling": 8,
                              "convexhullDownsampling": 8}


def convex_pieces(mesh: Any, **vhacd: Any) -> Path:
    """An .obj of the mesh's approximate convex decomposition (pybullet's V-HACD, ~0.6 s once, then cached by the
    mesh's content and the settings ``vhacd``, passed to ``pybullet.vhacd``): pybullet collides a moving mesh as
    its convex hull, which would fill a handle."""
    import hashlib
    import os
    import tempfile

    import pybullet as p

    key = hashlib.sha1(np.ascontiguousarray(mesh.vertices, np.float64).tobytes()
                       + np.ascontiguousarray(mesh.faces, np.int64).tobytes()
                       + (repr(sorted(vhacd.items())).encode() if vhacd else b"")).hexdigest()[:16]
    out = cache_dir() / f"vhacd_{key}.obj"
    if not out.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.obj"
            mesh.export(src)
            part = Path(tmp) / "out.obj"
            with _quiet_stdout():  # V-HACD prints its progress on the C stdout
                settings = {"resolution": 100000, "maxNumVerticesPerCH": 32, **vhacd}
                p.vhacd(str(src), str(part), str(Path(tmp) / "log.txt"), **settings)
            tmp_out = out.with_suffix(f".{os.getpid()}.tmp")
            tmp_out.write_bytes(part.read_bytes())
            os.replace(tmp_out, out)
    return out


@dataclass
class Instance:
    """One object in the scene: its type, pybullet body id and the mesh (model frame, metres)."""

    obj: SimObject
    body: int
    mesh: Any
    rest_pose: NDArray[np.float64] = field(default_factory=lambda: np.eye(4))  # after settling

    @property
    def name(self) -> str:
        return self.obj.name


#: the depth model each scene family's camera has by default (None: the synthetic scenes' noise)
FAMILY_DEPTH_MODEL: dict[str, str | None] = {"primitives": None, "mixed": "d435"}


class SimWorld:
    """One scene. ``seed``: object choice and placement; ``num_objects``: 1..8 objects on the table;
    ``calibration``: camera placement (path, mapping or None = the repository's calibration file);
    ``viewpoint``: a named camera placement instead (:data:`bopask_sim.camera.VIEWPOINTS`: ``front``,
    ``oblique``); ``width``/``height``: D435 resolution (640x480 or 1280x720); ``use_real_mesh``: the real watering
    can when ``../shared/data`` holds it; ``pybullet_models``: also draw from the ``pybullet_data`` models
    (``primitives`` family).

    ``scene_family``: ``primitives`` (the original scenes: primitives and three pybullet_data models, circles 2 cm
    apart, the synthetic scenes' depth noise) or ``mixed`` (many meshes besides them, cylinders also lying,
    clutter with gaps down to ``clutter.min_gap`` and touching objects, D435 depth): see
    :mod:`bopask_sim.objects`. ``clutter``: the mixed family's placement (default :class:`Clutter`);
    ``depth_model``: the captured depth's errors, None for the family's default (:data:`FAMILY_DEPTH_MODEL`),
    ``"synthetic"`` for the synthetic scenes' model, or a :class:`bopask_vlm.datagen.synthetic.DepthModel` or its
    name (``d435``). Ground truth (``render``, ``SimFrame.depth_ideal_m``) stays noise-free.
    """

    def __init__(self, seed: int = 0, num_objects: int = 5, *, calibration: str | Path | dict[str, Any] | None = None,
                 width: int = 640, height: int = 480, use_real_mesh: bool = True, pybullet_models: bool = True,
                 settle_s: float = 1.0, scene_family: str = "primitives", clutter: Clutter | None = None,
                 viewpoint: str | None = None, depth_model: Any = None) -> None:
        import pybullet as p
        import pybullet_data

        if not 1 <= num_objects <= 8:
            raise SceneError(f"num_objects must be 1..8, got {num_objects}")
        if scene_family not in SCENE_FAMILIES:
            raise SceneError(f"scene_family must be one of {SCENE_FAMILIES}, got {scene_family!r}")
        if viewpoint is not None and calibration is not None:
            raise SceneError("give a calibration or a named viewpoint, not both")
        self.seed = int(seed)
        self.scene_family = scene_family
        self.viewpoint = viewpoint or ("front" if calibration is None else "calibration")  # a name for reports
        self.depth_model = FAMILY_DEPTH_MODEL[scene_family] if depth_model is None else \
            (None if depth_model == "synthetic" else depth_model)
        #: pairs of instances placed touching (mixed family)
        self.touching: list[tuple[int, int]] = []
        #: pybullet is not thread-safe: whoever steps the physics or renders from more than one thread holds this
        #: (the backend for a whole motion, the ROS camera publisher for one capture)
        self.lock = threading.RLock()
        self.calibration = read_calibration(calibration) if viewpoint is None else viewpoint_calibration(viewpoint)
        self.camera: CameraModel = d435_camera(width, height)
        self.client = p.connect(p.DIRECT)
        cid = self.client
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        p.setTimeStep(TIME_STEP, physicsClientId=cid)
        self.floor = p.loadURDF("plane.urdf", [0, 0, -TABLE_TOP_URDF_Z], physicsClientId=cid)
        self.table = p.loadURDF("table/table.urdf", [0, 0, -TABLE_TOP_URDF_Z], useFixedBase=True,
                                physicsClientId=cid)
        self.T_world_base = make_transform(np.eye(3), np.array([*ROBOT_BASE_XY, 0.0]))
        self.robot = p.loadURDF("franka_panda/panda.urdf", self.T_world_base[:3, 3].tolist(), [0, 0, 0, 1],
                                useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
        self.rng = np.random.default_rng([self.seed, 104729])
        self.instances: list[Instance] = []
        try:
            if scene_family == "primitives":
                self._build_objects(num_objects, use_real_mesh, pybullet_models)
            else:
                self._build_mixed(num_objects, use_real_mesh, clutter or Clutter())
        except BaseException:  # no physics client left behind by a scene that cannot be built
            p.disconnect(physicsClientId=cid)
            raise
        self.panda = Panda(self)
        self.panda.reset_home()
        self.settle(settle_s)
        for inst in self.instances:
            inst.rest_pose = self.object_pose(inst)
        self._state = p.saveState(physicsClientId=cid)

    # -- building ----------------------------------------------------------------------------------------
    def _build_objects(self, n: int, use_real_mesh: bool, pybullet_models: bool) -> None:
        from bopask_vlm.datagen import synthetic

        cat = catalogue(use_real_mesh, pybullet_models)
        picks = [cat[int(i)] for i in self.rng.choice(len(cat), size=n, replace=False)]
        meshes = {o.obj_id: object_mesh(o) for o in picks}
        # the synthetic scenes' placement: stable faces, random yaw, footprints apart (their code, our seed)
        try:
            poses = synthetic.place_objects([o.entry for o in picks], meshes, self.rng, area=OBJECT_AREA, gap=0.02)
        except synthetic.SyntheticSceneError as e:  # e.g. seed 301 with 5 objects: no room with 2 cm circles
            raise SceneError(str(e)) from e
        self._add_bodies(picks, meshes, poses)

    def _build_mixed(self, n: int, use_real_mesh: bool, clutter: Clutter) -> None:
        picks = pick_mixed(n, self.rng, use_real_mesh)
        meshes = {o.obj_id: object_mesh(o) for o in picks}
        try:
            poses, self.touching = place(picks, meshes, self.rng, OBJECT_AREA, clutter)
        except ValueError as e:
            raise SceneError(str(e)) from e
        self._add_bodies(picks, meshes, poses)

    def _add_bodies(self, picks: list[SimObject], meshes: dict[int, Any], poses: list[NDArray[np.float64]]) -> None:
        import pybullet as p

        for obj, T in zip(picks, poses):
            mesh = meshes[obj.obj_id]
            col, vis = self._shapes(obj, mesh)
            T = T.copy()
            T[2, 3] += 0.001
            pos, orn = pb_from_pose(T)
            body = p.createMultiBody(baseMass=obj.mass, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                                     basePosition=pos, baseOrientation=orn, physicsClientId=self.client)
            p.changeDynamics(body, -1, lateralFriction=obj.friction, spinningFriction=0.002, rollingFriction=0.0005,
                             physicsClientId=self.client)
            self.instances.append(Instance(obj, body, mesh))

    def _shapes(self, obj: SimObject, mesh: Any) -> tuple[int, int]:
        """Collision and visual shapes: exact primitives where the catalogue has them, else the mesh (pybullet
        collides a moving mesh as its convex hull)."""
        import pybullet as p

        rgba = [c / 255.0 for c in obj.color] + [1.0]
        e, cid = obj.entry, self.client
        if e.shape == "box":
            he = [d / 2 for d in e.dims]
            return (p.createCollisionShape(p.GEOM_BOX, halfExtents=he, physicsClientId=cid),
                    p.createVisualShape(p.GEOM_BOX, halfExtents=he, rgbaColor=rgba, physicsClientId=cid))
        if e.shape == "cylinder":
            r, h = e.dims
            return (p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=h, physicsClientId=cid),
                    p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=h, rgbaColor=rgba, physicsClientId=cid))
        if e.shape == "sphere":
            return (p.createCollisionShape(p.GEOM_SPHERE, radius=e.dims[0], physicsClientId=cid),
                    p.createVisualShape(p.GEOM_SPHERE, radius=e.dims[0], rgbaColor=rgba, physicsClientId=cid))
        v = np.asarray(mesh.vertices, float)
        f = np.asarray(mesh.faces, int).reshape(-1)
        if obj.source == "real_mesh" or (obj.source in ("pybullet_mesh", "random_urdf") and is_concave(mesh)):
            # concave (a handle, a hollow): convex pieces, so grasps through the handle work
            pieces = convex_pieces(mesh, **(FAST_VHACD if obj.source == "random_urdf" else {}))
            col = p.createCollisionShape(p.GEOM_MESH, fileName=str(pieces), physicsClientId=cid)
        else:
            col = p.createCollisionShape(p.GEOM_MESH, vertices=v.tolist(), physicsClientId=cid)
        vis = p.createVisualShape(p.GEOM_MESH, vertices=v.tolist(), indices=f.tolist(), rgbaColor=rgba,
                                  physicsClientId=cid)
        return col, vis

    # -- state -------------------------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        import pybullet as p

        for _ in range(int(n)):
            p.stepSimulation(physicsClientId=self.client)

    def settle(self, seconds: float) -> None:
        self.step(int(round(seconds / TIME_STEP)))

    def reset(self) -> None:
        """Back to the settled scene with the arm at home (the start of every episode)."""
        import pybullet as p

        with self.lock:
            p.restoreState(self._state, physicsClientId=self.client)
            self.panda.reset_home()

    def close(self) -> None:
        import pybullet as p

        for c in (self.client, getattr(self.panda, "ik_client", None)):
            if c is not None:
                try:
                    p.disconnect(physicsClientId=c)
                except p.error:
                    pass

    def __enter__(self) -> SimWorld:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------------------------
    def object_pose(self, inst: Instance | int) -> NDArray[np.float64]:
        """``T_world_obj`` of an instance (model frame; the body's inertial frame is the model frame here)."""
        import pybullet as p

        inst = self.instances[inst] if isinstance(inst, int) else inst
        return pose_from_pb(*p.getBasePositionAndOrientation(inst.body, physicsClientId=self.client))

    def base_point(self, inst: Instance | int) -> NDArray[np.float64]:
        """Bottom centre of the instance's world-axis-aligned bounding box (datagen's trajectory reference point)."""
        inst = self.instances[inst] if isinstance(inst, int) else inst
        v = inst.mesh.vertices @ self.object_pose(inst)[:3, :3].T + self.object_pose(inst)[:3, 3]
        lo, hi = v.min(0), v.max(0)
        return np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])

    def instance_of_body(self, body: int) -> int | None:
        for i, inst in enumerate(self.instances):
            if inst.body == body:
                return i
        return None

    def body_name(self, body: int) -> str:
        if body == self.table:
            return "table"
        if body == self.floor:
            return "floor"
        if body == self.robot:
            return "robot"
        i = self.instance_of_body(body)
        return f"{i}:{self.instances[i].name}" if i is not None else f"body {body}"

    # -- camera ------------------------------------------------------------------------------------------
    @property
    def T_base_camera(self) -> NDArray[np.float64]:
        """Pose of ``camera_color_optical_frame`` in the robot base frame, from the calibration."""
        T = T_parent_optical(self.calibration)
        parent = self.calibration["parent_frame"]
        if parent not in (BASE_FRAME, "base_link", "world"):
            raise SceneError(f"the simulated camera is fixed on the table: its calibration parent must be the robot "
                             f"base ({BASE_FRAME}), got {parent!r}")
        return T

    @property
    def T_world_camera(self) -> NDArray[np.float64]:
        return self.T_world_base @ self.T_base_camera

    def render(self, camera: CameraModel | None = None, T_world_optical: NDArray[np.float64] | None = None) -> Any:
        from bopask_sim.camera import render

        with self.lock:
            return render(self.client, camera or self.camera,
                          self.T_world_camera if T_world_optical is None else T_world_optical)

    def capture(self, rng: np.random.Generator | None = None) -> SimFrame:
        """What the RealSense driver would publish now: RGB, noisy depth (NaN = no reading), segmentation."""
        from bopask_sim.camera import realsense_depth

        r = self.render()
        rng = rng if rng is not None else np.random.default_rng([self.seed, 15485863])
        depth = realsense_depth(r.depth_m, rng, self.depth_model, float(self.camera.K[0, 0]))
        return SimFrame(r.rgb, depth, r.depth_m, r.seg, self.camera, self.T_world_camera, self.T_base_camera)

    def base_to_world(self, T_or_P: NDArray[np.float64]) -> NDArray[np.float64]:
        A = np.asarray(T_or_P, float)
        if A.shape == (4, 4):
            return self.T_world_base @ A
        return A @ self.T_world_base[:3, :3].T + self.T_world_base[:3, 3]

    def world_to_base(self, T_or_P: NDArray[np.float64]) -> NDArray[np.float64]:
        Tbw = invert_transform(self.T_world_base)
        A = np.asarray(T_or_P, float)
        if A.shape == (4, 4):
            return Tbw @ A
        return A @ Tbw[:3, :3].T + Tbw[:3, 3]


@dataclass
class SimFrame:
    """One captured frame: RGB, noisy depth (metres, NaN = none), ideal depth, body segmentation, camera."""

    rgb: NDArray[np.uint8]
    depth_m: NDArray[np.float32]
    depth_ideal_m: NDArray[np.float32]
    seg: NDArray[np.int32]
    camera: CameraModel
    T_world_camera: NDArray[np.float64]
    T_base_camera: NDArray[np.float64]
    frame_id: str = CAMERA_FRAME

    def pipeline_frame(self, stamp: float = 0.0) -> Any:
        """The frame as :class:`bopask_ros.pipeline.Frame` (what the node snapshots)."""
        from bopask_ros.pipeline import Frame

        return Frame(self.rgb, self.depth_m, self.camera, stamp, self.frame_id)
