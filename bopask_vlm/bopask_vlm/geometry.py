"""Camera model, SE(3) and quaternion helpers, projection and plane fitting.

This is the geometry both sides share: dataset generation projects 3D ground truth with it and the
robot side lifts 2D answers back to 3D with it. Conventions follow ROS REP 103/105: metres, radians,
right-handed frames, quaternions in (x, y, z, w) order as in ``geometry_msgs/Quaternion``. Camera
frames are optical frames (z forward, x right, y down), as ``camera_color_optical_frame``.

A transform ``T_a_b`` is a 4x4 homogeneous matrix that maps points expressed in frame ``b`` into
frame ``a`` (``p_a = T_a_b @ p_b``), the same reading as tf2's ``lookup_transform(a, b)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation, Slerp

FloatArray = NDArray[np.float64]

__all__ = [
    "CameraModel",
    "GeometryError",
    "Plane",
    "PlaneFitError",
    "backproject_depth",
    "depth_to_metres",
    "fit_plane_ransac",
    "invert_transform",
    "make_transform",
    "matrix_from_quat",
    "quat_from_matrix",
    "quat_multiply",
    "rotation_angle_deg",
    "slerp_transform",
    "transform_points",
    "world_from_plane",
    "xyz_quat_from_transform",
]


class GeometryError(ValueError):
    """Input to a geometry function has the wrong shape, units or values."""


class PlaneFitError(GeometryError):
    """No plane with enough support was found in the given points."""


# --------------------------------------------------------------------------------------------
# SE(3) and quaternions
# --------------------------------------------------------------------------------------------


def make_transform(rotation: ArrayLike | None = None, translation: ArrayLike | None = None) -> FloatArray:
    """Build a 4x4 transform from a 3x3 rotation matrix (or xyzw quaternion) and a translation."""
    T = np.eye(4)
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float64)
        if r.shape == (4,):
            r = matrix_from_quat(r)
        if r.shape != (3, 3):
            raise GeometryError(f"rotation must be 3x3 or an xyzw quaternion, got shape {r.shape}")
        T[:3, :3] = r
    if translation is not None:
        t = np.asarray(translation, dtype=np.float64).reshape(-1)
        if t.shape != (3,):
            raise GeometryError(f"translation must have 3 elements, got shape {t.shape}")
        T[:3, 3] = t
    if not np.all(np.isfinite(T)):
        raise GeometryError("transform has non-finite entries")
    return T


def _check_transform(T: ArrayLike) -> FloatArray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise GeometryError(f"expected a 4x4 transform, got shape {T.shape}")
    return T


def invert_transform(T: ArrayLike) -> FloatArray:
    """Inverse of a rigid transform, computed as (R^T, -R^T t) rather than a general inverse."""
    T = _check_transform(T)
    R = T[:3, :3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


def transform_points(T: ArrayLike, points: ArrayLike) -> FloatArray:
    """Apply ``T`` to an (N, 3) array (or a single 3-vector) of points."""
    T = _check_transform(T)
    p = np.asarray(points, dtype=np.float64)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    if p.shape[-1] != 3:
        raise GeometryError(f"points must have shape (N, 3), got {p.shape}")
    out = p @ T[:3, :3].T + T[:3, 3]
    return out[0] if single else out


def quat_from_matrix(R: ArrayLike) -> FloatArray:
    """xyzw quaternion of a rotation matrix (or the rotation block of a 4x4), with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape == (4, 4):
        R = R[:3, :3]
    if R.shape != (3, 3):
        raise GeometryError(f"expected a 3x3 rotation, got shape {R.shape}")
    q = Rotation.from_matrix(R).as_quat()  # scipy uses scalar-last (x, y, z, w), as ROS does
    return q if q[3] >= 0 else -q


