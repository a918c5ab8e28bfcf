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

from bopask_ros.safety import SafetyEnvelope


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
    ParamSpec("sync_slop_s", 0.05, "largest stamp difference between colour and depth in one frame (s)"),
    ParamSpec("max_frame_age_s", 1.0, "a goal is refused when the latest frame is older than this (s)"),
    ParamSpec("depth_scale", 1.0, "16UC1 depth units are depth_scale millimetres"),
    # VLM
    ParamSpec("vlm_endpoint", "http://127.0.0.1:8000/v1", "OpenAI-compatible base URL (vLLM)"),
    ParamSpec("vlm_model", "bopask", "model name as served"),
    ParamSpec("vlm_convention", "pixels", "coordinate convention of the model's answers",
              ("pixels", "resized_pixels", "normalized_1", "normalized_1000")),
    ParamSpec("vlm_timeout_s", 30.0, "per-request timeout (s)"),
    ParamSpec("vlm_retries", 2, "retries after a timeout / 5xx / unreachable server"),
    ParamSpec("vlm_api_key_env", "BOPASK_VLM_API_KEY", "environment variable holding the API key"),
    # frames and lifting
    ParamSpec("planning_frame", "panda_link0", "robot base frame targets are expressed in"),
    ParamSpec("tf_timeout_s", 0.5, "how long to wait for the camera transform at the image stamp (s)"),
    ParamSpec("patch_radius", 3, "half size of the depth patch read around each point (pixels)"),
    ParamSpec("waypoint_height", 0.12, "carrying height of trajectory waypoints above the table (m)"),
    # goals
    ParamSpec("busy_policy", "reject", "a goal arriving while another runs is rejected or queued",
              ("reject", "queue")),
    ParamSpec("queue_size", 1, "goals waiting at most, with busy_policy queue"),
    # MoveIt and execution
    ParamSpec("allow_execution", False, "let goals that ask for execution move the robot"),
    ParamSpec("planning_group", "panda_arm", "MoveIt planning group of the arm"),
    ParamSpec("gripper_group", "hand", "MoveIt planning group of the gripper"),
    ParamSpec("end_effector_link", "panda_hand", "link the gripper pose is planned for"),
    ParamSpec("gripper_open_state", "open", "named state of the open gripper (SRDF)"),
    ParamSpec("gripper_close_state", "close", "named state of the closed gripper (SRDF)"),
    ParamSpec("lift_distance", 0.10, "how far the object is lifted after closing (m)"),
    ParamSpec("planning_pipeline", "ompl_rrtc", "plan_request_params entry for free-space moves"),
    ParamSpec("cartesian_pipeline", "pilz_lin", "plan_request_params entry for straight-line segments"),
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
        return {"type": "openai", "base_url": self["vlm_endpoint"], "model": self["vlm_model"],
                "convention": self["vlm_convention"], "timeout_s": self["vlm_timeout_s"],
                "retries": self["vlm_retries"], "api_key_env": self["vlm_api_key_env"]}
