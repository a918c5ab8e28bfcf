"""Lift 2D pixel answers to 3D camera-frame points with an aligned depth image (ROS-free).

Two rules, chosen per point and reported back:

- ``DEPTH``: the point lies on a visible surface. A ``(2r+1)^2`` patch of depth around the pixel is
  gathered (all points at once, one fancy-indexing gather), missing readings (0 / NaN / out of range)
  are dropped, and the remaining depths are split into depth layers wherever two consecutive sorted
  values differ by more than ``edge_abs_m + edge_rel * z`` (a foreground/background edge). The
  nearest layer that holds at least ``foreground_fraction`` of the valid pixels wins, so a point on an
  object's rim lands on the object, not on the wall behind it. Inside that layer ``1/z`` is fitted
  as a plane in pixel offsets (exact for planar surfaces, since ``1/z`` of a plane is affine in
  ``(u, v)``) and evaluated at the sub-pixel position; the layer median is the fallback when the fit
  is ill-conditioned or leaves the layer's depth range.
- ``PLANE``: the point is in free space (a trajectory waypoint above the table, a finger tip beside an
  object): the pixel ray is intersected with the support plane shifted by ``height`` along its normal
  (towards the camera, i.e. "up"). The plane is given, or fitted once by RANSAC on the depth.

``mode="surface"`` uses only DEPTH, ``"free"`` only PLANE, ``"auto"`` DEPTH where it is trustworthy and
PLANE (at ``height``) elsewhere. A point that gets no trustworthy 3D position has ``valid=False``,
rule ``NONE``, a NaN point and a reason. Bad input (wrong shapes, non-finite or out-of-image pixels,
mismatched image sizes, depth without any reading, integer millimetres passed as metres) raises
:class:`LiftError`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bopask_vlm.geometry import (
    CameraModel,
    GeometryError,
    Plane,
    backproject_depth,
    depth_to_metres,
    fit_plane_ransac,
)

__all__ = ["DepthLifter", "LiftError", "LiftRule", "LiftedPoints", "PlaneNotFoundError", "PatchDepth"]


class LiftError(ValueError):
    """The input to lifting is unusable as a whole (shapes, sizes, units, pixels outside the image)."""


class PlaneNotFoundError(LiftError):
    """A support plane was needed but none could be fitted to the depth image."""


class LiftRule(str, enum.Enum):
    """How a point got its 3D position."""

    DEPTH = "depth"
    PLANE = "plane"
    NONE = "none"

    def __str__(self) -> str:  # "depth", not "LiftRule.DEPTH", in logs and JSON
        return self.value


@dataclass
class LiftedPoints:
    """Result of :meth:`DepthLifter.lift`; ``points`` are camera-frame metres, NaN where not valid."""

    points: NDArray[np.float64]
    valid: NDArray[np.bool_]
    rules: list[LiftRule]
    reasons: list[str]

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def all_valid(self) -> bool:
        return bool(np.all(self.valid))


@dataclass
class PatchDepth:
    """Per-point depth from the patch statistic (surface rule), before the ray is scaled."""

    z: NDArray[np.float64]
    valid: NDArray[np.bool_]
    reasons: list[str] = field(default_factory=list)
    n_valid: NDArray[np.intp] | None = None


def _as_pixels(pixels: ArrayLike) -> NDArray[np.float64]:
    try:
        p = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise LiftError(f"pixels must be numbers of shape (N, 2): {e}") from e
    if p.ndim == 1 and p.size == 2:
        p = p.reshape(1, 2)
    if p.ndim != 2 or p.shape[1] != 2:
        raise LiftError(f"pixels must have shape (N, 2), got {p.shape}")
    bad = ~np.isfinite(p).all(axis=1)
    if np.any(bad):
        raise LiftError(f"pixels {np.flatnonzero(bad).tolist()} are not finite")
    return p


def _intersect_plane(plane: Plane, rays: NDArray[np.float64], heights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rays from the camera origin meet the plane shifted by ``heights`` (per ray) along its normal."""
    denom = rays @ plane.normal
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (heights - plane.offset) / denom
    s[~np.isfinite(s) | (np.abs(denom) < 1e-9) | (s <= 0)] = np.nan
    return rays * s[:, None]


