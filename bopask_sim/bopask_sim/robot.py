"""The simulated Panda: iterated, limit-checked IK (pybullet's, on a private copy of the arm), joint-space
interpolation under position control, the two finger joints driven together (pybullet ignores ``<mimic>``),
and contact monitoring against the table and the other objects.

pybullet's ``calculateInverseKinematics`` with null-space arguments stops ~1.6 mm short, so :meth:`Panda.ik`
re-solves from its own answer until the ``panda_hand`` pose is within 1 mm / 0.5 deg, then checks the joint limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation, Slerp

from bopask_sim.pb_frames import TIME_STEP, pb_from_pose, pose_from_pb

ARM = tuple(range(7))
FINGERS = (9, 10)
HAND_LINK = 8  # panda_hand
HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
ARM_FORCES = (87.0,) * 4 + (12.0,) * 3
FINGER_FORCE = 20.0  # N per finger (the URDF's effort limit)
JOINT_SPEED = 1.0  # rad/s, the fastest joint of a joint-space move
LINEAR_SPEED = 0.10  # m/s along a straight-line move
COLLISION_FORCE_N = 10.0  # contact normal force that counts as a collision


#: fractions of each joint's range for the extra IK starts (fixed: IK stays deterministic)
_RESTARTS = np.random.default_rng(12345).uniform(0.2, 0.8, size=(6, 7))


class IKError(RuntimeError):
    """No joint solution within limits for a hand pose."""


@dataclass
class Contact:
    step: str
    a: str
    b: str
    force: float


@dataclass
class ContactMonitor:
    """Largest contact forces seen, per pair; collisions are the pairs above :data:`COLLISION_FORCE_N` between
    the robot or the carried object and the table or another object (the target's own contacts with the fingers,
    with the table under it and, while placing, with the object it is placed on are not collisions)."""

    target: int | None = None  # pybullet body of the object being grasped/carried
    allowed: set[int] = field(default_factory=set)  # bodies the target may touch (its support, the placement)
    threshold: float = COLLISION_FORCE_N
    collisions: list[Contact] = field(default_factory=list)
    max_force: dict[tuple[str, str], float] = field(default_factory=dict)


class Panda:
    def __init__(self, world: Any) -> None:
        import pybullet as p

        self.world = world
        self.client = world.client
        self.body = world.robot
        # a private arm for IK/FK (the scene's arm is only moved by its motors)
        self.ik_client = p.connect(p.DIRECT)
        self.ik_body = p.loadURDF("franka_panda/panda.urdf", world.T_world_base[:3, 3].tolist(), [0, 0, 0, 1],
                                  useFixedBase=True, physicsClientId=self.ik_client)
        info = [p.getJointInfo(self.body, j, physicsClientId=self.client) for j in ARM]
        self.lower = np.array([i[8] for i in info])
        self.upper = np.array([i[9] for i in info])
        self.monitor = ContactMonitor()
        self.gripper_target = 0.04
        self.label = ""
        for j in FINGERS:  # fingers grip like the real pads
            p.changeDynamics(self.body, j, lateralFriction=1.2, spinningFriction=0.01, physicsClientId=self.client)

    # -- state -------------------------------------------------------------------------------------------
    def reset_home(self) -> None:
        import pybullet as p

        for j, q in zip(ARM, HOME):
            p.resetJointState(self.body, j, q, physicsClientId=self.client)
        for j in FINGERS:
            p.resetJointState(self.body, j, 0.04, physicsClientId=self.client)
        self.gripper_target = 0.04
        self._command(np.array(HOME))
        self.monitor = ContactMonitor()

    def q(self) -> NDArray[np.float64]:
        import pybullet as p

        return np.array([s[0] for s in p.getJointStates(self.body, ARM, physicsClientId=self.client)])

    def finger_opening(self) -> float:
        import pybullet as p

        return float(sum(s[0] for s in p.getJointStates(self.body, FINGERS, physicsClientId=self.client)))

    def hand_pose(self) -> NDArray[np.float64]:
        """``T_world_hand`` of the scene's arm (the URDF link frame, not its centre of mass)."""
        import pybullet as p

        s = p.getLinkState(self.body, HAND_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        return pose_from_pb(s[4], s[5])

    def fk(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        import pybullet as p

        for j, v in zip(ARM, q):
            p.resetJointState(self.ik_body, j, float(v), physicsClientId=self.ik_client)
        s = p.getLinkState(self.ik_body, HAND_LINK, computeForwardKinematics=True, physicsClientId=self.ik_client)
        return pose_from_pb(s[4], s[5])

    # -- IK ----------------------------------------------------------------------------------------------
    def ik(self, T_world_hand: NDArray[np.float64], seed: NDArray[np.float64] | None = None,
           pos_tol: float = 1e-3, rot_tol_deg: float = 0.5, iters: int = 12) -> NDArray[np.float64]:
        """Joint angles putting ``panda_hand`` at ``T_world_hand``; raises :class:`IKError`."""
        import pybullet as p

        pos, orn = pb_from_pose(T_world_hand)
        seed = np.asarray(self.q() if seed is None else seed, float)
        ll, ul = self.lower.tolist() + [0.0, 0.0], self.upper.tolist() + [0.04, 0.04]
        jr = (np.array(ul) - np.array(ll)).tolist()
        best: tuple[float, NDArray[np.float64]] | None = None
        # the seed (continuity along a path), home, then a few fixed spread-out starts (pybullet's solver is local)
        starts = [(seed, False), (seed, True), (np.array(HOME), False), (np.array(HOME), True)]
        starts += [(self.lower + (self.upper - self.lower) * f, False) for f in _RESTARTS]
        for start, nullspace in starts:
            q = start.copy()
            self.fk(q)
            for _ in range(iters):
                kw = dict(lowerLimits=ll, upperLimits=ul, jointRanges=jr,
                          restPoses=list(start) + [0.04, 0.04]) if nullspace else {}
                sol = p.calculateInverseKinematics(self.ik_body, HAND_LINK, pos, orn, maxNumIterations=200,
                                                   residualThreshold=1e-7, physicsClientId=self.ik_client, **kw)
                q = np.asarray(sol[:7], float)
                T = self.fk(q)
                dp = float(np.linalg.norm(T[:3, 3] - T_world_hand[:3, 3]))
                dr = float(np.degrees(np.linalg.norm(
                    Rotation.from_matrix(T[:3, :3].T @ T_world_hand[:3, :3]).as_rotvec())))
                within = bool(np.all(q >= self.lower - 1e-4) and np.all(q <= self.upper + 1e-4))
                err = dp + dr * 1e-3 + (0.0 if within else 1.0)
                if best is None or err < best[0]:
                    best = (err, q.copy())
                if dp < pos_tol and dr < rot_tol_deg:
                    if within:
                        return np.clip(q, self.lower, self.upper)
                    break  # converged outside the limits: try the next start
        raise IKError(f"no joint solution within limits reaches the hand pose at "
                      f"{np.round(T_world_hand[:3, 3], 3).tolist()} (best error {best[0] if best else float('nan'):.3f})")

    # -- motion ------------------------------------------------------------------------------------------
    def _command(self, q: NDArray[np.float64]) -> None:
        import pybullet as p

        self._q_cmd = np.asarray(q, float).copy()
        p.setJointMotorControlArray(self.body, ARM, p.POSITION_CONTROL, targetPositions=list(map(float, q)),
                                    forces=list(ARM_FORCES), physicsClientId=self.client)
        p.setJointMotorControlArray(self.body, FINGERS, p.POSITION_CONTROL,
                                    targetPositions=[self.gripper_target, self.gripper_target],
                                    forces=[FINGER_FORCE, FINGER_FORCE], physicsClientId=self.client)

    def _step(self, n: int = 1) -> None:
        import pybullet as p

        for _ in range(n):
            p.stepSimulation(physicsClientId=self.client)
            self._check_contacts()

    def _check_contacts(self) -> None:
        import pybullet as p

        m, w = self.monitor, self.world
        watched = [self.body] + ([m.target] if m.target is not None else [])
        for body in watched:
            for c in p.getContactPoints(bodyA=body, physicsClientId=self.client):
                other, force = c[2], float(c[9])
                if other in watched:
                    continue  # the fingers on the target, the robot on itself
                if body == m.target and other in m.allowed | {w.table}:
                    continue
                key = (w.body_name(body), w.body_name(other))
                if force > m.max_force.get(key, 0.0):
                    m.max_force[key] = force
                if force > m.threshold:
                    m.collisions.append(Contact(self.label, key[0], key[1], force))

    def move_joints(self, q_goal: NDArray[np.float64], speed: float = JOINT_SPEED) -> None:
        """Joint-space interpolation from the current angles to ``q_goal``, then a short settle."""
        q0 = self.q()
        n = max(2, int(np.ceil(np.max(np.abs(q_goal - q0)) / (speed * TIME_STEP))))
        for k in range(1, n + 1):
            self._command(q0 + (q_goal - q0) * (k / n))
            self._step()
        self.settle_arm(q_goal)

    def settle_arm(self, q_goal: NDArray[np.float64], tol: float = 2e-3, max_steps: int = 120) -> None:
        self._command(q_goal)
        for _ in range(max_steps):
            if np.max(np.abs(self.q() - q_goal)) < tol:
                break
            self._step()

    def linear_path(self, T_goal: NDArray[np.float64], step: float = 0.005) -> list[NDArray[np.float64]]:
        """IK along the straight line (position lerp, rotation slerp) from the hand's pose to ``T_goal``;
        raises :class:`IKError` where the line leaves the arm's reach, or jumps in joint space."""
        T0 = self.hand_pose()
        dist = float(np.linalg.norm(T_goal[:3, 3] - T0[:3, 3]))
        ang = float(np.linalg.norm(Rotation.from_matrix(T0[:3, :3].T @ T_goal[:3, :3]).as_rotvec()))
        n = max(1, int(np.ceil(max(dist / step, ang / np.radians(2.0)))))
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([T0[:3, :3], T_goal[:3, :3]])))
        qs, seed = [], self.q()
        for k in range(1, n + 1):
            s = k / n
            T = np.eye(4)
            T[:3, :3] = slerp([s]).as_matrix()[0]
            T[:3, 3] = T0[:3, 3] + (T_goal[:3, 3] - T0[:3, 3]) * s
            q = self.ik(T, seed)
            if np.max(np.abs(q - seed)) > 0.5:
                raise IKError("the straight line needs a joint-space jump (elbow flip)")
            qs.append(q)
            seed = q
        return qs

    def move_linear(self, T_goal: NDArray[np.float64], speed: float = LINEAR_SPEED) -> None:
        qs = self.linear_path(T_goal)
        T0 = self.hand_pose()
        seg = float(np.linalg.norm(T_goal[:3, 3] - T0[:3, 3])) / max(1, len(qs))
        per = max(2, int(np.ceil(seg / (speed * TIME_STEP))))
        prev = self.q()
        for q in qs:
            for k in range(1, per + 1):
                self._command(prev + (q - prev) * (k / per))
                self._step()
            prev = q
        self.settle_arm(qs[-1])

    def gripper(self, opening: float, steps: int = 150) -> None:
        """Drive both fingers to ``opening`` metres between the pads (0 = closed, 0.08 = open) and wait."""
        self.gripper_target = float(np.clip(opening, 0.0, 0.08)) / 2
        self._command(self._q_cmd)
        last = self.finger_opening()
        for k in range(steps):
            self._step()
            if k % 20 == 19:
                now = self.finger_opening()
                if abs(now - last) < 2e-4:
                    break
                last = now

    def wait(self, seconds: float) -> None:
        """Hold the commanded arm and gripper for ``seconds`` of simulated time."""
        self._command(self._q_cmd)
        self._step(int(round(seconds / TIME_STEP)))

    def touching(self, body: int) -> tuple[bool, bool]:
        """Whether the left and right finger touch ``body``."""
        import pybullet as p

        out = []
        for j in FINGERS:
            out.append(bool(p.getContactPoints(bodyA=self.body, bodyB=body, linkIndexA=j, physicsClientId=self.client)))
        return out[0], out[1]
