"""Each method's settings under the base-to-novel, domain and cross-dataset protocols: the values
of its release's script for that protocol, read from the release repositories at the commits the
YAMLs cite (each check below names its file), chosen by --protocol, recorded, overridable; and
the few-shot resolution untouched by them (issue 27)."""

from __future__ import annotations

import copy

import pytest

import bench.config as config
from bench.config import MethodSpec, protocol_config, resolve_method_config
from bench.base.errors import UsageError
from datasets_registry import DATASETS
from methods import METHODS

PROTOCOLS = ("base2novel", "domain", "crossdataset")


def cfg(method, protocol, dataset="dtd", shots=16, variant=None, overrides=None):
    return resolve_method_config(MethodSpec(method, variant), dataset, shots, overrides,
                                 protocol)[1]


def fewshot(method, dataset="dtd", shots=16, variant=None):
    return resolve_method_config(MethodSpec(method, variant), dataset, shots)[1]


# -- the values, per release script ------------------------------------------------------------
def test_coop_base2novel_is_the_coop_setup_of_cocoops_scripts():
    # KaiyangZhou/CoOp@ff61507 scripts/cocoop/base2new_train.sh, TRAINER=CoOp lines: CFG=vit_b16_ctxv1
    # (configs/trainers/CoOp/vit_b16_ctxv1.yaml: CTX_INIT "a photo of a", MAX_EPOCH 200, BATCH_SIZE 32,
    # LR 0.002), on ImageNet vit_b16_ep50_ctxv1 (MAX_EPOCH 50); train.py: CSC False, CTP end
    for shots in (1, 2, 4, 8, 16):
        c = cfg("coop", "base2novel", "dtd", shots)
        assert (c["epochs"], c["ctx_init"], c["batch_size"], c["lr"]) == (200, "a photo of a", 32, 0.002)
        assert (c["csc"], c["class_token_position"], c["warmup_epochs"], c["warmup_lr"]) == \
            (False, "end", 1, 1e-5)
    assert cfg("coop", "base2novel", "imagenet", 4)["epochs"] == 50
    assert fewshot("coop", "dtd", 1)["epochs"] == 50 and fewshot("coop")["ctx_init"] is None


def test_coop_transfer_settings():
    # cross-dataset: scripts/cocoop/xd_train.sh TRAINER=CoOp line: CFG=vit_b16_ep50_ctxv1 on ImageNet
    c = cfg("coop", "crossdataset", "imagenet", 16)
    assert (c["epochs"], c["ctx_init"], c["batch_size"]) == (50, "a photo of a", 32)
    # domain: CoOp's own scripts/coop/eval.sh loads the few-shot ImageNet models (--load-epoch 50)
    d = cfg("coop", "domain", "imagenet", 16)
    assert d == fewshot("coop", "imagenet", 16)
    assert (d["epochs"], d["ctx_init"], d["n_ctx"]) == (50, None, 16)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cocoop_every_script_uses_its_ctxv1_config(protocol):
    # KaiyangZhou/CoOp@ff61507 scripts/cocoop/base2new_train.sh, xd_train.sh (and COCOOP.md's domain
    # generalization, the xd_train model): CFG=vit_b16_c4_ep10_batch1_ctxv1 = BATCH_SIZE 1, MAX_EPOCH 10,
    # LR 0.002, N_CTX 4, CTX_INIT "a photo of a"
    for dataset in ("dtd", "imagenet"):
        c = cfg("cocoop", protocol, dataset, 16)
        assert (c["epochs"], c["batch_size"], c["lr"], c["n_ctx"], c["ctx_init"]) == \
            (10, 1, 0.002, 4, "a photo of a")
        assert c == fewshot("cocoop", dataset, 16)
    assert protocol_config("cocoop", protocol)["release_script"] is True


@pytest.mark.parametrize("protocol", ["base2novel", "crossdataset"])
def test_kgcoop_scripts(protocol):
    # htyao89/KgCoOp@c43ccc3 KgCoOp/scripts/base2new_train.sh (run.sh passes W 8.0) and xd_train.sh
    # (WEIGHT=8.0): CFG=vit_b16_ep100_ctxv1 (BATCH_SIZE 128, MAX_EPOCH 100, LR 0.002, CTX_INIT True), NCTX=4
    for shots in (4, 16):
        c = cfg("kgcoop", protocol, "eurosat", shots)
        assert (c["epochs"], c["batch_size"], c["lr"], c["kg_weight"], c["ctx_init"]) == \
            (100, 128, 0.002, 8.0, "a photo of a")
    assert protocol_config("kgcoop", protocol)["release_script"] is True
    # no domain-generalization script: the few-shot config, recorded as such
    assert protocol_config("kgcoop", "domain")["release_script"] is False
    assert cfg("kgcoop", "domain", "imagenet") == fewshot("kgcoop", "imagenet")


