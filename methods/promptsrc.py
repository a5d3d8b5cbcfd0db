"""PromptSRC (Khattak et al., ICCV 2023; muzairkhattak/PromptSRC), an encoder-tuning method.

Independent deep prompts in both encoders (the release's IVLP design): a text context of 4
tokens initialized from "a photo of a" plus 4 learned tokens entering text layers 1 .. 8, and
4 vision tokens appended after the patch tokens plus 4 entering vision layers 1 .. 8 (depth 9),
N(0, 0.02^2). Self-regulating losses on top of cross-entropy (``trainers/promptsrc.py``
``forward_backward``): L1 between the prompted and the frozen text features (weight 25; the
frozen ones averaged over the release's 60 ImageNet templates), L1 between the prompted and
frozen image features (weight 10), and KL between the prompted and zero-shot logits (sum over
the batch divided by its element count). After every epoch e the prompts are accumulated with
Gaussian weight N(e; mean, std) normalized over the epochs (GPA); the Gaussian-weighted average
is the model evaluated. Dassl's SGD (lr 0.0025, momentum 0.9, weight decay 5e-4), 1 warm-up
epoch at 1e-5, cosine; batch 4. Settings, sources, deviations: configs/methods/promptsrc.yaml,
docs/methods.md.

``for_classes``: the learned prompts with other class names (the release's base2new_test.sh).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods._clip_hooks import TowerHooks
from methods._deep_prompts import (config_epochs, context_init, dassl_train, deep_layers,
                                   DeepPromptModel, prompted_scorer)
from methods._encoder_training import Numerics, normalize
from methods._training import seeded_rng
from methods import METHODS
from methods.tuning import EncoderFitted, EncoderTask


def teacher_templates(choice) -> list[str]:
    """The frozen text features' templates: ``imagenet60`` is the release's IMAGENET_TEMPLATES
    (``trainers/imagenet_templates.py``): CLIP's first 60 ImageNet templates with "a photo of
    a {}." moved to the front; a list gives them directly."""
    if isinstance(choice, list):
        return list(choice)
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    first60 = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES[:60]]
    lead = "a photo of a {}."
    return [lead] + [t for t in first60 if t != lead]


def gpa_weights(epochs: int, mean: float, std: float) -> list[float]:
    """Gaussian weights of epochs 1 .. epochs, normalized to sum to 1 (the release's
    ``get_gauss`` over ``range(1, N + 1)`` divided by the sum), computed as a softmax of the
    log-densities so that a narrow Gaussian far from every epoch stays finite."""
    logs = [-0.5 * ((e - mean) / std) ** 2 for e in range(1, epochs + 1)]
    top = max(logs)
    w = [math.exp(v - top) for v in logs]
    s = sum(w)
    return [v / s for v in w]


@torch.no_grad()
def frozen_text(task: EncoderTask, names: list[str], templates: list[str]) -> torch.Tensor:
    """(C, D): the frozen model's raw text features averaged over ``templates`` (raw, not
    normalized per template: the release's ``fixed_embeddings``)."""
    tok = task.backbone.tokenizer
    model = task.backbone.model
    feats = [model.encode_text(tok([t.format(c) for c in names]).to(task.device)).float()
             for t in templates]
    return torch.stack(feats, dim=1).mean(dim=1)


class PromptSRCModel(DeepPromptModel):
    """The learned prompts: ``ctx`` (text layer 0), ``text_deep`` (layers 1 ..), ``vision``
    (layer 0 appended tokens, then layers 1 ..)."""

    def __init__(self, task: EncoderTask, name: str = "promptsrc"):
        super().__init__(task, name)
        cfg, model = task.config, self.model
        std = float(cfg["init_std"])
        n_t, n_v = int(cfg["n_ctx_text"]), int(cfg["n_ctx_vision"])
        ctx, self.fixed = context_init(task, self.tower, n_t, cfg["ctx_init"], std, name)
        self.ctx = nn.Parameter(ctx)
        w_t = self.tower.token_embedding.weight.shape[1]
        w_v = model.visual.transformer.width
        self.text_layers = deep_layers(cfg["prompt_depth_text"],
                                       len(self.tower.transformer.resblocks))
        depth_v = min(int(cfg["prompt_depth_vision"]), len(model.visual.transformer.resblocks))
        self.vision_layers = list(range(depth_v))
        self.text_deep = nn.ParameterList(
            [nn.Parameter(nn.init.normal_(torch.empty(n_t, w_t, device=task.device), std=std))
             for _ in self.text_layers])
        self.vision = nn.ParameterList(
            [nn.Parameter(nn.init.normal_(torch.empty(n_v, w_v, device=task.device), std=std))
             for _ in self.vision_layers])
        gc = bool(cfg["grad_checkpointing"])
        self.gc, self.cut, self.n_ctx, self.name = gc, bool(cfg["cut_sequence"]), n_t, name

    def text_hooks(self) -> TowerHooks:
        return TowerHooks(prompts=dict(zip(self.text_layers, self.text_deep)),
                          grad_checkpointing=self.gc)

    def vision_hooks(self) -> TowerHooks:
        return TowerHooks(prompts=dict(zip(self.vision_layers, self.vision)),
                          grad_checkpointing=self.gc)



