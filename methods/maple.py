"""MaPLe (Khattak et al., CVPR 2023; muzairkhattak/multimodal-prompt-learning), an
encoder-tuning method.

Multi-modal prompts coupled from the text side (``trainers/maple.py``): a text context of 2
tokens initialized from the first two tokens of "a photo of a" (the phrase's other tokens, "of
a", stay fixed before the class name), learned text tokens entering text layers 1 .. 8 (depth
9, N(0, 0.02^2)), and vision prompts computed from them by linear coupling functions: the
context through ``proj`` (text width -> vision width) is appended after the patch tokens, and
deep text prompt j through its own linear layer enters vision layer j. The coupling layers
start identical (the release deep-copies one initialized layer). Cross-entropy on
``logit_scale * cos``; Dassl's SGD (lr 0.0035, momentum 0.9, weight decay 5e-4), 1 warm-up
epoch at 1e-5, cosine, 5 epochs, batch 4; the last epoch's model. ViT only (the release's RN50
path crashes, its issue #49). Settings, sources, deviations: configs/methods/maple.yaml,
docs/methods.md.

``for_classes``: the learned prompts with other class names.
"""

from __future__ import annotations

import copy

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


class MaPLeModel(DeepPromptModel):
    """``ctx`` (n, text width), ``proj`` (its vision prompt), ``text_deep[j]`` and
    ``couplings[j]`` (text prompt of layer j + 1 and its vision counterpart)."""

    def __init__(self, task: EncoderTask, name: str = "maple"):
        super().__init__(task, name)
        cfg, model = task.config, self.model
        n = int(cfg["n_ctx"])
        w_t = self.tower.token_embedding.weight.shape[1]
        w_v = model.visual.transformer.width
        depth = int(cfg["prompt_depth"])
        self.proj = nn.Linear(w_t, w_v).to(task.device)
        ctx, self.fixed = context_init(task, self.tower, n, cfg["ctx_init"], float(cfg["init_std"]),
                                       name)
        self.ctx = nn.Parameter(ctx)
        self.text_deep = nn.ParameterList(
            [nn.Parameter(nn.init.normal_(torch.empty(n, w_t, device=task.device),
                                          std=float(cfg["init_std"])))
             for _ in range(max(depth - 1, 0))])
        one = nn.Linear(w_t, w_v).to(task.device)
        self.couplings = nn.ModuleList([copy.deepcopy(one) for _ in range(max(depth - 1, 0))])
        self.text_layers = deep_layers(depth, len(self.tower.transformer.resblocks))
        self.vision_layers = deep_layers(depth, len(model.visual.transformer.resblocks))
        self.n_ctx, self.name = n, name
        self.gc, self.cut = bool(cfg["grad_checkpointing"]), bool(cfg["cut_sequence"])

    def text_hooks(self) -> TowerHooks:
        return TowerHooks(prompts={i: self.text_deep[i - 1] for i in self.text_layers},
                          grad_checkpointing=self.gc)

    def vision_hooks(self) -> TowerHooks:
        prompts = {0: self.proj(self.ctx)}
        for i in self.vision_layers:
            prompts[i] = self.couplings[i - 1](self.text_deep[i - 1])
        return TowerHooks(prompts=prompts, grad_checkpointing=self.gc)



train_epochs = config_epochs


def train(task: EncoderTask, prompts: MaPLeModel | None = None
          ) -> tuple[MaPLeModel, Numerics, list[float]]:
    """MaPLe's training (``forward_backward`` over Dassl's loop): the trained prompts, the
    numerics, the mean loss of every epoch. ``prompts``: start from these (by default drawn
    from the seeded RNG)."""
    cfg = task.config
    numerics = Numerics(str(cfg["precision"]), task.device, "maple")
    scale = float(task.backbone.logit_scale)
    with seeded_rng(task.seed, task.device):
        prompts = prompts if prompts is not None else MaPLeModel(task)
        text = prompts.train_text(task)
        labels = task.train.labels

        def loss_of(epoch, rows):
            images = task.train.crops(epoch, rows)
            with numerics.autocast():
                text_n = normalize(text.forward().float())
                img_n = normalize(prompts.image_features(images).float())
            logits = scale * img_n @ text_n.t()
            return F.cross_entropy(logits, labels[rows.to(labels.device)]), text.backward

        history = dassl_train(task, list(prompts.parameters()), loss_of, numerics)
    return prompts, numerics, history


@METHODS.register("maple", kind="encoder", needs_vit=True, epochs=train_epochs,
                  new_classes=True, display_name="MaPLe", order=91, family="encoder tuning",
                  description="multi-modal prompts, vision coupled from text (Khattak et al. 2023)")
def fit(task: EncoderTask) -> EncoderFitted:
    prompts, numerics, history = train(task)
    info = {"precision": numerics.precision, "epochs": len(history),
            "text_prompt_layers": [0, *prompts.text_layers],
            "vision_prompt_layers": [0, *prompts.vision_layers],
            "trainable_params": sum(p.numel() for p in prompts.parameters()),
            "train_loss_first_epoch": history[0], "train_loss_last_epoch": history[-1]}
    return EncoderFitted(prompted_scorer(task, prompts, numerics, task.classnames), info,
                         lambda names, templates, dataset:
                         prompted_scorer(task, prompts, numerics, list(names)))