def test_prograd_base2new_script_trains_100_epochs():
    # BeierZhu/Prompt-align@1b76203 ProGrad.public/scripts/base2new_train_prograd.sh: CFG=rn50_ep100
    # (configs/trainers/ProGrad/rn50_ep100.yaml MAX_EPOCH 100, BATCH_SIZE 32), NCTX=16, LAMBDA=1.0;
    # README: rn50_ep50 (LOADEP 50) on ImageNet. The few-shot README runs 200 epochs at 8/16 shots.
    for dataset in ("dtd", "oxford_flowers", "eurosat", "caltech101"):
        for shots in (1, 4, 16):
            c = cfg("prograd", "base2novel", dataset, shots)
            assert (c["epochs"], c["prograd_lambda"], c["n_ctx"], c["batch_size"]) == (100, 1.0, 16, 32)
    assert cfg("prograd", "base2novel", "imagenet", 16)["epochs"] == 50
    assert fewshot("prograd", "oxford_flowers", 16)["epochs"] == 200
    assert fewshot("prograd", "oxford_flowers", 16)["prograd_lambda"] == 0.8
    # the release's own CUSTOM_TEMPLATES stay (trainers/prograd.py), whatever the protocol
    assert cfg("prograd", "base2novel", "oxford_pets")["prograd_templates"] == \
        ["a type of pet, a photo of a {}."]
    # domain: README "Robustness to Distribution Shift", scripts/eval.sh: the few-shot ImageNet models
    assert cfg("prograd", "domain", "imagenet", 16) == fewshot("prograd", "imagenet", 16)
    assert protocol_config("prograd", "domain")["release_script"] is True
    # cross-dataset: no script
    assert protocol_config("prograd", "crossdataset")["release_script"] is False
    assert cfg("prograd", "crossdataset", "imagenet", 16) == fewshot("prograd", "imagenet", 16)


def test_taskres_domain_is_its_generalization_config():
    # geekyutao/TaskRes@5195359 test_dg.sh -> scripts/taskres/eval.sh (SHOTS=16, --load-epoch 200,
    # SCALE=0.5) with configs/trainers/TaskRes/generalization_rn50.yaml: adam, LR 0.0002, BATCH_SIZE 256,
    # MAX_EPOCH 200
    for shots in (1, 4, 16):
        c = cfg("taskres", "domain", "imagenet", shots)
        assert (c["epochs"], c["lr"], c["alpha"], c["batch_size"], c["optimizer"]) == \
            (200, 0.0002, 0.5, 256, "adam")
    assert fewshot("taskres", "imagenet", 1)["epochs"] == 100


@pytest.mark.parametrize("method,script", [
    ("gda", "main_robustness.py"), ("lp_pp", "main_imagenet.py"), ("clap", "scripts/eval.sh")])
def test_domain_scripts_that_reuse_the_fewshot_training(method, script):
    # mrflogs/ICLR24@560fe21 configs/robustness/imagenet_rn50.yaml: augment_epoch 10 = the few-shot one;
    # LP++ main_imagenet.py trains with configs/base.yaml; CLAP eval.sh loads adapt.sh's models
    for shots in (1, 16):
        assert cfg(method, "domain", "imagenet", shots) == fewshot(method, "imagenet", shots)
    info = protocol_config(method, "domain")
    assert info["release_script"] is True and script in info["source"]
    assert cfg("gda", "domain", "imagenet")["n_views"] == 10


@pytest.mark.parametrize("method,protocols", [
    ("clip_adapter_visual", PROTOCOLS), ("clip_adapter_text", PROTOCOLS),
    ("clip_adapter_both", PROTOCOLS), ("tip_adapter", ["domain"]), ("tip_adapter_f", ["domain"]),
    ("linear_probe", ["domain"])])
def test_releases_without_a_script_keep_the_fewshot_config(method, protocols):
    for protocol in protocols:
        info = protocol_config(method, protocol)
        assert info["block"] and info["release_script"] is False and "no " in info["source"]
        for dataset, shots in (("eurosat", 1), ("imagenet", 16)):
            assert cfg(method, protocol, dataset, shots) == fewshot(method, dataset, shots)