class DepthLifter:
    """Lifts pixels of one RGB-D frame to camera-frame 3D points.

    ``depth_m``: HxW float depth in metres aligned to ``camera`` (NaN, 0, negative or inf = missing).
    Use :meth:`from_depth_image` for raw 16UC1 millimetres. ``plane``: a known support plane in the
    camera frame (else fitted lazily by :meth:`support_plane`).
    """

    def __init__(self, camera: CameraModel, depth_m: ArrayLike, plane: Plane | None = None, *,
                 patch_radius: int = 3, min_valid_fraction: float = 0.2, foreground_fraction: float = 0.2,
                 min_support_px: int = 3, edge_abs_m: float = 0.01, edge_rel: float = 0.02,
                 min_depth_m: float = 0.05, max_depth_m: float = 20.0, plane_threshold_m: float = 0.01,
                 plane_max_points: int = 20000, seed: int = 0) -> None:
        if not isinstance(camera, CameraModel):
            raise LiftError(f"camera must be a CameraModel, got {type(camera).__name__}")
        d = np.asarray(depth_m)
        if d.ndim != 2:
            raise LiftError(f"depth must be a 2D image, got shape {d.shape}")
        if d.shape != (camera.height, camera.width):
            raise LiftError(f"depth image is {d.shape[1]}x{d.shape[0]} but the camera is "
                            f"{camera.width}x{camera.height}: depth must be aligned to the colour image")
        if not np.issubdtype(d.dtype, np.floating):
            raise LiftError(f"depth_m must be float metres, got dtype {d.dtype}; convert raw 16UC1 millimetres "
                            "with DepthLifter.from_depth_image(camera, depth, '16UC1')")
        if not (isinstance(patch_radius, (int, np.integer)) and 0 <= patch_radius <= 50):
            raise LiftError(f"patch_radius must be an int in [0, 50], got {patch_radius!r}")
        if plane is not None and not isinstance(plane, Plane):
            raise LiftError(f"plane must be a Plane, got {type(plane).__name__}")
        d = d.astype(np.float32, copy=True)
        sub = d[:: max(1, d.shape[0] // 64), :: max(1, d.shape[1] // 64)]
        sub = sub[np.isfinite(sub) & (sub > 0)]
        if sub.size and float(np.median(sub)) > 50.0:
            raise LiftError(f"depth values look like millimetres, not metres (median {float(np.median(sub)):.0f}); "
                            "use DepthLifter.from_depth_image(camera, depth, '16UC1')")
        with np.errstate(invalid="ignore"):
            d[~np.isfinite(d) | (d < min_depth_m) | (d > max_depth_m)] = np.nan
        n_ok = int(np.count_nonzero(np.isfinite(d)))
        if n_ok == 0 and plane is None:
            raise LiftError("depth image has no valid reading (all zero/NaN or out of range) and no plane is given")
        self.camera = camera
        self.depth_m = d
        self.patch_radius = int(patch_radius)
        self.min_valid_fraction = float(min_valid_fraction)
        self.foreground_fraction = float(foreground_fraction)
        self.min_support_px = int(min_support_px)
        self.edge_abs_m = float(edge_abs_m)
        self.edge_rel = float(edge_rel)
        self.plane_threshold_m = float(plane_threshold_m)
        self.plane_max_points = int(plane_max_points)
        self.seed = int(seed)
        self._plane = plane.facing() if plane is not None else None
        r = self.patch_radius
        self._padded = np.pad(d, r, mode="constant", constant_values=np.nan)
        self._pw = self._padded.shape[1]
        dv, du = np.mgrid[-r:r + 1, -r:r + 1]
        self._du = du.reshape(-1).astype(np.float64)
        self._dv = dv.reshape(-1).astype(np.float64)
        self._offsets = (dv * self._pw + du).reshape(-1)
        du_, dv_ = self._du, self._dv
        self._moments = np.stack([np.ones_like(du_), du_, dv_, du_ * du_, dv_ * dv_, du_ * dv_], axis=1)
        self._idx = np.arange(self._offsets.size)[None, :]
        self._min_valid = max(1, int(np.ceil(self.min_valid_fraction * self._offsets.size)))
        self._min_support = min(self.min_support_px, self._offsets.size)

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def from_depth_image(cls, camera: CameraModel, depth: ArrayLike, encoding: str = "16UC1",
                         depth_scale: float = 1.0, **kwargs: Any) -> DepthLifter:
        """From a raw depth image: ``16UC1`` millimetres (times ``depth_scale``) or ``32FC1`` metres."""
        try:
            d = depth_to_metres(depth, encoding=encoding, depth_scale=depth_scale)
        except GeometryError as e:
            raise LiftError(str(e)) from e
        return cls(camera, d, **kwargs)

    # -- support plane --------------------------------------------------------------------------
    def support_plane(self) -> Plane:
        """The support plane (normal towards the camera): the given one, or a RANSAC fit of the depth."""
        if self._plane is None:
            n_ok = int(np.count_nonzero(np.isfinite(self.depth_m)))
            stride = max(1, int(np.ceil(np.sqrt(n_ok / max(1, self.plane_max_points)))))
            pts = backproject_depth(self.depth_m, self.camera, stride=stride)
            if pts.shape[0] < 100:
                raise PlaneNotFoundError(f"no support plane: only {n_ok} depth readings in the image")
            try:
                plane, _ = fit_plane_ransac(pts, distance_threshold=self.plane_threshold_m, iterations=500,
                                            seed=self.seed)
            except GeometryError as e:
                raise PlaneNotFoundError(f"no support plane in the depth image: {e}") from e
            self._plane = plane.facing()
        return self._plane

    # -- the patch statistic --------------------------------------------------------------------
    def patch_depth(self, pixels: ArrayLike) -> PatchDepth:
        """Robust depth (z, metres) at each pixel from its patch; see the module docstring."""
        return self._patch_depth(self._checked_pixels(pixels))

    def _patch_depth(self, uv: NDArray[np.float64]) -> PatchDepth:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._patch_depth_impl(uv)

    def _patch_depth_impl(self, uv: NDArray[np.float64]) -> PatchDepth:
        n = uv.shape[0]
        r = self.patch_radius
        P = self._offsets.size
        iuv = np.rint(uv).astype(np.intp)
        centre = (iuv[:, 1] + r) * self._pw + (iuv[:, 0] + r)
        z = self._padded.ravel()[centre[:, None] + self._offsets].astype(np.float64)  # (N, P) one gather
        zs = np.sort(z, axis=1)  # NaN sort last
        n_valid = P - np.isnan(zs).sum(axis=1)
        idx = self._idx
        jump = (zs[:, 1:] - zs[:, :-1]) > (self.edge_abs_m + self.edge_rel * zs[:, :-1])
        # depth layers = runs between jumps in the sorted values, labelled by the running count of jumps.
        # The nearest layer with >= need readings starts at the first j whose window j .. j+need-1 holds
        # no jump (layers before it are too small for any window to fit).
        lab = np.zeros((n, P), dtype=np.intp)
        np.cumsum(jump, axis=1, out=lab[:, 1:])
        last = n_valid[:, None] - 1
        need = np.maximum(self._min_support, np.ceil(self.foreground_fraction * n_valid)).astype(np.intp)
        win_end = idx + need[:, None] - 1
        rows = np.arange(n)
        flat = lab.ravel()
        enough = (flat[(rows * P)[:, None] + np.minimum(win_end, P - 1)] == lab) & (win_end <= last)
        has_layer = enough.any(axis=1) & (n_valid >= self._min_valid)
        start = np.argmax(enough, axis=1)
        in_layer = (lab == flat[rows * P + start][:, None]) & (idx <= last)
        cnt = np.maximum(in_layer.sum(axis=1), 1)
        median = 0.5 * (zs[rows, start + (cnt - 1) // 2] + zs[rows, start + cnt // 2])
        lo, hi = zs[rows, start], zs[rows, start + cnt - 1]
        # 1/z affine in the pixel offsets over the chosen layer (least squares, centred so that only a
        # 2x2 system remains: solved in closed form for all points at once)
        member = (z >= lo[:, None]) & (z <= hi[:, None])
        wgt = member.astype(np.float64)
        inv = np.where(member, 1.0 / z, 0.0)
        S = wgt @ self._moments  # sums of 1, du, dv, du^2, dv^2, du dv over the layer
        Si = inv @ self._moments[:, :3]  # sums of 1/z, du/z, dv/z
        m = S[:, 0]
        mu, mv, mi = S[:, 1] / m, S[:, 2] / m, Si[:, 0] / m
        suu = S[:, 3] - m * mu * mu
        svv = S[:, 4] - m * mv * mv
        suv = S[:, 5] - m * mu * mv
        sui = Si[:, 1] - m * mu * mi
        svi = Si[:, 2] - m * mv * mi
        det = suu * svv - suv * suv
        gu = (svv * sui - suv * svi) / det
        gv = (suu * svi - suv * sui) / det
        d0 = uv - iuv
        zf = 1.0 / (mi + gu * (d0[:, 0] - mu) + gv * (d0[:, 1] - mv))
        span = 0.5 * (hi - lo) + 1e-4
        good = (m >= 6) & (det > 0.25 * m * m) & np.isfinite(zf) & (zf >= lo - span) & (zf <= hi + span)
        zfit = np.where(good, zf, median)
        zfit[~has_layer] = np.nan
        reasons = [""] * n
        for i in np.flatnonzero(~has_layer):  # failing points only: building their messages
            if n_valid[i] < self._min_valid:
                reasons[i] = (f"depth hole: {int(n_valid[i])} of {P} patch pixels have a reading "
                              f"(need {self._min_valid})")
            else:
                largest = int(np.bincount(lab[i, : int(n_valid[i])]).max())
                reasons[i] = (f"depth edge: no depth layer with {int(need[i])} of {int(n_valid[i])} "
                              f"readings (largest {largest})")
        return PatchDepth(z=zfit, valid=has_layer, reasons=reasons, n_valid=n_valid)

    # -- lifting --------------------------------------------------------------------------------
    def lift(self, pixels: ArrayLike, mode: str = "surface", height: float | ArrayLike = 0.0) -> LiftedPoints:
        """Lift (N, 2) pixels (original-image pixel coordinates, integer = pixel centre).

        ``mode``: ``"surface"`` (depth patch), ``"free"`` (support plane + ``height`` metres, scalar or
        (N,)), ``"auto"`` (depth where trustworthy, else plane + ``height``).
        """
        if mode not in ("surface", "free", "auto"):
            raise LiftError(f"mode must be 'surface', 'free' or 'auto', got {mode!r}")
        uv = self._checked_pixels(pixels)
        n = uv.shape[0]
        h = np.asarray(height, dtype=np.float64).reshape(-1)
        if h.size == 1:
            h = np.full(n, float(h[0]))
        if h.shape != (n,) or not np.all(np.isfinite(h)):
            raise LiftError(f"height must be a finite scalar or have shape ({n},), got {np.shape(height)}")
        rays = self.camera.rays(uv)
        points = np.full((n, 3), np.nan)
        valid = np.zeros(n, dtype=bool)
        rules = [LiftRule.NONE] * n
        reasons = [""] * n
        if n == 0:
            return LiftedPoints(points, valid, rules, reasons)
        if mode in ("surface", "auto"):
            pd = self._patch_depth(uv)
            points = rays * pd.z[:, None]  # NaN where no layer was found
            valid = pd.valid.copy()
            rules = [LiftRule.DEPTH if v else LiftRule.NONE for v in valid.tolist()]
            reasons = pd.reasons
            if mode == "surface" or valid.all():
                return LiftedPoints(points, valid, rules, reasons)
        todo = ~valid
        if np.any(todo):
            plane = self.support_plane()
            idx = np.flatnonzero(todo)
            hit = _intersect_plane(plane, rays[idx], h[idx])
            ok = np.isfinite(hit).all(axis=1)
            for j, i in enumerate(idx):
                prefix = f"{reasons[i]}; " if reasons[i] else ""
                if ok[j]:
                    points[i] = hit[j]
                    valid[i] = True
                    rules[i] = LiftRule.PLANE
                    reasons[i] = f"{prefix}on the support plane at height {h[i]:.3f} m"
                else:
                    reasons[i] = f"{prefix}ray does not meet the support plane (+{h[i]:.3f} m) in front of the camera"
        return LiftedPoints(points, valid, rules, reasons)

    def lift_onto_surface(self, pixels: ArrayLike, clearance: float, max_height: float = 0.4,
                          step: float = 0.002) -> LiftedPoints:
        """Lift pixels of points held ``clearance`` metres above a seen surface (a placement answered as the
        point just above its support, e.g. the datagen's A released ``LIFT`` above B's top).

        Each pixel's ray is walked away from the camera, from ``max_height`` above the support plane down to
        ``clearance``; the answer is the first point ``X`` whose foot ``X - clearance * normal`` reaches the
        surface seen there (the patch statistic of :meth:`patch_depth`, front layer, at the foot's pixel). A
        camera looking down sees nothing above the foot beyond it, so this is the highest support under
        the ray: B's top when the ray passes over B, the table otherwise. Feet occluded from the camera at
        the start of the walk are skipped until they come into view. Rule ``DEPTH``; ``NONE`` with a reason
        where no foot ever meets a seen surface (every foot outside the image or in a depth hole)."""
        uv = self._checked_pixels(pixels)
        n = uv.shape[0]
        plane = self.support_plane()
        rays = self.camera.rays(uv)
        hs = np.arange(float(max_height), float(clearance) - 1e-9, -abs(float(step)))
        if hs.size == 0 or hs[-1] > clearance + 1e-9:
            hs = np.append(hs, float(clearance))
        points = np.full((n, 3), np.nan)
        valid = np.zeros(n, dtype=bool)
        rules = [LiftRule.NONE] * n
        reasons = [""] * n
        for i in range(n):
            X = _intersect_plane(plane, np.repeat(rays[i:i + 1], hs.size, axis=0), hs)  # (H, 3), NaN off-plane
            feet = X - clearance * plane.normal
            pix = self.camera.project(feet)
            inside = (np.isfinite(X).all(axis=1) & np.isfinite(pix).all(axis=1) & (pix[:, 0] >= -0.5)
                      & (pix[:, 1] >= -0.5) & (pix[:, 0] < self.camera.width - 0.5)
                      & (pix[:, 1] < self.camera.height - 0.5))
            gap = np.full(hs.size, np.nan)  # seen depth minus the foot's depth: > 0 the foot is in free space
            if np.any(inside):
                pd = self._patch_depth(pix[inside])
                gap[inside] = np.where(pd.valid, pd.z - feet[inside, 2], np.nan)
            free = gap > 1e-3  # a foot within 1 mm of the seen surface touches it (the table under the last foot)
            seen_free = np.maximum.accumulate(free)  # skip feet occluded before the first free one
            touch = np.flatnonzero(seen_free & (gap <= 1e-3))
            if touch.size == 0:
                reasons[i] = "no seen surface under the ray" if np.any(free) else "the ray's feet have no depth"
                continue
            k = int(touch[0])
            j = k - 1  # the last free foot before the touch (exists: seen_free needs one); interpolate the crossing
            while j > 0 and not np.isfinite(gap[j]):
                j -= 1
            g0, g1 = float(gap[j]), float(gap[k])
            t = min(1.0, g0 / (g0 - g1)) if g0 - g1 > 1e-12 else 1.0
            points[i] = X[j] + t * (X[k] - X[j])
            valid[i] = True
            rules[i] = LiftRule.DEPTH
            reasons[i] = f"{clearance:.3f} m above the seen surface at height {hs[j] + t * (hs[k] - hs[j]) - clearance:.3f} m"
        return LiftedPoints(points, valid, rules, reasons)

    # -- helpers --------------------------------------------------------------------------------
    def _checked_pixels(self, pixels: ArrayLike) -> NDArray[np.float64]:
        uv = _as_pixels(pixels)
        inside = ((uv[:, 0] >= -0.5) & (uv[:, 1] >= -0.5) & (uv[:, 0] < self.camera.width - 0.5)
                  & (uv[:, 1] < self.camera.height - 0.5))  # as CameraModel.in_image (finite checked already)
        if not np.all(inside):
            bad = np.flatnonzero(~inside)
            raise LiftError(f"pixels {bad.tolist()} lie outside the {self.camera.width}x{self.camera.height} "
                            f"image: {uv[bad].tolist()[:5]}")
        return uv

    def depth_at(self, pixels: Sequence[Sequence[float]] | ArrayLike) -> NDArray[np.float64]:
        """Raw depth (metres, NaN = missing) of the nearest pixel: for diagnostics, not for lifting."""
        uv = self._checked_pixels(pixels)
        return self.depth_m[np.rint(uv[:, 1]).astype(np.intp), np.rint(uv[:, 0]).astype(np.intp)].astype(np.float64)
