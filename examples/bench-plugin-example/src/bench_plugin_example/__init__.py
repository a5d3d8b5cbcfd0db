"""An example bench plugin: one method (class_mean.py) and its YAML config (class_mean.yaml)."""
