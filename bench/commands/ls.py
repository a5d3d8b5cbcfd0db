"""`bench ls methods|datasets|backbones`: what is registered, one line each."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("ls", help="list registered methods, datasets or backbones")
    p.add_argument("what", choices=["methods", "datasets", "backbones"])
    p.set_defaults(func=main)


def main(args) -> int:
    if args.what == "methods":
        from bench.base import plugins
        from bench.catalog import method_catalog
        from bench.config import load_method_file, variants_of

        plugins.load_included()  # the catalog reads sources: an import error must show

        for e in method_catalog():  # read from the source: importing methods means torch
            variants = variants_of(e.name)
            default = load_method_file(e.name).get("default_variant")
            vtext = ""
            if variants:
                vtext = "  [variants: " + ", ".join(
                    f"{v}{' (default)' if v == default else ''}" for v in variants) + "]"
            protocols = {"yes": "all", "config": "all (base2novel, crossdataset: not with "
                         "every config)"}.get(e.new_classes, "fewshot, domain")
            family = f"[{e.family or 'other'}]"
            print(f"{e.name:24s} {family:17s} {e.display_name}: {e.description}{vtext}  "
                  f"[protocols: {protocols}]")
    elif args.what == "datasets":
        from datasets_registry import DATASETS

        for e in DATASETS.entries():
            ds = e.obj
            suite = ",".join(e.tags) or "-"
            print(f"{e.name:20s} {e.display_name:14s} [{suite}] {e.description} "
                  f"(folder {ds.folder}/, template {ds.templates[0]!r})")
    else:
        from bench.progress import note_if_slow

        with note_if_slow("loading open_clip to list its models and pretrained tags (importing "
                          "torch and open_clip takes several seconds) ..."):
            from bench.backbone import list_backbones

            backbones = list_backbones()
        for name, tags in backbones:
            print(f"{name:36s} pretrained: {', '.join(tags) if tags else '(none; local files only)'}")
    return 0
