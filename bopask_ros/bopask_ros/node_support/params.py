"""The node's parameters: one typed definition with defaults and documentation.

``bopask_node`` declares exactly these (``declare_parameter(name, default, descriptor)``), the
YAML in ``config/bopask_node.yaml`` sets them, and :class:`NodeParams` gives the ROS-free code a
typed, validated view. Names with a dot are ROS's nested parameters (``safety.table_height`` is
``safety: {table_height: ...}`` in YAML).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bopask_ros.motion.safety import SafetyEnvelope


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    choices: tuple[Any, ...] = ()


PARAMS: tuple[ParamSpec, ...] = (
    # camera (realsense-ros 4.x default topic names with camera_namespace=camera, camera_name=camera)
    ParamSpec("color_topic", "/camera/camera/color/image_raw", "RGB image topic"),
    ParamSpec("depth_topic", "/camera/camera/aligned_depth_to_color/image_raw",
              "depth aligned to the colour image (16UC1 millimetres or 32FC1 metres)"),
    ParamSpec("camera_info_topic", "/camera/camera/color/camera_info", "CameraInfo of the colour image"),
    ParamSpec("sync_slop_s", 0.0, "largest stamp spread of colour, depth and camera_info in one frame (s); 0 = "
              "identical stamps, what realsense-ros publishes with enable_sync"),
    ParamSpec("sync_queue_size", 10, "messages kept per camera stream while waiting for their partners"),
    ParamSpec("max_frame_age_s", 1.0, "a goal is refused when the latest frame is older than this (s)"),
    ParamSpec("max_frame_lead_s", 0.5, "a goal is refused when the latest frame is stamped this far ahead of the "
              "node's clock (s): the clock went back (bag loop) and no frame of the new pass came yet"),
    ParamSpec("depth_scale", 1.0, "16UC1 depth units are depth_scale millimetres"),
    ParamSpec("min_depth_valid_fraction", 0.2, "a frame whose depth is finite and > 0 in less than this fraction "
              "of the central region of the image has no usable depth: goals that need depth end with the reason"),
    # VLM
    ParamSpec("vlm_client", "openai", "openai: an OpenAI-compatible server (vLLM); oracle: answers from the QA "
              "records of oracle_records (replay, tests, benchmarks)", ("openai", "oracle")),
    ParamSpec("oracle_records", "", "QA records JSONL the oracle answers from (vlm_client oracle)"),
    ParamSpec("vlm_endpoint", "http://127.0.0.1:8000/v1", "OpenAI-compatible base URL (vLLM)"),
    ParamSpec("vlm_model", "bopask", "model name as served"),
    ParamSpec("vlm_convention", "", "coordinate convention of the model's answers; empty: the contract's "
              "(vlm_contract), else pixels. Set with a contract, it must agree or the node does not start",
              ("", "pixels", "resized_pixels", "normalized_1", "normalized_1000")),
    ParamSpec("vlm_contract", "", "the model's answer contract (bopask_vlm.contract): the trained model's "
              "directory or its bopask_model.json, or 'served' (read from the directory the server reports, "
              "bopask serve on this machine); convention, answer form (the constrained decoding) and resize "
              "come from it. Empty: a base model, vlm_convention and the JSON schema"),
    ParamSpec("vlm_timeout_s", 30.0, "total deadline of one VLM request, connect to the answer's last byte (s)"),
    ParamSpec("vlm_retries", 2, "retries after a timeout / 5xx / unreachable server"),
    ParamSpec("vlm_total_timeout_s", 0.0, "total deadline of a goal's VLM question, retries and backoff included "
              "(s); 0 = vlm_timeout_s x (vlm_retries + 1)"),
    ParamSpec("vlm_max_response_bytes", 262144, "a larger VLM answer is refused unread (an answer is a few "
              "hundred bytes)"),
    ParamSpec("goal_max_description_chars", 500, "longest object description, relation or question a goal may "
              "carry (characters)"),
    ParamSpec("vlm_api_key_env", "BOPASK_VLM_API_KEY", "environment variable holding the API key"),
    # frames and lifting
    ParamSpec("planning_frame", "panda_link0", "robot base frame targets are expressed in"),
    ParamSpec("tf_source", "tf2", "camera pose from the TF tree (tf2: tf2_ros buffer + listener) or from a fixed "
              "calibration (calibration_file or the calibration.* parameters)", ("tf2", "calibration")),
    ParamSpec("tf_timeout_s", 0.5, "how long to wait for the camera transform at the image stamp (s)"),
    ParamSpec("tf_first_timeout_s", 5.0, "tf_source tf2: how long the first goals wait for the camera transform "
              "until one has come (/tf_static can arrive seconds after the node starts) (s)"),
    ParamSpec("calibration_file", "", "camera extrinsic YAML (config/camera_calibration.yaml layout); tf_source "
              "calibration; empty: the calibration.* parameters"),
    ParamSpec("calibration.parent_frame", "", "calibration without a file: the frame the camera pose is given in"),
    ParamSpec("calibration.child_frame", "camera_color_optical_frame", "calibration without a file: the camera frame"),
    ParamSpec("calibration.translation", [0.0, 0.0, 0.0], "calibration without a file: x y z (m)"),
    ParamSpec("calibration.rotation", [0.0, 0.0, 0.0, 1.0], "calibration without a file: qx qy qz qw"),
    ParamSpec("patch_radius", 3, "half size of the depth patch read around each point (pixels)"),
    ParamSpec("waypoint_height", 0.16, "carrying height of trajectory waypoints above the table (m)"),
    ParamSpec("grasp_refine", "local", "none: execute the model's grasp as fitted; local: the best executable grasp "
              "near it from depth (same object, within 3 cm and 30 deg; bopask_ros.grasp.refine)", ("none", "local")),
    ParamSpec("max_attempts", 3, "asks of the model per goal: an answer that fails lifting, refinement, safety or "
              "planning is asked again naming the failure (1: never re-ask)"),
    # goals
    ParamSpec("busy_policy", "reject", "a goal arriving while another runs is rejected or queued",
              ("reject", "queue")),
    ParamSpec("queue_size", 1, "goals waiting at most, with busy_policy queue"),
    # motion and execution
    ParamSpec("motion_backend", "moveit", "what plans and executes the motion: moveit (moveit_py, the MoveIt config "
              "passed as parameters by tabletop.launch.py), sim (the pybullet simulator of bopask_sim; run "
              "bopask_ros.ros.sim_bringup, which also publishes its camera) or none (answer, lift and check only)"),
    ParamSpec("allow_execution", False, "let goals that ask for execution move the robot"),
    ParamSpec("planning_group", "panda_arm", "MoveIt planning group of the arm"),
    ParamSpec("gripper_group", "hand", "MoveIt planning group of the gripper"),
    ParamSpec("end_effector_link", "panda_hand", "link the gripper pose is planned for"),
    ParamSpec("gripper_open_state", "open", "named state of the open gripper (SRDF)"),
    ParamSpec("gripper_close_state", "close", "named state of the closed gripper (SRDF)"),
    ParamSpec("lift_distance", 0.10, "how far the object is lifted after closing (m)"),
    ParamSpec("planning_pipeline", "ompl_rrtc", "plan_request_params entry for free-space moves"),
    ParamSpec("cartesian_pipeline", "pilz_lin", "plan_request_params entry for straight-line segments"),
    ParamSpec("plan_only_boxes", False, "pose goals that only plan (every Pose goal) put their box into the "
              "planning scene when they ask (add_to_planning_scene); false: only goals that execute do"),
    ParamSpec("object_box_lifetime_s", 300.0, "object boxes from earlier pose goals leave the planning scene after "
              "this long (s; 0: until replaced or cleared by a grasp)"),
    # the simulator (motion_backend sim): one scene, placed by the node's calibration (else the repository's
    # config/camera_calibration.yaml), its camera published on the three camera topics above
    ParamSpec("sim.scene_seed", 0, "motion_backend sim: the scene's seed (object choice and placement)"),
    ParamSpec("sim.num_objects", 5, "motion_backend sim: objects on the table (1..8)"),
    ParamSpec("sim.scene_file", "", "motion_backend sim: a YAML/JSON scene file (scene_seed, num_objects, width, "
              "height, calibration) that overrides the sim.* parameters; empty: none"),
    ParamSpec("sim.width", 640, "motion_backend sim: camera width (D435 640x480 or 1280x720)"),
    ParamSpec("sim.height", 480, "motion_backend sim: camera height"),
    ParamSpec("sim.camera_rate_hz", 2.0, "motion_backend sim: frames published per second (each is a CPU render; "
              "none while a motion runs)"),
    # safety envelope (base frame)
    ParamSpec("safety.workspace_min", [-0.3, -0.7, -0.05], "workspace box lower corner (m)"),
    ParamSpec("safety.workspace_max", [0.9, 0.7, 0.9], "workspace box upper corner (m)"),
    ParamSpec("safety.table_height", 0.0, "z of the table top in the planning frame (m)"),
    ParamSpec("safety.min_height_above_table", 0.005, "clearance of targets and finger tips (m)"),
    ParamSpec("safety.max_approach_angle_deg", 90.0, "largest angle of the approach from straight down"),
    ParamSpec("safety.max_reach", 0.855, "largest distance of a target from the base (m)"),
    ParamSpec("safety.pre_grasp_distance", 0.10, "pre-grasp stand-off along the approach (m)"),
    ParamSpec("safety.velocity_scaling", 0.1, "MoveIt max_velocity_scaling_factor"),
    ParamSpec("safety.acceleration_scaling", 0.1, "MoveIt max_acceleration_scaling_factor"),
    # visualisation
    ParamSpec("publish_markers", True, "publish RViz markers of lifted points, grasps, waypoints"),
    ParamSpec("publish_debug_image", True, "publish the 2D answer drawn on the image"),
)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


class ParamError(ValueError):
    """A parameter value of the wrong type or outside its choices."""


def _coerce(spec: ParamSpec, value: Any) -> Any:
    d = spec.default
    try:
        if isinstance(d, bool):
            if not isinstance(value, bool):
                raise TypeError
            out: Any = value
        elif isinstance(d, int):
            if isinstance(value, bool) or int(value) != value:
                raise TypeError
            out = int(value)
        elif isinstance(d, float):
            if isinstance(value, bool):
                raise TypeError
            out = float(value)
        elif isinstance(d, list):
            out = [float(v) for v in value]
            if len(out) != len(d):
                raise TypeError
        else:
            if not isinstance(value, str):
                raise TypeError
            out = value
    except (TypeError, ValueError) as e:
        raise ParamError(f"parameter {spec.name}: {value!r} is not a {type(d).__name__}"
                         f"{f' of {len(d)}' if isinstance(d, list) else ''}") from e
    if spec.choices and out not in spec.choices:
        raise ParamError(f"parameter {spec.name}: {out!r} is not one of {list(spec.choices)}")
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"safety": {"table_height": 0}}`` -> ``{"safety.table_height": 0}`` (as ROS does)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


@dataclass(frozen=True)
class NodeParams:
    values: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, Any] | None = None) -> NodeParams:
        """Defaults overridden by ``overrides`` (flat or nested); unknown names are an error."""
        flat = flatten(overrides or {})
        unknown = set(flat) - set(SPECS)
        if unknown:
            raise ParamError(f"unknown parameters {sorted(unknown)}")
        values = {p.name: _coerce(p, flat.get(p.name, p.default)) for p in PARAMS}
        return cls(values)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def safety(self) -> SafetyEnvelope:
        return SafetyEnvelope.from_dict({k.split(".", 1)[1]: v for k, v in self.values.items()
                                         if k.startswith("safety.")})

    def client_config(self) -> dict[str, Any]:
        """The :func:`bopask_vlm.clients.make_client` config of the node's VLM."""
        contract = {"contract": self["vlm_contract"]} if self["vlm_contract"] else {}
        if self["vlm_client"] == "oracle":
            return {"type": "oracle", "convention": self["vlm_convention"], **contract}
        return {"type": "openai", "base_url": self["vlm_endpoint"], "model": self["vlm_model"], **contract,
                "convention": self["vlm_convention"], "timeout_s": self["vlm_timeout_s"],
                "retries": self["vlm_retries"], "api_key_env": self["vlm_api_key_env"],
                "total_timeout_s": self["vlm_total_timeout_s"] or None,
                "max_response_bytes": self["vlm_max_response_bytes"]}