def test_every_builtin_method_says_where_each_protocol_comes_from():
    from bench.protocols import supports_new_classes

    builtin = [e.name for e in METHODS.entries() if not e.source.startswith("plugin ")]
    assert "coop" in builtin and len(builtin) >= 15
    for method in builtin:  # an installed plugin (CI installs the example one) has no release
        for protocol in PROTOCOLS:
            if protocol != "domain" and not supports_new_classes(method):
                continue  # refused there (per-class weights)
            info = protocol_config(method, protocol)
            assert info["block"], (method, protocol)
            assert "@" in info["source"], (method, protocol)  # owner/repo@commit


# -- few-shot untouched, order, overrides, records ---------------------------------------------
def test_fewshot_resolution_ignores_the_protocol_blocks(monkeypatch):
    """Every method, variant, dataset and shot count resolves exactly as from its file with the
    protocols blocks removed: old few-shot records keep their identity."""
    real = config.load_method_file
    expected = {}
    monkeypatch.setattr(config, "load_method_file",
                        lambda name: {k: v for k, v in real(name).items() if k != "protocols"})
    cases = [(m, v) for m in METHODS.names() for v in [None] + config.variants_of(m)]
    for m, v in cases:
        for ds in DATASETS.names():
            for k in (1, 2, 4, 8, 16):
                expected[(m, v, ds, k)] = resolve_method_config(MethodSpec(m, v), ds, k)
    monkeypatch.setattr(config, "load_method_file", real)
    for (m, v, ds, k), want in expected.items():
        assert resolve_method_config(MethodSpec(m, v), ds, k, protocol="fewshot") == want
        assert resolve_method_config(MethodSpec(m, v), ds, k) == want
    assert protocol_config("coop", "fewshot") is None


def test_variant_and_set_apply_on_top_of_the_protocol_block():
    c = cfg("prograd", "base2novel", "dtd", 16, variant="all_tokens")
    assert (c["epochs"], c["ctx_init_count"]) == (100, "tokens")
    assert cfg("prograd", "base2novel", "dtd", 16, overrides={"epochs": 7})["epochs"] == 7
    assert cfg("coop", "base2novel", "imagenet", 16, overrides={"ctx_init": None})["ctx_init"] is None


def test_cells_record_the_block_and_its_source():
    from bench.planner import expand_cells

    common = ([("bench-test-tiny", "none")], ["dtd"], [MethodSpec("coop"), MethodSpec("clip_adapter_visual")],
              [16], [1])
    cells = expand_cells(*common, protocol="base2novel")
    coop, adapter = (next(c for c in cells if c["method"] == m) for m in ("coop", "clip_adapter_visual"))
    assert coop["config"]["epochs"] == 200 and coop["config"]["ctx_init"] == "a photo of a"
    assert coop["protocol_config"]["protocol"] == "base2novel"
    assert coop["protocol_config"]["release_script"] is True
    assert "scripts/cocoop/base2new_train.sh" in coop["protocol_config"]["source"]
    assert adapter["protocol_config"]["release_script"] is False
    assert all("protocol_config" not in c for c in expand_cells(*common))
    # --set still wins, per method
    cells = expand_cells(*common, overrides={"coop": {"epochs": 3}}, protocol="base2novel")
    assert next(c for c in cells if c["method"] == "coop")["config"]["epochs"] == 3


def test_report_compares_a_record_with_its_protocols_config():
    from bench.reporting import _default_config

    resolve = _default_config()
    assert resolve("prograd", None, "dtd", 16, "base2novel")["epochs"] == 100
    assert resolve("prograd", None, "dtd", 16)["epochs"] == 200


@pytest.mark.parametrize("blocks,message", [
    ({"fewshot": {"source": "x@1", "release_script": True}}, "not a protocol"),
    ({"base2novel": {"release_script": True, "epochs": 1}}, "source must"),
    ({"base2novel": {"source": "x@1", "epochs": 1}}, "release_script"),
    ({"base2novel": {"source": "x@1", "release_script": True, "epoch": 1}}, "unknown key 'epoch'"),
    ({"domain": {"source": "x@1", "release_script": True, "per_dataset": {"imagenet": {"lrr": 1}}}},
     "unknown key 'lrr'"),
])
def test_a_malformed_protocol_block_is_refused(tmp_path, blocks, message):
    data = {"defaults": {"epochs": 1, "lr": 0.1}, "protocols": copy.deepcopy(blocks)}
    with pytest.raises(UsageError, match=message):
        config._check_protocols(tmp_path / "m.yaml", data)


