"""
Checkpoints and the other weights a script can start from. A train.py checkpoint is a torch file
holding a dict: 'model' (the state_dict), 'model_args' (GPTConfig's fields), 'meta' (the dataset's
meta.json: its tokenizer) and, to resume, the training state. Hugging Face weights load through
pretrained.py. load_run is the one way scripts load any of them.
"""

import glob
import json
import os
import re
from contextlib import contextmanager
from dataclasses import fields

import torch

from configurator import UserError, atomic_write
from model import FIELDS_BEFORE_THEY_EXISTED, GPT, GPTConfig
from pretrained import from_pretrained, hf_architecture


# ---------------------------------------------------------------- train.py's checkpoints

def save_checkpoint(checkpoint, path):
    """Write a checkpoint atomically (atomic_write): a crash or a full disk leaves the previous one intact."""
    atomic_write(path, lambda f: torch.save(checkpoint, f), "; any previous checkpoint there is unchanged")


def checkpoint_path(path):
    """The checkpoint file of a run directory (DIR/ckpt.pt), or path itself if it names a file
    (or a .pt file); a one-line error if there is none."""
    if os.path.isfile(path):
        return path
    run_dir = os.path.dirname(path) if path.endswith(".pt") else path
    path = path if path.endswith(".pt") else os.path.join(path, "ckpt.pt")
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(run_dir, "config.json")):
            raise UserError(f"no checkpoint at {path}: {run_dir} holds a Hugging Face model (config.json), "
                            f"which sample.py loads with --init_from={run_dir}")
        raise UserError(f"no checkpoint at {path}: train one with `python train.py --out_dir={run_dir}` "
                        "or fix the path")
    return path


def load_checkpoint(path, device="cpu", mmap=False):
    """A checkpoint written by train.py: a dict with 'model' (the state_dict) and 'model_args'
    (GPTConfig's fields). Never unpickles arbitrary objects (weights_only). Anything else is
    refused in one line that says what the file is instead, and what to do."""
    path = checkpoint_path(path)
    again = "restore it from a good copy or train again"
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): fix its permissions")
    if kind := file_kind(head):
        raise UserError(f"{path} is not a torch file: {kind}; {again}")
    try:
        # mmap: tensors stay on disk until read (a zip archive only; torch's old pickle format has no index)
        checkpoint = torch.load(path, map_location=device, weights_only=True, mmap=mmap and head.startswith(b"PK"))
    except Exception as e:  # torch reports a damaged file with many exception types
        if code := re.search(r"Unsupported global: GLOBAL (\S+)", str(e)):
            raise UserError(f"refusing to load {path}: it holds pickled objects that could run code ({code[1]}), "
                            "which train.py never writes: delete it, or re-save its tensors alone if you trust "
                            "where it came from")
        why = "its end is missing" if "central directory" in str(e) or isinstance(e, EOFError) else type(e).__name__
        raise UserError(f"cannot read {path}: the file is truncated or corrupt ({why}); {again}")
    if isinstance(checkpoint, dict) and checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
        folder = os.path.dirname(path) or "."
        fix = (f"{folder} is a Hugging Face model (config.json): load it with --init_from={folder}"
               if os.path.isfile(os.path.join(folder, "config.json")) else
               "save it as train.py does: {'model': the weights, 'model_args': GPTConfig's fields, 'meta': "
               "the dataset's meta.json}")
        raise UserError(f"{path} holds bare weights (a state_dict of {len(checkpoint)} tensors), not a checkpoint "
                        f"with model_args: {fix}")
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict)
            and isinstance(checkpoint.get("model_args"), dict)):
        found = (f"a dict of {', '.join(map(repr, list(checkpoint)[:6]))}" if isinstance(checkpoint, dict)
                 else f"a {type(checkpoint).__name__}")
        raise UserError(f"{path} is not a ContextLM checkpoint: it holds {found}, not the 'model' and 'model_args' "
                        "that train.py writes; load a checkpoint written by train.py")
    return checkpoint


def file_kind(head):
    """None if a file whose first bytes are `head` may be what torch.save writes (a zip archive,
    or a pickle: its old format); else what it looks like, in words, for an error message."""
    if not head:
        return "it is empty (0 bytes)"
    if len(head) > 8 and head[8:9] == b"{":  # 8 bytes of header length, then the JSON header
        return "it looks like a safetensors file (Hugging Face weights: load their folder with --init_from=DIR)"
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return None
    try:
        text = head.decode("utf-8")
        if all(ch.isprintable() or ch.isspace() for ch in text):
            return f"it is text, beginning {text[:40]!r}"
    except UnicodeDecodeError:  # (text whose 64th byte cuts a character is taken for binary: harmless)
        pass
    return f"its first bytes are {head[:8].hex(' ')}, neither a zip archive (torch.save) nor a pickle"


def run_meta(checkpoint, path="checkpoint"):
    """The meta.json of the dataset a train.py checkpoint was trained on: which tokenizer its
    token ids are in."""
    if "meta" not in checkpoint:
        raise UserError(f"{path}: the checkpoint does not say which tokenizer it uses (no 'meta'): "
                        "train it again with train.py")
    return checkpoint["meta"]


def model_from_checkpoint(checkpoint, path="checkpoint"):
    """Rebuild the GPT a checkpoint describes and load its weights."""
    try:  # a field the checkpoint predates keeps the meaning it had then
        model = GPT(GPTConfig(**(FIELDS_BEFORE_THEY_EXISTED | checkpoint["model_args"])))
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: invalid model_args ({e})")
    # torch.compile prefixes parameter names with '_orig_mod.'
    state_dict = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UserError(f"{path}: weights do not fit the architecture in model_args ({first[-1].strip()})")
    return model


