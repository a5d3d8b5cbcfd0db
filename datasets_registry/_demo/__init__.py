"""The demo's generated data: the pretraining world (``world``) and the few-shot suite built on it
(``suite``). Below the registry (the leading underscore keeps the registry from importing it as a
dataset module): ``datasets_registry/demo.py`` registers the suite's datasets, ``bench.demo``
pretrains the demo model on the world. Imports nothing of bench.
"""
