"""
The models the scripts build by name, as sets of GPTConfig fields (model.py has their meaning and
defaults, never repeated here): the backbones, GPT-2's block and Pythia's (docs/pythia.md), and the
study's three models, GPT, ContextLM and a parameter-matched GPT (bench.py and compare.py's arms).
"""

from dataclasses import fields

from configurator import UserError
from model import GPTConfig

DEFAULTS = {f.name: f.default for f in fields(GPTConfig)}

# GPTConfig's fields that act on the context path only: a GPT ignores them
CONTEXT_OPTIONS = {k: DEFAULTS[k] for k in ("context_scale", "context_gain_init", "predictor_init",
                                            "context_dropout", "predictor_lr_scale", "context_gain_per_channel",
                                            "context_gain_lr_scale", "context_gain_weight_decay")}

# The Transformer blocks the study runs on, set all at once by bench.py's and compare.py's
# --backbone. GPT-2's is GPTConfig's defaults. bias is not among them: train.py's GPT-2 recipe has
# none, Pythia has them (its configs say bias = True).
PYTHIA = dict(rotary_pct=0.25, parallel_residual=True, tie_embeddings=False, gelu_approximate="none")
BACKBONE_FIELDS = ("rotary_pct", "rotary_base", "parallel_residual", "tie_embeddings", "gelu_approximate",
                   "layer_norm_eps")
BACKBONES = {"gpt2": {k: DEFAULTS[k] for k in BACKBONE_FIELDS},
             "pythia": {k: PYTHIA.get(k, DEFAULTS[k]) for k in BACKBONE_FIELDS}}


def backbone_fields(name):
    """The GPTConfig fields of the backbone called name (a key of BACKBONES)."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}': use one of {', '.join(BACKBONES)}")
    return dict(BACKBONES[name])


def model_variants(c):
    """The three models the study compares: {name: the GPTConfig fields that set them apart}, from
    c's n_layer (L), n_ctx_layer (P), chunk_size (w) and n_enc_layer; all else is the same for all.
        gpt        L token layers: the GPT-2 baseline
        contextlm  the same L token layers + a P-layer context predictor
        gpt+{P}L   L + P token layers: about as many parameters as contextlm, all spent on tokens"""
    L, P, w = c["n_layer"], c["n_ctx_layer"], c["chunk_size"]  # P >= 1 (bench's and compare's CHECKS)
    # chunk_size and n_enc_layer do nothing without a predictor: the GPTs keep w and no encoder
    # (and the default context options, so that a study of another option reuses their runs)
    gpt = dict(n_ctx_layer=0, chunk_size=w, n_enc_layer=0, **CONTEXT_OPTIONS)
    return {"gpt": dict(n_layer=L, **gpt),
            "contextlm": dict(n_layer=L, n_ctx_layer=P, chunk_size=w, n_enc_layer=c["n_enc_layer"],
                              **{k: c.get(k, default) for k, default in CONTEXT_OPTIONS.items()}),
            f"gpt+{P}L": dict(n_layer=L + P, **gpt)}