# ---------------------------------------------------------------- Hugging Face weights (GPT-2, Pythia)

@contextmanager
def hf_errors(name_or_dir):
    """Loading Hugging Face weights: the usual failures (no transformers, no weights, weights that
    do not fit, a damaged file) become one line. transformers' table of freshly initialised
    weights and its bar of weights loaded would precede the error: they are kept quiet meanwhile."""
    try:
        from safetensors import SafetensorError
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise UserError(f"init_from={name_or_dir} needs transformers: pip install transformers")
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    except (OSError, ValueError, SafetensorError) as e:
        raise UserError(f"cannot load GPT-2 weights or Pythia (GPT-NeoX) weights '{name_or_dir}': "
                        f"{str(e).strip().splitlines()[0]}")
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def model_from_hf(name_or_dir, override_args):
    """pretrained.from_pretrained (GPT-2 or Pythia weights), failures as one line; a ContextLM folder that
    export.py wrote loads as it is (model_from_export)."""
    with hf_errors(name_or_dir):
        if hf_architecture(name_or_dir)[1] == EXPORT_MODEL_TYPE:
            return model_from_export(name_or_dir, override_args)
        return from_pretrained(name_or_dir, override_args)


# Folders that export.py writes (docs/export.md): config.json says which tokenizer the run read in
# EXPORT_TOKENIZER (meta.json's words), and a ContextLM's model_type is EXPORT_MODEL_TYPE, its
# GPTConfig's fields beside it (modeling_contextlm.ContextLMConfig).
EXPORT_MODEL_TYPE = "contextlm"
EXPORT_TOKENIZER = "contextlm_tokenizer"


def model_from_export(folder, override_args):
    """The ContextLM in a folder that export.py wrote, as it is: GPTConfig's fields from its
    config.json, the weights from its safetensors (the wrapper's 'model.' prefix off; a tied head
    is saved once, as wte). Of override_args only dropout applies, as when fine-tuning a run."""
    from safetensors.torch import load_file
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    weights = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):  # one file, or the shards of a large model
        weights |= {k.removeprefix("model."): v for k, v in load_file(path).items()}
    if config.get("tie_embeddings") and "transformer.wte.weight" in weights:
        weights.setdefault("lm_head.weight", weights["transformer.wte.weight"])
    model_args = {f.name: config[f.name] for f in fields(GPTConfig) if f.name in config}
    if "dropout" in override_args:
        model_args["dropout"] = override_args["dropout"]
    return model_from_checkpoint({"model": weights, "model_args": model_args}, folder)


def exported_tokenizer(folder):
    """meta.json's description of the tokenizer in a folder that export.py wrote (config.json's
    EXPORT_TOKENIZER; a BPE's files are in the folder), or None for any other name or folder."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        meta = json.load(f).get(EXPORT_TOKENIZER)
    return meta | {"tokenizer_path": folder} if meta and meta["tokenizer"] == "neox" else meta


def pretrained_tokenizer(name_or_dir):
    """meta.json's description of the tokenizer a Hugging Face model (from_pretrained's
    name_or_dir) reads: GPT-2's BPE for a GPT-2, for a GPT-NeoX (Pythia) the BPE in its own
    repository or folder; for a folder that export.py wrote, the one its config.json names."""
    with hf_errors(name_or_dir):
        name, arch = hf_architecture(name_or_dir)
        exported = exported_tokenizer(name_or_dir)
    if exported:
        return exported
    if arch not in ("gpt2", "gpt_neox"):
        raise UserError(f"{name_or_dir} holds a model of type {arch!r}; this repo loads 'gpt2' (GPT-2) and "
                        "'gpt_neox' (Pythia) models")
    return {"tokenizer": "gpt2"} if arch == "gpt2" else {"tokenizer": "neox", "tokenizer_path": name}


# ---------------------------------------------------------------- one way to load a run

def is_run(spec):
    """Whether spec names a train.py run: a folder holding ckpt.pt, or a .pt file."""
    return spec.endswith(".pt") or os.path.isfile(os.path.join(spec, "ckpt.pt"))


def is_pretrained(spec):
    """Whether spec names Hugging Face weights that from_pretrained loads: a GPT-2 or Pythia
    name (gpt2-medium, pythia-160m, EleutherAI/pythia-1b) or a local folder with a config.json. A
    train.py run of the same name wins (is_run)."""
    names = ("gpt2", "pythia-", "EleutherAI/pythia-")
    return not is_run(spec) and (spec.startswith(names) or os.path.isfile(os.path.join(spec, "config.json")))


def load_run(spec, override_args=None, hf=True):
    """(model on the CPU, meta, checkpoint) of spec: a train.py run (is_run; checkpoint is its
    dict) or else, with hf, Hugging Face weights (checkpoint is None) as published, with
    no context predictor. meta describes the tokenizer as a dataset's meta.json does. override_args:
    GPTConfig fields to set instead of the saved ones (a run's dropout; Hugging Face weights'
    dropout, chunk_size, n_ctx_layer, n_enc_layer)."""
    override_args = override_args or {}
    if hf and not is_run(spec):
        meta = pretrained_tokenizer(spec)
        return model_from_hf(spec, {"n_ctx_layer": 0} | override_args), meta, None
    checkpoint = load_checkpoint(spec)  # (a spec that is neither gets checkpoint_path's one-line error)
    meta = run_meta(checkpoint, spec)
    checkpoint["model_args"] |= override_args
    return model_from_checkpoint(checkpoint, spec), meta, checkpoint
