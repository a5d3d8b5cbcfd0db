"""The built-in offline demo: a tiny pretrained CLIP and a generated few-shot suite (issue 5).

``demo_defaults()`` returns what `bench run` uses when neither --data-root nor --backbone is
given: {"backbone": name, "pretrained": checkpoint path, "data_root": folder with the demo
datasets in the CoOp split-file layout (generated on first use)}.
"""
