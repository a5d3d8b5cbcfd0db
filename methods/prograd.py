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
the release's ``CTX_INIT True`` (``PromptLearner``): the phrase of that template before ``{}``;
its length M_init is its number of space-separated words (``ctx_init_count: words``), its first
M_init tokens initialize the last M_init of the ``n_ctx`` (16) slots, zeros before them, and any
tokens after those (a comma makes "a type of pet, a photo of a" 8 words but 9 tokens) stay fixed
between the context and the class name. ``ctx_init_count: tokens`` puts every token of the
phrase in the context instead. Scoring other classes is CoOp's, with the same fixed tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.base.schema import ConfigError
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


COUNTS = ("words", "tokens")


def split_phrase(tokenizer, phrase: str, count: str) -> tuple[list[int], list[int]]:
    """(context token ids, fixed token ids) of the init phrase. ``words``: the release's
    ``prompt_n_ctx = len(ctx_init.split(" "))`` tokens start the context and the phrase's other
    tokens stay fixed after it; ``tokens``: every token starts the context, none is fixed."""
    if count not in COUNTS:
        raise ConfigError(f"prograd: ctx_init_count must be one of {', '.join(COUNTS)}, "
                          f"not {count!r}")
    phrase = phrase.replace("_", " ")
    tokens = _token_rows(tokenizer, [phrase])[0]
    if count == "tokens":
        return tokens, []
    words = len(phrase.split(" "))
    if words > len(tokens):
        raise ConfigError(f"prograd: the init phrase {phrase!r} has {words} space-separated words "
                          f"but {len(tokens)} tokens; remove the extra spaces or set "
                          f"ctx_init_count: tokens")
    return tokens[:words], tokens[words:]


def make_init(ctx_tokens: list[int] | None):
    """PromptCore init: random (CoOp's) without init tokens; else their token embeddings in the
    last slots of n_ctx and zeros before them (the release's PromptLearner)."""

    def init(cfg, task, tower, width, device, name):
        if ctx_tokens is None:
            return init_context({**cfg, "ctx_init": None}, task, tower, width, device, name)
        if cfg["csc"]:
            raise ConfigError("prograd: ctx_init initializes a unified context; it cannot be "
                             "combined with csc=true (set ctx_init: null)")
        n_ctx = int(cfg["n_ctx"])
        if len(ctx_tokens) > n_ctx:
            raise ConfigError(f"prograd: the init phrase puts {len(ctx_tokens)} tokens in the "
                             f"context, more than n_ctx={n_ctx}; raise n_ctx or shorten ctx_init")
        ctx = torch.zeros(n_ctx, width, device=device)
        with torch.no_grad():
            ctx[n_ctx - len(ctx_tokens):] = tower.token_embedding(
                torch.tensor(ctx_tokens, device=device)).float()
        return ctx, n_ctx, False

    return init


def prompt_core(task: Task, templates: list[str]) -> PromptCore:
    """ProGrad's trainable model before any step: the context initialized from the template's
    phrase (or at random) and the fixed tokens between it and the class name."""
    cfg = task.config
    phrase = init_phrase(cfg, templates)
    ctx_tokens, fixed = (split_phrase(task.backbone.tokenizer, phrase,
                                      str(cfg.get("ctx_init_count", "words")))
                         if phrase is not None else (None, []))
    return PromptCore(task, "prograd", init=make_init(ctx_tokens), fixed=fixed)


@METHODS.register("prograd", display_name="ProGrad", order=53, family="prompt learning",
                  views=PER_EPOCH_VIEWS,
                  new_classes=unified_context, stochastic=seed_use,
                  description="CoOp with the CE gradient projected off the zero-shot KL "
                              "gradient where they conflict (Zhu et al. 2023)")
def fit(task: Task) -> Fitted:
    cfg = task.config
    templates = resolve_templates(cfg["prograd_templates"], task.templates, task.dataset)
    core = prompt_core(task, templates)
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
    return core.fitted(history, prograd_templates=len(templates), conflict_rate=round(rate, 4),
                       fixed_tokens=len(core.fixed))