# -- the encoder-tuning methods (issue 29) ------------------------------------------------------
def test_promptsrc_few_shot_and_base2novel_configs():
    # muzairkhattak/PromptSRC@bb95c77 configs/trainers/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml:
    # MAX_EPOCH 50, LR 0.0025, batch 4, depth 9/9, loss weights 25/10, GPA 30/30 (45/5 for the five
    # datasets its comment names); vit_b16_c2_ep20_batch4_4+4ctx.yaml (base2new_train.sh): 20 epochs, GPA 15/1
    c = fewshot("promptsrc", "caltech101", 4)
    assert (c["epochs"], c["lr"], c["batch_size"], c["gpa_mean"], c["gpa_std"]) == (50, 0.0025, 4, 30, 30)
    assert (c["prompt_depth_text"], c["prompt_depth_vision"], c["text_loss_weight"],
            c["image_loss_weight"]) == (9, 9, 25, 10)
    assert (fewshot("promptsrc", "dtd")["gpa_mean"], fewshot("promptsrc", "dtd")["gpa_std"]) == (45, 5)
    b = cfg("promptsrc", "base2novel", "dtd", 16)
    assert (b["epochs"], b["gpa_mean"], b["gpa_std"], b["lr"]) == (20, 15, 1, 0.0025)
    x = cfg("promptsrc", "crossdataset", "imagenet", 16)
    assert (x["epochs"], x["prompt_depth_text"], x["gpa_mean"], x["gpa_std"]) == (20, 3, 6, 10)
    assert protocol_config("promptsrc", "base2novel")["release_script"] is True


def test_maple_configs():
    # muzairkhattak/multimodal-prompt-learning@69bce21 configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml:
    # N_CTX 2, depth 9, LR 0.0035, MAX_EPOCH 5, batch 4; _cross_datasets.yaml: LR 0.0026, 2 epochs, depth 3
    for protocol in ("fewshot", "base2novel"):
        c = fewshot("maple", "dtd", 16) if protocol == "fewshot" else cfg("maple", protocol)
        assert (c["n_ctx"], c["prompt_depth"], c["lr"], c["epochs"], c["batch_size"]) == \
            (2, 9, 0.0035, 5, 4)
    x = cfg("maple", "crossdataset", "imagenet", 16)
    assert (x["lr"], x["epochs"], x["prompt_depth"]) == (0.0026, 2, 3)


def test_clip_lora_and_two_stage_use_one_config_everywhere():
    # MaxZanella/CLIP-LoRA@358f0d7 run_utils.py / lora.py: r 2, alpha 1, dropout 0.25, lr 2e-4, 500 x shots,
    # batch 32, wd 1e-2 (1e2 at the first release: the named variant); no base-to-novel script.
    # FarinaMatteo/rethinking_fewshot_vlms@64ac143 main.py: M 300, fraction 0.6, both settings
    c = fewshot("clip_lora", "dtd", 4)
    assert (c["r"], c["alpha"], c["dropout"], c["lr"], c["iters_per_shot"], c["batch_size"],
            c["weight_decay"]) == (2, 1, 0.25, 2e-4, 500, 32, 0.01)
    assert fewshot("clip_lora", variant="release_wd_1e2")["weight_decay"] == 100.0
    assert protocol_config("clip_lora", "base2novel")["release_script"] is False
    t = fewshot("two_stage", "dtd", 4)
    assert (t["iters_per_shot"], t["stage1_fraction"]) == (300, 0.6)
    for method in ("clip_lora", "two_stage"):
        for protocol in PROTOCOLS:
            assert cfg(method, protocol, "dtd", 16) == fewshot(method, "dtd", 16), (method, protocol)
    assert protocol_config("two_stage", "base2novel")["release_script"] is True


def test_encoder_methods_demo_budget_only_on_the_demo_datasets():
    """bench's demo budget (docs/methods.md): fewer iterations / epochs on the demo datasets,
    under every protocol; nowhere else."""
    for dataset in ("demo_digits", "demo_signs"):
        assert fewshot("clip_lora", dataset)["iters_per_shot"] == 10
        assert fewshot("two_stage", dataset)["iters_per_shot"] == 10
        assert cfg("clip_lora", "base2novel", dataset)["iters_per_shot"] == 10
        p = fewshot("promptsrc", dataset)
        assert (p["epochs"], p["gpa_mean"], p["gpa_std"]) == (5, 3, 3)
        b = cfg("promptsrc", "base2novel", dataset)
        assert (b["epochs"], b["gpa_mean"], b["gpa_std"]) == (5, 4, 1)
        assert fewshot("maple", dataset) == fewshot("maple", "caltech101")  # 5 epochs: as released
