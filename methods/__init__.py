"""The method registry: every module in this package registers its method(s) on import.

A method is a function ``fit(task: Task) -> Fitted`` registered with
``METHODS.register(name, display_name=..., description=..., order=...)``; its defaults and named
variants live in ``configs/methods/<name>.yaml``.
"""

from bench.base.registry import Registry

METHODS = Registry("method", "methods")
