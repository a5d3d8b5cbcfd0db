"""YAML configuration shipped with bench: method defaults/variants, sweeps, model configs."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
METHOD_CONFIG_DIR = CONFIG_DIR / "methods"
SWEEP_DIR = CONFIG_DIR / "sweeps"
MODEL_DIR = CONFIG_DIR / "models"