def matrix_from_quat(q: ArrayLike) -> FloatArray:
    """3x3 rotation of an xyzw quaternion; the quaternion is normalised, a zero one is an error."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise GeometryError(f"quaternion must be 4 finite numbers (x, y, z, w), got {q!r}")
    n = np.linalg.norm(q)
    if n < 1e-9:
        raise GeometryError("zero-length quaternion")
    return Rotation.from_quat(q / n).as_matrix()


def quat_multiply(q1: ArrayLike, q2: ArrayLike) -> FloatArray:
    """Hamilton product ``q1 * q2`` of xyzw quaternions (the rotation ``q2`` first, then ``q1``)."""
    x1, y1, z1, w1 = np.asarray(q1, dtype=np.float64).reshape(4)
    x2, y2, z2, w2 = np.asarray(q2, dtype=np.float64).reshape(4)
    return np.array([
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
    ])


def xyz_quat_from_transform(T: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(translation xyz, quaternion xyzw with w >= 0) of a 4x4 transform, as in a ROS Pose/Transform."""
    T = _check_transform(T)
    return T[:3, 3].copy(), quat_from_matrix(T[:3, :3])


def slerp_transform(T0: ArrayLike, T1: ArrayLike, alpha: float) -> FloatArray:
    """Interpolate two rigid transforms: linear in translation, spherical in rotation (as tf2)."""
    T0, T1 = _check_transform(T0), _check_transform(T1)
    rots = Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]]))
    R = Slerp([0.0, 1.0], rots)([float(alpha)]).as_matrix()[0]
    t = (1.0 - alpha) * T0[:3, 3] + alpha * T1[:3, 3]
    return make_transform(R, t)


