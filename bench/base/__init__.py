"""The foundation: the only bench modules that ``methods``, ``datasets_registry`` and ``results``
import, and that import nothing of the application (tests/test_import_graph.py checks it).

* ``errors``: the error types the CLI turns into one line (UsageError, BenchError, ...);
* ``registry``: the name registries methods and datasets register into, and ``plugins``, how
  registries find entries from outside the repository (``--include``, entry points);
* ``schema``: method config rules (ConfigError);
* ``determinism``: the reproducibility policy, set at ``import bench``.
"""
