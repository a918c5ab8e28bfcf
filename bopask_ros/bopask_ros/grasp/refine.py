"""A model's grasp as an intent, made executable from depth (ROS-free; issue 19).

A VLM's five keypoints say which object, which part, roughly from where and across which axis; the depth image
knows the rest. :func:`refine_grasp` takes the answer's fitted gripper pose (:func:`bopask_ros.grasp.grasp_fit.fit_grasp`,
range already from depth) and:

1. **the object at the answer**: the depth points around the answer (a window of ``roi_radius`` around its grasp
   point) above the measured support plane, voxel-downsampled, normals and DBSCAN clusters by open3d; the object is
   the cluster nearest to the grasp point's viewing ray (within ``seed_radius``). None there: the answer points at
   the table or at nothing (failure ``no_object``).
2. **candidates** near the answer: the answer's approach, tilted towards straight down into the support by up to
   ``max_angle_deg`` (half and full), times closing axes turned about the approach within ``max_angle_deg``, times
   grasp points at the answer's and at the object's local centre, offset along the fingers' depth and the approach
   within ``radius``; each centred between the fingers on the object's extent across them and backed off along its
   approach where the palm would reach into the object's top (``palm_clearance``, at most ``max_back_off``). The
   answer's own pose is one more candidate, unchanged.
3. **checks**, vectorised over candidates and points (numpy): the object lies between the finger pads (at least
   ``min_pad_points``) and fits the opening; the open hand swept from the pre-grasp (``sweep``) holds no scene
   point (:mod:`bopask_ros.grasp.hand_model`) and no other object lies between the fingers; every hand vertex
   stays ``table_clearance`` above the support plane; antipodal contact: on each visible side the surface normals
   at the contacts lie within ``acos(min_contact_quality)`` of the closing axis.
4. **choice**: score = contact quality - ``w_dist`` * distance / ``radius`` - ``w_angle`` * angle / ``max_angle_deg``;
   the answer's own pose wins when it passes and scores within ``keep_margin`` of the best (a precise answer is kept
   as it is). The best candidates are offered in turn to ``accept`` (the pipeline's safety envelope and the
   planner's IK with collision checking) until one is accepted.

Depth shows one side of each object: a finger behind an object moves through space the camera does not see;
only observed points count as obstacles.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from bopask_ros.grasp.hand_model import FINGER_HALF_DEPTH, PALM_HALF, hand_boxes, hand_mesh, points_in_boxes
from bopask_ros.perception.lifting import DepthLifter
from bopask_vlm.gripper import FINGER_BASE_Z, FINGER_TIP_Z, FLIP_Z, GRASP_DEPTH, MAX_OPENING

__all__ = ["FailureKind", "RefineParams", "RefineResult", "refine_grasp"]


class FailureKind(str, enum.Enum):
    """Why no grasp near the answer is executable; each has a re-ask prompt in :mod:`bopask_vlm.prompts`."""

    NO_OBJECT = "no_object"
    COLLIDES = "collides"
    TOO_WIDE = "too_wide"
    NO_CONTACT = "no_contact"
    UNREACHABLE = "unreachable"
    UNSAFE = "unsafe"

    def __str__(self) -> str:
        return self.value


@dataclass
class RefineParams:
    """Parameters of :func:`refine_grasp` (metres, degrees). Defaults keep the model's intent: candidates stay
    within 3 cm and 30 deg of the answer, so a grasp on a handle stays on the handle."""

    radius: float = 0.03
    max_angle_deg: float = 30.0
    seed_radius: float = 0.025
    roi_radius: float = 0.13
    max_pixels: int = 4000
    voxel: float = 0.004
    min_height: float = 0.008
    min_contact_quality: float = 0.15
    min_pad_points: int = 6
    collision_points: int = 6
    collision_margin: float = -0.003
    sweep: float = 0.10
    width_margin: float = 0.01
    w_dist: float = 0.15
    w_angle: float = 0.2
    w_centre: float = 0.5
    keep_margin: float = 0.15
    palm_clearance: float = 0.005
    #: every hand vertex this far above the measured table (m): TIP_CLEARANCE plus a calibration error's worth
    #: (sim-eval, seeds 1000-1004: fingers touched the table on the approach at 6 mm)
    table_clearance: float = 0.01
    max_back_off: float = 0.04
    good_contact: float = 0.5
    max_accept_checks: int = 6


@dataclass
class RefineResult:
    """``ok``: ``T_cam_gripper`` (M2T2 skeleton frame, camera frame) and ``width`` are executable; else ``failure``
    and ``reason``. ``moved_m``/``moved_deg``: from the answer's pose; ``candidates``: how many were checked."""

    ok: bool
    T_cam_gripper: NDArray[np.float64] | None
    width: float
    answer_T_cam: NDArray[np.float64]
    moved_m: float = 0.0
    moved_deg: float = 0.0
    score: float = 0.0
    candidates: int = 0
    kept_answer: bool = False
    failure: FailureKind | None = None
    reason: str = ""
    object_points: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def _rot(axis: NDArray[np.float64], angle: float) -> NDArray[np.float64]:
    import cv2

    n = np.linalg.norm(axis)
    if n < 1e-12 or abs(angle) < 1e-12:
        return np.eye(3)
    return cv2.Rodrigues(np.asarray(axis, np.float64) / n * angle)[0]