train_epochs = config_epochs


def srd_loss(logits, text_n, fixed_n, img_n, zs_img_n, zs_logits, labels, cfg) -> torch.Tensor:
    """The release's loss: CE + (KL of the logits + 25 * L1 text + 10 * L1 image)."""
    ce = F.cross_entropy(logits, labels)
    l_text = F.l1_loss(text_n, fixed_n, reduction="mean") * float(cfg["text_loss_weight"])
    l_img = F.l1_loss(img_n, zs_img_n, reduction="mean") * float(cfg["image_loss_weight"])
    l_kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zs_logits, dim=1),
                    reduction="sum", log_target=True) / logits.numel()
    return ce + (l_kl + l_text + l_img)


def train(task: EncoderTask, prompts: PromptSRCModel | None = None
          ) -> tuple[PromptSRCModel, Numerics, list[float], list[float]]:
    """PromptSRC's training (``forward_backward`` over Dassl's loop, then GPA): the trained
    prompts (GPA applied), the numerics, the mean loss of every epoch, the GPA weights.
    ``prompts``: start from these (benchmarks/equivalence.py copies them into the release);
    by default they are drawn from the seeded RNG."""
    cfg = task.config
    numerics = Numerics(str(cfg["precision"]), task.device, "promptsrc")
    scale = float(task.backbone.logit_scale)
    with seeded_rng(task.seed, task.device):
        prompts = prompts if prompts is not None else PromptSRCModel(task)
        fixed_n = normalize(frozen_text(task, task.classnames,
                                        teacher_templates(cfg["teacher_templates"])))
        text = prompts.train_text(task)
        labels = task.train.labels
        model = task.backbone.model

        def loss_of(epoch, rows):
            images = task.train.crops(epoch, rows)
            with numerics.autocast():
                text_n = normalize(text.forward().float())
                img_n = normalize(prompts.image_features(images).float())
                with torch.no_grad():
                    zs_n = normalize(model.encode_image(images).float())
            logits = scale * img_n @ text_n.t()
            zs_logits = scale * zs_n @ fixed_n.t()
            loss = srd_loss(logits, text_n, fixed_n, img_n, zs_n, zs_logits,
                            labels[rows.to(labels.device)], cfg)
            return loss, text.backward

        weights = gpa_weights(int(cfg["epochs"]), float(cfg["gpa_mean"]), float(cfg["gpa_std"]))
        params = list(prompts.parameters())
        gpa = [torch.zeros_like(p) for p in params]

        def accumulate(epoch: int) -> None:
            with torch.no_grad():
                for acc, p in zip(gpa, params):
                    acc.add_(p.detach() * weights[epoch])

        history = dassl_train(task, params, loss_of, numerics, on_epoch_end=accumulate)
        with torch.no_grad():
            for acc, p in zip(gpa, params):
                p.copy_(acc)
    return prompts, numerics, history, weights


@METHODS.register("promptsrc", kind="encoder", needs_vit=True, epochs=train_epochs,
                  new_classes=True, display_name="PromptSRC", order=92, family="encoder tuning",
                  description="self-regulated deep vision-language prompts (Khattak et al. 2023)")
def fit(task: EncoderTask) -> EncoderFitted:
    prompts, numerics, history, weights = train(task)
    info = {"precision": numerics.precision, "epochs": len(history),
            "text_prompt_layers": [0, *prompts.text_layers],
            "vision_prompt_layers": prompts.vision_layers, "gpa_weights": weights,
            "trainable_params": sum(p.numel() for p in prompts.parameters()),
            "train_loss_first_epoch": history[0], "train_loss_last_epoch": history[-1]}
    return EncoderFitted(prompted_scorer(task, prompts, numerics, task.classnames), info,
                         lambda names, templates, dataset:
                         prompted_scorer(task, prompts, numerics, list(names)))
