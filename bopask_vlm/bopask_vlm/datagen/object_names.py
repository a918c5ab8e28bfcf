"""Object names of public BOP datasets, and a user's description file.

Names are the objects' public names (YCB-V: the YCB object set as numbered in PoseCNN/BOP; LineMOD and
LM-O: the LineMOD objects; HOPE: the NVIDIA household objects for pose estimation, alphabetical as in
BOP; HANDAL: 40 BOP objects of 17 tool categories). A description file (JSON or YAML mapping obj_id to a
name or to ``{"name": ..., "description": ...}``) overrides or extends any table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

YCBV = {
    1: "master chef can", 2: "cracker box", 3: "sugar box", 4: "tomato soup can", 5: "mustard bottle",
    6: "tuna fish can", 7: "pudding box", 8: "gelatin box", 9: "potted meat can", 10: "banana",
    11: "pitcher base", 12: "bleach cleanser", 13: "bowl", 14: "mug", 15: "power drill", 16: "wood block",
    17: "scissors", 18: "large marker", 19: "large clamp", 20: "extra large clamp", 21: "foam brick",
}
LM = {
    1: "ape", 2: "benchvise", 3: "bowl", 4: "camera", 5: "watering can", 6: "cat", 7: "cup", 8: "driller",
    9: "duck", 10: "egg box", 11: "glue", 12: "hole puncher", 13: "iron", 14: "lamp", 15: "phone",
}
HOPE = {
    1: "alphabet soup can", 2: "barbecue sauce bottle", 3: "butter box", 4: "cherries can",
    5: "chocolate pudding box", 6: "cookies box", 7: "corn can", 8: "cream cheese box", 9: "granola bars box",
    10: "green beans can", 11: "ketchup bottle", 12: "macaroni and cheese box", 13: "mayo bottle", 14: "milk carton",
    15: "mushrooms can", 16: "mustard bottle", 17: "orange juice carton", 18: "parmesan cheese tub",
    19: "peaches can", 20: "peas and carrots can", 21: "pineapple can", 22: "popcorn box", 23: "raisins box",
    24: "salad dressing bottle", 25: "spaghetti box", 26: "tomato sauce can", 27: "tuna can", 28: "yogurt cup",
}
#: HANDAL's 17 categories. The BOP release numbers its 40 objects without names in models_info; the
#: per-id category below follows the alphabetical category order with the object counts of the BOP
#: subset as we understood them; verify against your copy (or pass a description file).
HANDAL_CATEGORIES = (
    "adjustable wrench", "combinational wrench", "fixed joint pliers", "hammer", "ladle", "locking pliers",
    "measuring cup", "mug", "pan", "power drill", "ratchet", "screwdriver", "slip joint pliers", "spatula",
    "strainer", "utensil", "whisk",
)
_HANDAL_COUNTS = (3, 3, 3, 3, 2, 3, 2, 2, 2, 2, 2, 3, 3, 2, 2, 1, 2)  # sums to 40
HANDAL: dict[int, str] = {}
for _cat, _n in zip(HANDAL_CATEGORIES, _HANDAL_COUNTS):
    for _ in range(_n):
        HANDAL[len(HANDAL) + 1] = _cat

TABLES: dict[str, dict[int, str]] = {"ycbv": YCBV, "lm": LM, "lmo": LM, "hope": HOPE, "handal": HANDAL}


class ObjectNamesError(ValueError):
    """A description file is unreadable or malformed."""


def load_description_file(path: str | Path) -> dict[int, str]:
    """obj_id -> name from a JSON/YAML file ``{"1": "red mug", "2": {"name": ..., "description": ...}}``."""
    p = Path(path)
    try:
        text = p.read_text()
        data: Any = json.loads(text) if p.suffix.lower() == ".json" else __import__("yaml").safe_load(text)
    except (OSError, ValueError) as e:
        raise ObjectNamesError(f"cannot read object descriptions {p}: {e}") from e
    if not isinstance(data, dict):
        raise ObjectNamesError(f"{p}: expected a mapping obj_id -> name")
    out = {}
    for k, v in data.items():
        try:
            oid = int(k)
        except (TypeError, ValueError) as e:
            raise ObjectNamesError(f"{p}: object id {k!r} is not an integer") from e
        if isinstance(v, dict):
            v = v.get("description") or v.get("name")
        if not isinstance(v, str) or not v.strip():
            raise ObjectNamesError(f"{p}: object {oid} has no name")
        out[oid] = v.strip()
    return out


def object_names(dataset: str | None = None, description_file: str | Path | None = None,
                 dataset_root: str | Path | None = None) -> dict[int, str]:
    """Names by obj_id: the dataset's table, then ``models/object_names.json`` under ``dataset_root``
    (written by the synthetic generator), then the user's description file (last one wins)."""
    names: dict[int, str] = {}
    if dataset:
        names.update(TABLES.get(dataset.lower(), {}))
    if dataset_root is not None:
        f = Path(dataset_root) / "models" / "object_names.json"
        if f.is_file():
            names.update(load_description_file(f))
    if description_file is not None:
        names.update(load_description_file(description_file))
    return names


def name_of(names: dict[int, str], obj_id: int) -> str:
    return names.get(int(obj_id), f"object {int(obj_id)}")