# -- camera calibration (tf_source: calibration) ------------------------------------------------------
#: camera_link -> camera_color_optical_frame without the driver's factory extrinsics: REP-103's optical
#: rotation (z forward, x right, y down), no offset. realsense-ros publishes the real one (a D435's colour
#: sensor sits ~15 mm beside camera_link) when it runs with publish_tf; a fixed calibration that is to
#: be exact names the optical frame as its child_frame instead.
LINK_TO_OPTICAL_ROTATION = (-0.5, 0.5, -0.5, 0.5)  # qx qy qz qw


@dataclass(frozen=True)
class CameraCalibration:
    """A fixed camera extrinsic: the pose of ``child_frame`` in ``parent_frame`` (tf2 convention)."""

    parent_frame: str
    child_frame: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]  # qx qy qz qw, unit

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], where: str = "calibration") -> CameraCalibration:
        """From the layout of ``config/camera_calibration.yaml``; a clear error for anything missing or malformed."""
        import math

        try:
            parent = str(d["parent_frame"]).strip().lstrip("/")
            child = str(d.get("child_frame", "camera_link")).strip().lstrip("/")
            t = tuple(float(v) for v in d["translation"])
            q = tuple(float(v) for v in d["rotation"])
        except (KeyError, TypeError, ValueError) as e:
            raise ParamError(f"{where}: needs parent_frame, child_frame, translation [x y z] and rotation "
                             f"[qx qy qz qw] ({type(e).__name__}: {e})") from e
        if not parent or not child or parent == child:
            raise ParamError(f"{where}: parent_frame {parent!r} and child_frame {child!r} must be two frames")
        if len(t) != 3 or len(q) != 4 or not all(math.isfinite(v) for v in t + q):
            raise ParamError(f"{where}: translation needs 3 finite values, rotation 4 (qx qy qz qw)")
        n = math.sqrt(sum(v * v for v in q))
        if not 0.9 < n < 1.1:
            raise ParamError(f"{where}: rotation is not a unit quaternion (norm {n:.3f})")
        return cls(parent, child, t, tuple(v / n for v in q))  # type: ignore[arg-type]

    @classmethod
    def from_file(cls, path: str) -> CameraCalibration:
        import yaml

        try:
            with open(path) as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            raise ParamError(f"calibration_file {path!r} cannot be read: {e}") from e
        if not isinstance(doc, Mapping):
            raise ParamError(f"calibration_file {path!r} is not a YAML mapping")
        return cls.from_mapping(doc, where=f"calibration_file {path}")

    def transform_buffer(self, image_frame: str = "camera_color_optical_frame") -> Any:
        """A :class:`bopask_ros.perception.tf_buffer.TransformBuffer` holding the calibration as a static transform,
        and, when the calibration's child is ``camera_link`` and images come in ``image_frame``, the
        nominal ``camera_link -> image_frame`` (:data:`LINK_TO_OPTICAL_ROTATION`)."""
        from bopask_ros.perception.tf_buffer import TransformBuffer
        from bopask_vlm.geometry import make_transform

        buf = TransformBuffer()
        buf.set_transform(make_transform(list(self.rotation), list(self.translation)), self.parent_frame,
                          self.child_frame, static=True)
        if self.child_frame == "camera_link" and image_frame not in ("", "camera_link"):
            buf.set_transform(make_transform(list(LINK_TO_OPTICAL_ROTATION), [0.0, 0.0, 0.0]), "camera_link",
                              image_frame, static=True)
        return buf


def calibration_of(params: NodeParams) -> CameraCalibration | None:
    """The node's fixed calibration: ``calibration_file``, else the ``calibration.*`` parameters, else None
    (no calibration given)."""
    if params["calibration_file"]:
        return CameraCalibration.from_file(params["calibration_file"])
    if not params["calibration.parent_frame"]:
        return None
    return CameraCalibration.from_mapping({k.split(".", 1)[1]: params[k] for k in params.values
                                           if k.startswith("calibration.")}, where="calibration.* parameters")
