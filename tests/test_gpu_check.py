"""benchmarks/gpu_check.sh is run on a borrowed GPU with minutes to spare: a misspelt flag there
costs a whole device session. This test runs the script with an interpreter that parses each
command's arguments with the command's own parser and stops, so every flag the script passes is
checked here, on the CPU, without running anything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHIM = '''
import argparse, os, runpy, sys

parse = argparse.ArgumentParser.parse_args


def parse_then_stop(self, args=None, namespace=None):
    parse(self, args, namespace)  # exits 2 on a flag the parser does not know
    print("PARSED", self.prog, flush=True)
    sys.exit(0)


argparse.ArgumentParser.parse_args = parse_then_stop
argv = sys.argv[1:]
if argv[0] == "-m":
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
else:
    script = os.path.abspath(argv[0])
    sys.path.insert(0, os.path.dirname(script))
    sys.argv = [script, *argv[1:]]
    runpy.run_path(script, run_name="__main__")
'''


def test_every_command_of_gpu_check_parses(tmp_path):
    shim = tmp_path / "shim.py"
    shim.write_text(SHIM)
    py = tmp_path / "python"
    py.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{shim}" "$@"\n')
    py.chmod(0o755)
    env = {**os.environ, "PYTHON": str(py), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    exits = re.findall(r"^(.+?):? exit (\d+)", proc.stdout, flags=re.M)
    steps = {name.removesuffix(" on cuda"): int(code) for name, code in exits}
    # every step of the script reported, and each command's arguments parsed
    determinism = {f"determinism {p} run {r}" for p in ("portable", "off") for r in (1, 2)}
    assert set(steps) == {"gpu.py", "batched_fits.py", "coop_joint.py", "demo run", "grid.py",
                          "gpu_decode.py"} | determinism, \
        proc.stdout + proc.stderr
    assert all(code == 0 for code in steps.values()), proc.stdout + proc.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "out").glob("*.log"))
    assert logs.count("PARSED") == 6 + len(determinism), logs
    for policy in ("portable", "off"):  # the cell-by-cell comparison's own flags
        assert "PARSED determinism.py" in (tmp_path / "out" / f"determinism_cuda_{policy}.json"
                                           ).read_text()