@functools.lru_cache(maxsize=4)
def _hand_vertices(opening: float) -> NDArray[np.float64]:
    return np.asarray(hand_mesh(opening).vertices)


def _angle_deg(Ra: NDArray[np.float64], Rb: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation angle between (K,3,3) Ra and Rb, up to the 180-degree flip about the approach (one grasp)."""
    c1 = (np.einsum("kij,kij->k", Ra, Rb) - 1.0) / 2.0
    c2 = (np.einsum("kij,kij->k", Ra, Rb @ FLIP_Z[:3, :3]) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(np.maximum(c1, c2), -1.0, 1.0)))


def _scene_points(lifter: DepthLifter, gp: NDArray[np.float64], p: RefineParams) -> tuple[NDArray[np.float64], float]:
    """Camera-frame depth points in a window of ``roi_radius`` around ``gp`` (strided to ``max_pixels``) and their
    spacing at ``gp``'s depth (m)."""
    cam = lifter.camera
    uv = cam.project(gp[None])[0]
    if not np.all(np.isfinite(uv)) or gp[2] <= 0:
        return np.zeros((0, 3)), 0.0
    r = cam.fx * p.roi_radius / float(gp[2])
    u0, u1 = int(np.clip(uv[0] - r, 0, cam.width)), int(np.clip(uv[0] + r + 1, 0, cam.width))
    v0, v1 = int(np.clip(uv[1] - r, 0, cam.height)), int(np.clip(uv[1] + r + 1, 0, cam.height))
    if u1 <= u0 or v1 <= v0:
        return np.zeros((0, 3)), 0.0
    stride = max(1, int(np.ceil(np.sqrt((u1 - u0) * (v1 - v0) / p.max_pixels))))
    vs, us = np.mgrid[v0:v1:stride, u0:u1:stride]
    z = lifter.depth_m[vs, us].astype(np.float64)
    ok = np.isfinite(z)
    pix = np.stack([us[ok], vs[ok]], axis=1).astype(np.float64)
    if not len(pix):
        return np.zeros((0, 3)), 0.0
    return cam.rays(pix) * z[ok][:, None], stride * float(gp[2]) / cam.fx


def _candidate_rotations(R0: NDArray[np.float64], down: NDArray[np.float64] | None,
                         p: RefineParams) -> NDArray[np.float64]:
    a = np.radians(p.max_angle_deg)
    tilts = [np.eye(3)]
    if down is not None:
        axis = np.cross(R0[:, 2], down)
        theta = float(np.arccos(np.clip(R0[:, 2] @ down, -1.0, 1.0)))
        t = min(theta, a)
        if t > np.radians(3.0):
            tilts += [_rot(axis, t / 2.0), _rot(axis, t)]
    turns = np.linspace(-a, a, 5)
    out = []
    for T in tilts:
        Rt = T @ R0
        for t in turns:
            out.append(Rt @ _rot(np.array([0.0, 0.0, 1.0]), float(t)))
    return np.asarray(out)


def refine_grasp(T_answer_cam: NDArray[np.float64], lifter: DepthLifter, params: RefineParams | None = None, *,
                 accept: Callable[[NDArray[np.float64]], tuple[FailureKind, str] | None] | None = None
                 ) -> RefineResult:
    """The executable grasp nearest to the answer's intent; see the module docstring.

    ``T_answer_cam``: the answer's fitted skeleton pose in the camera frame; ``accept(T_cam)``: None when the
    robot can take that grasp, else its failure kind and reason (checked best first, at most
    ``max_accept_checks``). Never raises for what the scene holds: a failure comes back with its kind.
    """
    import open3d as o3d

    t_start = time.perf_counter()
    p = params or RefineParams()
    T0 = np.asarray(T_answer_cam, dtype=np.float64)
    R0 = T0[:3, :3]
    gp0 = R0[:, 2] * GRASP_DEPTH + T0[:3, 3]

    def fail(kind: FailureKind, reason: str, **kw: object) -> RefineResult:
        return RefineResult(False, None, float(MAX_OPENING), T0, failure=kind, reason=reason,
                            seconds=time.perf_counter() - t_start, **kw)  # type: ignore[arg-type]

    uv = lifter.camera.project(gp0[None])[0]
    where = f"the grasp centre at ({uv[0]:.0f}, {uv[1]:.0f})" if np.all(np.isfinite(uv)) else "the grasp centre"
    try:
        plane = lifter.support_plane()
        normal, offset = np.asarray(plane.normal, float), float(plane.offset)
    except ValueError:
        plane, normal, offset = None, None, 0.0
    pts, spacing = _scene_points(lifter, gp0, p)
    if plane is not None and len(pts):
        pts = pts[pts @ normal + offset > p.min_height]
    if len(pts) < 10:
        return fail(FailureKind.NO_OBJECT, f"no object at {where}: nothing stands above the support surface there "
                                           "(the table or nothing)")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pcd = pcd.voxel_down_sample(p.voxel)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3.0 * max(p.voxel, spacing), max_nn=20))
    pcd.orient_normals_towards_camera_location(np.zeros(3))
    P = np.asarray(pcd.points)
    Nrm = np.asarray(pcd.normals)
    # neighbours on one surface are a voxel or a pixel stride apart (whichever is coarser); oblique faces more
    eps = 2.0 * max(p.voxel, spacing)
    labels = np.asarray(pcd.cluster_dbscan(eps=eps, min_points=4))
    ray = gp0 / np.linalg.norm(gp0)
    lat = np.linalg.norm(P - (P @ ray)[:, None] * ray, axis=1)
    lat[labels < 0] = np.inf
    seed = int(np.argmin(lat))
    if not np.isfinite(lat[seed]) or lat[seed] > p.seed_radius:
        return fail(FailureKind.NO_OBJECT, f"no object at {where}: nothing within {p.seed_radius * 100:.1f} cm of "
                                           "its viewing ray stands above the support surface (the table or nothing)")
    obj = labels == labels[seed]
    # only the object's points within reach of some candidate's fingers matter for the pads and the contacts
    reach = obj & (np.linalg.norm(P - gp0, axis=1) < p.radius + MAX_OPENING / 2 + 0.03)
    Pobj, ON = P[reach], Nrm[reach]
    if len(Pobj) < 3:
        return fail(FailureKind.NO_OBJECT, f"no object at {where}: what is there lies beyond the fingers' reach of it")

    # candidates: rotations x grasp points
    down = -normal / np.linalg.norm(normal) if normal is not None else None
    Rs = _candidate_rotations(R0, down, p)
    near = Pobj[np.linalg.norm(Pobj - gp0, axis=1) < 2.0 * p.radius]
    centres = [gp0]
    if len(near):
        c = near.mean(axis=0)
        off = (c - gp0) - ((c - gp0) @ R0[:, 2]) * R0[:, 2]  # the object's local centre, across the approach
        if np.linalg.norm(off) > 0.003:
            centres.append(gp0 + off * min(1.0, p.radius / max(np.linalg.norm(off), 1e-9)))
    offs_y = np.array([-0.5, 0.0, 0.5]) * p.radius
    offs_z = np.array([-0.01, 0.0, 0.01])
    # every rotation x centre x offset along the fingers' depth (y) x along the approach (z); candidate 0: the answer
    C = np.asarray(centres)
    dy, dz = np.meshgrid(offs_y, offs_z, indexing="ij")
    off = dy.reshape(1, 1, -1, 1) * Rs[:, None, None, :, 1] + dz.reshape(1, 1, -1, 1) * Rs[:, None, None, :, 2]
    g_all = (C[None, :, None, :] + off).reshape(-1, 3)
    n_per = len(C) * dy.size
    Rk = np.concatenate([R0[None], np.repeat(Rs, n_per, axis=0)])
    gk = np.concatenate([gp0[None], g_all])
    K = len(Rk)
    tk = gk - Rk[:, :, 2] * GRASP_DEPTH

    # the object in each candidate's gripper frame; centre the fingers on its extent across them
    Ol = np.matmul(Pobj[None] - tk[:, None], Rk)
    # the palm stops at the object's top: a candidate deeper than that backs off along its approach (up to 4 cm)
    with np.errstate(invalid="ignore"):
        foot = (np.abs(Ol[..., 0]) < PALM_HALF[0]) & (np.abs(Ol[..., 1]) < PALM_HALF[1])
    z_top = np.where(foot, Ol[..., 2], np.inf).min(axis=1)
    back = np.clip(FINGER_BASE_Z + p.palm_clearance - z_top, 0.0, p.max_back_off)
    back[0] = 0.0  # the answer stays as it is
    tk = tk - back[:, None] * Rk[:, :, 2]
    gk = gk - back[:, None] * Rk[:, :, 2]
    Ol[..., 2] += back[:, None]
    with np.errstate(invalid="ignore"):
        slab = (np.abs(Ol[..., 1]) < FINGER_HALF_DEPTH) & (Ol[..., 2] >= FINGER_BASE_Z) & (Ol[..., 2] <= FINGER_TIP_Z) \
            & (np.abs(Ol[..., 0]) < MAX_OPENING / 2 + 0.03)
    n_slab = slab.sum(axis=1)
    x_min = np.where(slab, Ol[..., 0], np.inf).min(axis=1)
    x_max = np.where(slab, Ol[..., 0], -np.inf).max(axis=1)
    has = n_slab > 0
    with np.errstate(invalid="ignore"):
        shift = np.where(has, (x_min + x_max) / 2.0, 0.0)
    shift[0] = 0.0  # the answer stays as it is
    width = np.where(has, x_max - x_min, 0.0)
    tk = tk + shift[:, None] * Rk[:, :, 0]
    gk = gk + shift[:, None] * Rk[:, :, 0]
    Ol[..., 0] -= shift[:, None]
    x_min, x_max = x_min - shift, x_max - shift

    too_wide = has & ((width > MAX_OPENING - 0.004) | (x_max > MAX_OPENING / 2) | (x_min < -MAX_OPENING / 2))
    no_pad = n_slab < p.min_pad_points

    table = np.zeros(K, dtype=bool)
    if normal is not None:
        V = _hand_vertices(float(MAX_OPENING))
        Vw = np.matmul(V[None], np.transpose(Rk, (0, 2, 1))) + tk[:, None]
        table = (Vw @ normal + offset).min(axis=1) < p.table_clearance
    boxes = hand_boxes(MAX_OPENING, p.sweep)
    others = ~obj

    def collisions(idx: NDArray[np.intp]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Scene points inside the open hand swept from the pre-grasp, and points of other objects between the
        fingers, for the candidates ``idx`` (checked lazily: the scene cloud is the large array)."""
        Pl = np.matmul(P[None] - tk[idx, None], Rk[idx])
        hits = points_in_boxes(Pl, boxes, margin=p.collision_margin)
        with np.errstate(invalid="ignore"):
            btw = others[None] & (np.abs(Pl[..., 0]) < MAX_OPENING / 2) & (np.abs(Pl[..., 1]) < FINGER_HALF_DEPTH) \
                & (Pl[..., 2] >= FINGER_BASE_Z - 0.01) & (Pl[..., 2] <= FINGER_TIP_Z)
        return hits, btw.sum(axis=1)

    # antipodal contact: normals at the extreme points on each side against the closing axis
    nx = np.abs(np.einsum("mj,kj->km", ON, Rk[:, :, 0]))
    band = 0.005
    left = slab & (Ol[..., 0] >= (x_max - band)[:, None])
    right = slab & (Ol[..., 0] <= (x_min + band)[:, None])
    q_l = np.where(left, nx, 0.0).max(axis=1)
    q_r = np.where(right, nx, 0.0).max(axis=1)
    h_l, h_r = left.any(axis=1), right.any(axis=1)
    quality = (q_l * h_l + q_r * h_r) / np.maximum(h_l.astype(int) + h_r.astype(int), 1)
    poor = quality < p.min_contact_quality
    dist = np.linalg.norm(gk - gp0, axis=1)
    ang = _angle_deg(Rk, np.broadcast_to(R0, Rk.shape))
    # contact quality saturates at ``good_contact``: among good contacts the noise of single-view normals does not
    # rank, closeness to the answer and the object's middle do
    score = np.minimum(quality, p.good_contact) / p.good_contact - p.w_dist * dist / p.radius \
        - p.w_angle * ang / max(p.max_angle_deg, 1e-9)
    if len(near):  # a grasp through the middle of the object near the answer holds better than one at its edge
        d = near.mean(axis=0) - gk
        off_c = np.linalg.norm(d - np.einsum("kj,kj->k", d, Rk[:, :, 2])[:, None] * Rk[:, :, 2], axis=1)
        score -= p.w_centre * off_c / p.radius
    geometric = ~(too_wide | no_pad | table | poor)
    hits0, btw0 = collisions(np.array([0]))
    col0 = bool(hits0[0] >= p.collision_points or btw0[0] >= p.collision_points)
    flags = {"no object between the pads": no_pad[0], "too wide": too_wide[0],
             f"hand hits {hits0[0]} scene points": hits0[0] >= p.collision_points,
             f"{btw0[0]} points of something else between the fingers": btw0[0] >= p.collision_points,
             "into the table": table[0], f"contact quality {quality[0]:.2f}": poor[0] and not no_pad[0]}
    answer_check = ", ".join(k for k, v in flags.items() if v) or f"passes (score {score[0]:.2f})"
    counts = {"no_contact": int(np.sum(no_pad | (~no_pad & poor))), "too_wide": int(np.sum(too_wide)),
              "table": int(np.sum(table)), "geometric": int(np.sum(geometric)), "collides": 0}
    base = dict(candidates=K, object_points=int(obj.sum()), counts=counts)

    order = np.flatnonzero(geometric)
    order = order[np.argsort(-score[order], kind="stable")]
    if geometric[0] and not col0 and score[0] >= (score[order[0]] if len(order) else -np.inf) - p.keep_margin:
        order = np.concatenate([[0], order[order != 0]])
    last: tuple[FailureKind, str] | None = None
    offered = 0
    batch = 16
    for b0 in range(0, len(order), batch):
        idx = order[b0:b0 + batch]
        hits, btw = collisions(idx)
        free = (hits < p.collision_points) & (btw < p.collision_points)
        counts["collides"] += int(np.sum(~free))
        for i in idx[free]:
            if offered >= p.max_accept_checks:
                break
            offered += 1
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = Rk[i], tk[i]
            verdict = accept(T) if accept is not None else None
            if verdict is not None:
                last = verdict
                continue
            w = float(np.clip(width[i] + p.width_margin, 0.0, MAX_OPENING)) if has[i] else float(MAX_OPENING)
            return RefineResult(True, T, w, T0, moved_m=float(dist[i]), moved_deg=float(ang[i]),
                                score=float(score[i]), kept_answer=bool(i == 0),
                                reason="the answer's own grasp" if i == 0 else
                                f"moved {dist[i] * 100:.1f} cm, {ang[i]:.0f} deg from the answer (contact quality "
                                f"{quality[i]:.2f}, score {score[i]:.2f}; the answer's own: {answer_check})",
                                seconds=time.perf_counter() - t_start, **base)  # type: ignore[arg-type]
        if offered >= p.max_accept_checks:
            break
    if last is None:
        # the failure as seen at the answer itself (what the model should change), the counts beside it
        kind = (FailureKind.NO_CONTACT if no_pad[0] or poor[0] else FailureKind.TOO_WIDE if too_wide[0]
                else FailureKind.COLLIDES)
        what = {FailureKind.NO_CONTACT: "the fingers would not close on the object (nothing solid between them, "
                                        "or contact surfaces not facing the fingers)",
                FailureKind.TOO_WIDE: f"the object is wider there than the {MAX_OPENING * 100:.0f} cm opening",
                FailureKind.COLLIDES: "the hand would hit the scene or the table"}[kind]
        return fail(kind, f"no executable grasp within {p.radius * 100:.0f} cm and {p.max_angle_deg:.0f} deg of "
                          f"{where}: {what} ({K} candidates: {counts})", **base)
    kind, why = last
    return fail(kind, f"the {offered} best grasps near {where} refused: {why}", **base)
