"""ProGrad: prompt-aligned gradient (Zhu et al., ICCV 2023; BeierZhu/Prompt-align).

CoOp (methods/coop.py, the same :class:`PromptCore`) whose update only keeps the part of the
cross-entropy gradient that does not conflict with the "general knowledge" direction: the
gradient of the distillation loss from the zero-shot prediction,

    KL = T^2 * mean_i sum_c -p_zs(c | x_i; T) log p(c | x_i; T)

(``trainers/prograd.py`` ``ProGradLoss``: the soft cross-entropy, whose gradient is the KL's).
With ``g`` the CE gradient and ``h`` the KL gradient of the context (Dassl.ProGrad's
``prograd_backward_and_update``, per parameter; the context is the only one)::

    g' = g - lambda * (g . h/|h|) h/|h|   if cos(g, h) < 0,   else g.

The zero-shot prediction uses ``prograd_templates`` (the release's own ``CUSTOM_TEMPLATES``,
which differ from CoOp's on five datasets) and the frozen image features. The context starts as
the release's ``CTX_INIT True``: the words of that template before ``{}``, token embeddings in
the last slots of the ``n_ctx`` (16), zeros before them. Scoring other classes is CoOp's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.schema import ConfigError
from methods import METHODS
from methods.base import PER_EPOCH_VIEWS, Fitted, Task, normalize
from methods.coop import PromptCore, _token_rows, init_context, seed_use, unified_context
from methods.zero_shot import resolve_templates


def project_gradient(g: torch.Tensor, h: torch.Tensor, lam: float) -> torch.Tensor:
    """ProGrad's update from the task gradient ``g`` and the general-direction gradient ``h``
    (computed in float32, returned in ``g``'s dtype)."""
    g32, h32 = g.float().flatten(), h.float().flatten()
    h_unit = h32 / torch.linalg.norm(h32)
    if torch.dot(g32 / torch.linalg.norm(g32), h_unit) < 0:
        g32 = g32 - lam * torch.dot(g32, h_unit) * h_unit
    return g32.view_as(g).to(g.dtype)


def distillation(logits: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """ProGradLoss's KL term: T^2 * soft cross-entropy to softmax(teacher / T)."""
    p = F.softmax(teacher.float() / T, dim=-1)
    return -(p * F.log_softmax(logits.float() / T, dim=-1)).sum(1).mean() * T * T


def init_phrase(cfg: dict, templates: list[str]) -> str | None:
    """The init phrase: ``ctx_init: template`` = the first template's words before ``{}``."""
    phrase = cfg.get("ctx_init") or None
    if phrase != "template":
        return phrase
    words = templates[0].split("{}")[0].strip()
    if not words:
        raise ConfigError(f"prograd: ctx_init 'template' needs words before '{{}}' in the template "
                          f"{templates[0]!r}; set ctx_init to a phrase (e.g. 'a photo of a') or null")
    return words


def make_init(phrase: str | None):
    """PromptCore init: random (CoOp's) without a phrase; else the phrase's token embeddings in
    the last slots of n_ctx and zeros before them (the release's PromptLearner)."""

    def init(cfg, task, tower, width, device, name):
        if phrase is None:
            return init_context({**cfg, "ctx_init": None}, task, tower, width, device, name)
        if cfg["csc"]:
            raise ConfigError("prograd: ctx_init initializes a unified context; it cannot be "
                             "combined with csc=true (set ctx_init: null)")
        tokens = _token_rows(task.backbone.tokenizer, [phrase.replace("_", " ")])[0]
        n_ctx = int(cfg["n_ctx"])
        if len(tokens) > n_ctx:
            raise ConfigError(f"prograd: the init phrase {phrase!r} has {len(tokens)} tokens, "
                             f"more than n_ctx={n_ctx}; raise n_ctx or shorten ctx_init")
        ctx = torch.zeros(n_ctx, width, device=device)
        with torch.no_grad():
            ctx[n_ctx - len(tokens):] = tower.token_embedding(
                torch.tensor(tokens, device=device)).float()
        return ctx, n_ctx, False

    return init


@METHODS.register("prograd", display_name="ProGrad", order=53, family="prompt learning",
                  views=PER_EPOCH_VIEWS,
                  new_classes=unified_context, stochastic=seed_use,
                  description="CoOp with the CE gradient projected off the zero-shot KL "
                              "gradient where they conflict (Zhu et al. 2023)")
def fit(task: Task) -> Fitted:
    cfg = task.config
    templates = resolve_templates(cfg["prograd_templates"], task.templates, task.dataset)
    core = PromptCore(task, "prograd", init=make_init(init_phrase(cfg, templates)))
    with torch.no_grad():
        zs = normalize(task.backbone.class_weights(task.classnames, templates).float())
    zs = zs.to(task.device)
    lam, T = float(cfg["prograd_lambda"]), float(cfg["prograd_T"])
    scale_logits = core.scale_logits
    conflicts = []

    def step(x, y, scale):
        text = core.class_text()
        with torch.no_grad():
            teacher = scale_logits * normalize(x.float()) @ zs.t()
        with core.autocast():
            logits = core.logits_from(x.to(core.dtype), text)
            ce = F.cross_entropy(logits, y)
            kl = distillation(logits, teacher, T)
        g_kl, g_ce = core.ctx_grads([kl, ce], text, scale)
        conflicts.append(bool(torch.dot(g_ce.float().flatten(), g_kl.float().flatten()) < 0))
        core.ctx.grad = project_gradient(g_ce, g_kl, lam)
        return ce

    history = core.train(step)
    rate = sum(conflicts) / len(conflicts)
    return core.fitted(history, prograd_templates=len(templates), conflict_rate=round(rate, 4))