def rotation_angle_deg(R_a: ArrayLike, R_b: ArrayLike) -> float:
    """Angle in degrees of the relative rotation between two rotation matrices."""
    Ra = np.asarray(R_a, dtype=np.float64)[:3, :3]
    Rb = np.asarray(R_b, dtype=np.float64)[:3, :3]
    c = (np.trace(Ra.T @ Rb) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


# --------------------------------------------------------------------------------------------
# Camera model
# --------------------------------------------------------------------------------------------


def _get(obj: Any, *names: str) -> Any:
    """Read the first present field among ``names`` from a mapping or an object (ROS message)."""
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if not isinstance(obj, Mapping) and hasattr(obj, name):
            return getattr(obj, name)
    raise GeometryError(f"camera info has none of the fields {names}")


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera with optional lens distortion (ROS ``sensor_msgs/CameraInfo`` semantics).

    ``K`` is the 3x3 intrinsic matrix of the (possibly distorted) image, ``D`` the distortion
    coefficients of ``distortion_model`` ("plumb_bob"/"rational_polynomial" as OpenCV's, or
    "equidistant"). RealSense colour streams publish "plumb_bob" with zero coefficients.
    """

    K: FloatArray
    width: int
    height: int
    D: FloatArray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        if not (np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0):
            raise GeometryError(f"invalid intrinsics K={K.tolist()}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise GeometryError(f"invalid image size {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_camera_info(cls, info: Any) -> CameraModel:
        """From a CameraInfo message or dict with ``k``/``K``, ``d``/``D``, width, height."""
        K = np.asarray(_get(info, "k", "K"), dtype=np.float64)
        try:
            D = np.asarray(_get(info, "d", "D"), dtype=np.float64)
        except GeometryError:
            D = np.zeros(0)
        try:
            model = str(_get(info, "distortion_model")) or "plumb_bob"
        except GeometryError:
            model = "plumb_bob"
        return cls(K=K, width=int(_get(info, "width")), height=int(_get(info, "height")), D=D,
                   distortion_model=model)

    @classmethod
    def from_bop(cls, scene_camera_entry: Mapping[str, Any], width: int, height: int) -> CameraModel:
        """From one entry of a BOP ``scene_camera.json`` (``cam_K`` row-major, pixels)."""
        if "cam_K" not in scene_camera_entry:
            raise GeometryError("BOP camera entry has no 'cam_K'")
        return cls(K=np.asarray(scene_camera_entry["cam_K"], dtype=np.float64).reshape(3, 3),
                   width=width, height=height)

    # -- properties ---------------------------------------------------------------------------
    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def is_distorted(self) -> bool:
        return self.D.size > 0 and bool(np.any(self.D != 0.0))

    def to_camera_info_dict(self) -> dict[str, Any]:
        """Fields of ``sensor_msgs/CameraInfo`` (k, d, p, r, width, height, distortion_model)."""
        P = np.zeros((3, 4))
        P[:3, :3] = self.K
        return {
            "width": self.width,
            "height": self.height,
            "distortion_model": self.distortion_model,
            "d": self.D.tolist() if self.D.size else [0.0] * 5,
            "k": self.K.reshape(-1).tolist(),
            "r": np.eye(3).reshape(-1).tolist(),
            "p": P.reshape(-1).tolist(),
        }

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for an image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        S = np.diag([sx, sy, 1.0])
        K = S @ self.K
        # pixel centres: u' + 0.5 = s (u + 0.5)
        K[0, 2] = sx * (self.K[0, 2] + 0.5) - 0.5
        K[1, 2] = sy * (self.K[1, 2] + 0.5) - 0.5
        return CameraModel(K=K, width=width, height=height, D=self.D, distortion_model=self.distortion_model)

    # -- projection ---------------------------------------------------------------------------
    def project(self, points_cam: ArrayLike) -> FloatArray:
        """Project (N, 3) camera-frame points to (N, 2) pixels; points at z <= 0 give NaN."""
        P = np.atleast_2d(np.asarray(points_cam, dtype=np.float64))
        if P.shape[-1] != 3:
            raise GeometryError(f"points must have shape (N, 3), got {P.shape}")
        z = P[:, 2]
        out = np.full((P.shape[0], 2), np.nan)
        ok = z > 1e-9
        if not np.any(ok):
            return out
        if self.is_distorted:
            import cv2

            if self.distortion_model == "equidistant":  # Kannala-Brandt, 4 coefficients (cv2.fisheye)
                pts, _ = cv2.fisheye.projectPoints(P[ok].reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.K,
                                                   self._fisheye_dist())
            else:
                pts, _ = cv2.projectPoints(P[ok].reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.K,
                                           self._cv_dist())
            out[ok] = pts.reshape(-1, 2)
        else:
            x = P[ok, 0] / z[ok]
            y = P[ok, 1] / z[ok]
            out[ok, 0] = self.K[0, 0] * x + self.K[0, 1] * y + self.K[0, 2]
            out[ok, 1] = self.K[1, 1] * y + self.K[1, 2]
        return out

    def rays(self, pixels: ArrayLike) -> FloatArray:
        """Unit-depth rays (x/z, y/z, 1) through (N, 2) pixels, undistorting if needed."""
        uv = np.atleast_2d(np.asarray(pixels, dtype=np.float64))
        if uv.shape[-1] != 2:
            raise GeometryError(f"pixels must have shape (N, 2), got {uv.shape}")
        if self.is_distorted:
            import cv2

            # iterate to convergence (the default 5 iterations leave ~1e-3 px near strong-distortion corners)
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)
            if self.distortion_model == "equidistant":
                xy = cv2.fisheye.undistortPoints(uv.reshape(-1, 1, 2), self.K, self._fisheye_dist(),
                                                 criteria=crit).reshape(-1, 2)
            else:
                xy = cv2.undistortPoints(uv.reshape(-1, 1, 2), self.K, self._cv_dist(), None, None, None,
                                         crit).reshape(-1, 2)
        else:
            y = (uv[:, 1] - self.K[1, 2]) / self.K[1, 1]
            x = (uv[:, 0] - self.K[0, 2] - self.K[0, 1] * y) / self.K[0, 0]
            xy = np.stack([x, y], axis=1)
        return np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)

    def deproject(self, pixels: ArrayLike, depth_m: ArrayLike) -> FloatArray:
        """3D camera-frame points of (N, 2) pixels at depth ``depth_m`` (z, metres)."""
        rays = self.rays(pixels)
        z = np.asarray(depth_m, dtype=np.float64).reshape(-1)
        if z.shape[0] not in (1, rays.shape[0]):
            raise GeometryError(f"{rays.shape[0]} pixels but {z.shape[0]} depths")
        return rays * z[:, None]

    def in_image(self, pixels: ArrayLike) -> NDArray[np.bool_]:
        """Whether each (N, 2) pixel lies inside the image (continuous coordinates, pixel centres)."""
        uv = np.atleast_2d(np.asarray(pixels, dtype=np.float64))
        return (np.isfinite(uv).all(axis=1) & (uv[:, 0] >= -0.5) & (uv[:, 1] >= -0.5)
                & (uv[:, 0] < self.width - 0.5) & (uv[:, 1] < self.height - 0.5))

    def _fisheye_dist(self) -> FloatArray:
        if self.D.size < 4:
            raise GeometryError(f"equidistant distortion needs 4 coefficients, got {self.D.size}")
        return self.D[:4].reshape(4, 1)

    def _cv_dist(self) -> FloatArray:
        if self.distortion_model in ("plumb_bob", "rational_polynomial", ""):
            return self.D
        raise GeometryError(f"distortion model {self.distortion_model!r} is not supported")


# --------------------------------------------------------------------------------------------
# Depth images
# --------------------------------------------------------------------------------------------


def depth_to_metres(depth: ArrayLike, encoding: str = "16UC1", depth_scale: float = 1.0) -> NDArray[np.float32]:
    """Convert a depth image to float32 metres with NaN for missing readings.

    ``16UC1``/``mono16``: unsigned millimetres (RealSense aligned depth; BOP png times ``depth_scale``
    gives millimetres), 0 = no reading. ``32FC1``: metres, 0/NaN/inf = no reading.
    """
    d = np.asarray(depth)
    if d.ndim != 2:
        raise GeometryError(f"depth must be a 2D image, got shape {d.shape}")
    if encoding in ("16UC1", "mono16"):
        if not np.issubdtype(d.dtype, np.integer):
            raise GeometryError(f"16UC1 depth must be integer, got dtype {d.dtype}")
        out = d.astype(np.float32) * np.float32(depth_scale * 1e-3)
        out[d == 0] = np.nan
        return out
    if encoding == "32FC1":
        out = d.astype(np.float32, copy=True)
        out[~np.isfinite(out) | (out <= 0)] = np.nan
        return out
    raise GeometryError(f"unsupported depth encoding {encoding!r} (use 16UC1 or 32FC1)")


def backproject_depth(depth_m: ArrayLike, camera: CameraModel, stride: int = 1) -> FloatArray:
    """(N, 3) camera-frame points of every valid depth pixel (every ``stride``-th row and column)."""
    d = np.asarray(depth_m, dtype=np.float64)
    if d.shape != (camera.height, camera.width):
        raise GeometryError(f"depth is {d.shape[1]}x{d.shape[0]} but camera is {camera.width}x{camera.height}")
    v, u = np.mgrid[0:camera.height:stride, 0:camera.width:stride]
    z = d[::stride, ::stride]
    ok = np.isfinite(z) & (z > 0)
    uv = np.stack([u[ok], v[ok]], axis=1).astype(np.float64)
    return camera.deproject(uv, z[ok])


# --------------------------------------------------------------------------------------------
# Planes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plane:
    """Plane ``normal . x + offset = 0`` with a unit normal."""

    normal: FloatArray
    offset: float

    def __post_init__(self) -> None:
        n = np.asarray(self.normal, dtype=np.float64).reshape(3)
        norm = np.linalg.norm(n)
        if not np.isfinite(norm) or norm < 1e-9:
            raise GeometryError("plane normal must be a non-zero finite vector")
        object.__setattr__(self, "normal", n / norm)
        object.__setattr__(self, "offset", float(self.offset) / norm)

    def signed_distance(self, points: ArrayLike) -> FloatArray:
        return np.atleast_2d(np.asarray(points, dtype=np.float64)) @ self.normal + self.offset

    def facing(self, viewpoint: ArrayLike = (0.0, 0.0, 0.0)) -> Plane:
        """The same plane with its normal pointing to the side of ``viewpoint``."""
        if float(self.signed_distance(viewpoint)[0]) < 0:
            return Plane(-self.normal, -self.offset)
        return self

    def intersect_rays(self, rays: ArrayLike, origin: ArrayLike = (0.0, 0.0, 0.0),
                       height: float = 0.0) -> FloatArray:
        """Points where rays from ``origin`` meet the plane shifted by ``height`` along its normal.

        Rays parallel to the plane or hitting it behind the origin give NaN.
        """
        r = np.atleast_2d(np.asarray(rays, dtype=np.float64))
        o = np.asarray(origin, dtype=np.float64)
        denom = r @ self.normal
        num = -(o @ self.normal + self.offset - height)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = num / denom
        s[(np.abs(denom) < 1e-9) | (s <= 0)] = np.nan
        return o + r * s[:, None]

    def transformed(self, T: ArrayLike) -> Plane:
        """This plane expressed in the frame ``a`` for ``T = T_a_b`` (plane given in ``b``)."""
        T = _check_transform(T)
        n = T[:3, :3] @ self.normal
        p0 = transform_points(T, -self.offset * self.normal)
        return Plane(n, -float(n @ p0))


def fit_plane_ransac(points: ArrayLike, distance_threshold: float = 0.01, iterations: int = 500,
                     min_inlier_fraction: float = 0.2, seed: int | None = 0,
                     viewpoint: ArrayLike | None = (0.0, 0.0, 0.0)) -> tuple[Plane, NDArray[np.intp]]:
    """Seeded RANSAC plane fit of (N, 3) points, refined by least squares on the inliers.

    Returns the plane (normal towards ``viewpoint`` when given) and the inlier indices. Raises
    :class:`PlaneFitError` when fewer than ``min_inlier_fraction`` of the points support it.

    Written with numpy rather than open3d's ``segment_plane``: that one runs its hypotheses on
    several threads and gave different planes between runs in one process even when seeded, and
    dataset generation must be bit-for-bit reproducible to resume. All hypotheses are scored at
    once on a subsample (~10 ms for 20k points).
    """
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise GeometryError(f"points must have shape (N, 3), got {P.shape}")
    P = P[np.isfinite(P).all(axis=1)]
    if P.shape[0] < 3:
        raise PlaneFitError(f"need at least 3 finite points to fit a plane, got {P.shape[0]}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(P), size=(int(iterations), 3))
    a, b, c = P[idx[:, 0]], P[idx[:, 1]], P[idx[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-12
    if not np.any(ok):
        raise PlaneFitError("degenerate points: every plane hypothesis is collinear")
    n, a = n[ok] / norm[ok, None], a[ok]
    sub = P[:: max(1, len(P) // 4000)]
    counts = (np.abs(sub @ n.T - np.sum(n * a, axis=1)) < distance_threshold).sum(axis=0)
    best = int(np.argmax(counts))
    normal, offset = n[best], -float(n[best] @ a[best])
    for _ in range(3):  # refine: least squares (SVD) on the inliers among all points
        inl = np.abs(P @ normal + offset) < distance_threshold
        if inl.sum() < 3:
            break
        Q = P[inl]
        centre = Q.mean(axis=0)
        nn = np.linalg.svd(Q - centre, full_matrices=False)[2][-1]
        normal = nn if nn @ normal >= 0 else -nn
        offset = -float(normal @ centre)
    inliers = np.flatnonzero(np.abs(P @ normal + offset) < distance_threshold)
    if inliers.size < max(3, min_inlier_fraction * P.shape[0]):
        raise PlaneFitError(
            f"no dominant plane: best plane has {inliers.size} of {P.shape[0]} points within "
            f"{distance_threshold} m (need {min_inlier_fraction:.0%})")
    plane = Plane(normal, offset)
    if viewpoint is not None:
        plane = plane.facing(viewpoint)
    return plane, inliers


def world_from_plane(plane: Plane, anchor: ArrayLike | None = None,
                     forward: ArrayLike = (0.0, 0.0, 1.0)) -> FloatArray:
    """``T_cam_world`` for a world frame on ``plane`` (given in camera coordinates).

    World z is the plane normal (towards the camera side), the origin is ``anchor`` projected onto
    the plane (default: the foot of the perpendicular from the camera), and world x is the
    camera's ``forward`` direction projected onto the plane, so x points away from the camera
    along the table and y to the left as seen by the camera.
    """
    z = plane.normal
    a = np.zeros(3) if anchor is None else np.asarray(anchor, dtype=np.float64)
    origin = a - plane.signed_distance(a)[0] * z
    f = np.asarray(forward, dtype=np.float64)
    x = f - (f @ z) * z
    if np.linalg.norm(x) < 0.2:  # camera looks (nearly) straight down the normal: use image "up" (-y)
        f = np.array([0.0, -1.0, 0.0])
        x = f - (f @ z) * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), origin)


def as_points2d(points: ArrayLike | Sequence[Sequence[float]], name: str = "points") -> FloatArray:
    """Validate and return an (N, 2) float array."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1 and p.size == 2:
        p = p.reshape(1, 2)
    if p.ndim != 2 or p.shape[1] != 2:
        raise GeometryError(f"{name} must have shape (N, 2), got {p.shape}")
    return p
