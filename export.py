"""
Export a train.py run as a Hugging Face transformers model folder (docs/export.md): a ContextLM that
AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True) loads with torch and transformers alone
(modeling_contextlm.py beside a verbatim copy of model.py), a GPT as a stock GPT2LMHeadModel or
GPTNeoXForCausalLM. The folder is renamed into place once whole and checked; --overwrite=True replaces
only a folder export.py wrote.

    python export.py --out_dir=out-contextlm-owt --hf_dir=hf-contextlm-owt
    python export.py --out_dir=out-gpt2-owt --hf_dir=hf-gpt2-owt --overwrite=True
"""

import dataclasses
import json
import os
import shutil
import sys

import torch

from checkpoint import EXPORT_TOKENIZER, checkpoint_path, load_run
from configurator import NOT_EMPTY, UserError, new_folder, one_of, parse_config, run_main, why_not_own
from variants import BACKBONES
from dataset import Tokenizer
from pretrained import GPT2_TRANSPOSED, NEOX_GELU, neox_name

DEFAULTS = dict(
    out_dir="out",     # the train.py run to export (its ckpt.pt)
    hf_dir="",         # the folder to write
    overwrite=False,   # replace hf_dir if it holds an earlier export (never a folder export.py did not write)
)

CHECKS = dict(out_dir=NOT_EMPTY, overwrite=one_of(True, False))  # (hf_dir: main)

ROOT = os.path.dirname(os.path.abspath(__file__))
# a ContextLM's remote code: the transformers wrapper, and the model it wraps, copied as they are
REMOTE_CODE = ("modeling_contextlm.py", "model.py")
AUTO_MAP = {"AutoConfig": "modeling_contextlm.ContextLMConfig",
            "AutoModelForCausalLM": "modeling_contextlm.ContextLMForCausalLM"}
# GPT-2's BPE, the two files tiktoken reads it from (tiktoken_ext/openai_public.py), which are also
# Hugging Face's GPT-2 tokenizer: encoder.json is its vocab.json, vocab.bpe its merges.txt
GPT2_BPE = {"vocab.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
            "merges.txt": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"}
EOT = "<|endoftext|>"


# ---------------------------------------------------------------- the model

def stock_model(model, special):
    """The stock transformers model that a GPT (n_ctx_layer=0) is, new (stock_weights fills it):
    GPT2LMHeadModel on GPT-2's block (what pretrained.gpt2_weights reads back), GPTNeoXForCausalLM on a
    rotary one; None for a ContextLM, or a GPT on another block (learned positions with Pythia's
    residual, head or GELU). special: the end-of-text ids for the config."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM
    c = model.config
    gelu = {approximate: act for act, approximate in NEOX_GELU.items()}  # gelu_approximate -> hidden_act
    if c.n_ctx_layer == 0 and all(getattr(c, k) == v for k, v in BACKBONES["gpt2"].items()):
        return GPT2LMHeadModel(GPT2Config(n_positions=c.block_size, vocab_size=c.vocab_size, n_layer=c.n_layer,
                                          n_head=c.n_head, n_embd=c.n_embd, resid_pdrop=c.dropout,
                                          embd_pdrop=c.dropout, attn_pdrop=c.dropout, **special))
    if c.n_ctx_layer == 0 and c.rotary_pct > 0:
        return GPTNeoXForCausalLM(GPTNeoXConfig(
            max_position_embeddings=c.block_size, vocab_size=c.vocab_size, num_hidden_layers=c.n_layer,
            num_attention_heads=c.n_head, hidden_size=c.n_embd, intermediate_size=4 * c.n_embd,
            rotary_pct=c.rotary_pct, rotary_emb_base=c.rotary_base, use_parallel_residual=c.parallel_residual,
            tie_word_embeddings=c.tie_embeddings, hidden_act=gelu[c.gelu_approximate], layer_norm_eps=c.layer_norm_eps,
            attention_dropout=c.dropout, hidden_dropout=c.dropout, **special))
    return None


def stock_weights(model, hf):
    """The GPT's weights in the names and layouts of hf, the stock model stock_model built for it:
    pretrained.gpt2_weights and pretrained.neox_weights run backwards, each of hf's names mapped to ours.
    A bias that a GPT without biases (bias=False) lacks is zeros: a zero bias is no bias."""
    neox = hf.config.model_type == "gpt_neox"
    ours, nh = model.state_dict(), model.config.n_head
    weights = {}
    for k, v in hf.state_dict().items():
        name = neox_name(k) if neox else k
        w = torch.zeros_like(v) if name.endswith(".bias") and name not in ours else ours[name]
        if not neox and k.endswith(GPT2_TRANSPOSED):
            w = w.t()  # GPT-2 stores its Linear weights as Conv1D
        if neox and ".attn.c_attn." in name:  # our rows (3, nh, hs) -> GPT-NeoX's (nh, 3, hs)
            w = w.view(3, nh, -1, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
        weights[k] = w
    return weights


def contextlm_model(model, folder, special):
    """A ContextLMForCausalLM holding the model's weights, built by the remote code already copied
    into folder (so that what is written is what will load); its config carries auto_map."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    hf_class = get_class_from_dynamic_module(AUTO_MAP["AutoModelForCausalLM"], folder)
    config = hf_class.config_class(**dataclasses.asdict(model.config), auto_map=AUTO_MAP, use_cache=False,
                                   **special)
    hf = hf_class(config)
    hf.model.load_state_dict(model.state_dict())
    return hf


# ---------------------------------------------------------------- the tokenizer

def save_tokenizer(tokenizer, folder, block_size):
    """Write the run's tokenizer (dataset.Tokenizer) into folder as transformers reads it; what was
    written, in words."""
    from transformers import GPT2TokenizerFast, PreTrainedTokenizerFast
    if tokenizer.kind == "gpt2":
        from tiktoken.load import read_file_cached  # the files tiktoken has cached for the run's own encoding
        for name, url in GPT2_BPE.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(read_file_cached(url))
        hf_tokenizer = GPT2TokenizerFast.from_pretrained(folder, model_max_length=block_size)
    elif tokenizer.kind == "neox":
        hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer.enc, bos_token=EOT, eos_token=EOT,
                                               unk_token=EOT, model_max_length=block_size)
    else:
        return (f"no tokenizer: a character-level run's {tokenizer.vocab_size} characters are no Hugging Face "
                f"tokenizer (config.json's {EXPORT_TOKENIZER} lists them, for sample.py and eval.py)")
    hf_tokenizer.save_pretrained(folder)
    return f"tokenizer: {'GPT-2' if tokenizer.kind == 'gpt2' else 'the NeoX'} BPE, {type(hf_tokenizer).__name__}"


# ---------------------------------------------------------------- the folder

# Every file export.py writes (save_model: the remote code, then save_pretrained's config, weights,
# a large model's shards and their index; save_tokenizer: GPT-2's BPE files, then the tokenizer's
# save_pretrained, older transformers' files included): all that --overwrite=True ever removes
EXPORT_FILES = ("config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors",
                "model.safetensors.index.json", *REMOTE_CODE, *GPT2_BPE, "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "added_tokens.json")


def is_export_config(path):
    """Whether the config.json at path is one export.py wrote: it names the run's tokenizer
    (EXPORT_TOKENIZER), whatever the model, in this version and the earlier ones."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and EXPORT_TOKENIZER in config


def check_target(target, overwrite, ckpt):
    """Refuse a target folder that export.py must not write: a file, one that holds the checkpoint
    ckpt being exported, one that holds anything export.py did not write (configurator.why_not_own:
    only its EXPORT_FILES, its config.json among them), and an earlier export unless overwrite. A
    missing or empty folder is written."""
    if not target:
        raise UserError("name the folder to write: --hf_dir=DIR")
    if os.path.exists(target) and not os.path.isdir(target):
        raise UserError(f"--hf_dir={target} is a file: give a folder to write the model into")
    if os.path.realpath(ckpt).startswith(os.path.realpath(target) + os.sep):
        raise UserError(f"--hf_dir={target} holds the run being exported ({ckpt}): give another folder")
    if why := why_not_own(target, EXPORT_FILES, ("config.json", is_export_config)):
        raise UserError(f"--hf_dir={target} is not a folder that export.py wrote ({why}): choose another --hf_dir, "
                        "or empty or remove it yourself")
    if os.path.isdir(target) and os.listdir(target) and not overwrite:
        raise UserError(f"--hf_dir={target} is not empty: give a new folder, or --overwrite=True to replace it")


def save_model(model, tokenizer, folder):
    """Write the model into folder as transformers reads it: a stock model where the GPT is one,
    else the ContextLM's remote code; config.json names the run's tokenizer (dataset.Tokenizer).
    What was written, in words."""
    from transformers import GenerationConfig
    eot = tokenizer.eot_token
    special = dict(bos_token_id=eot, eos_token_id=eot)
    hf, generation = stock_model(model, special), {}
    if hf is not None:
        hf.load_state_dict(stock_weights(model, hf))
        what = f"a stock {type(hf).__name__} (no remote code)"
    else:
        for name in REMOTE_CODE:
            shutil.copyfile(os.path.join(ROOT, name), os.path.join(folder, name))
        hf, generation = contextlm_model(model, folder, special), {"use_cache": False}  # no cache: recompute
        what = "a ContextLM (modeling_contextlm.py and model.py: load it with trust_remote_code=True)"
    meta = {"tokenizer": tokenizer.kind}
    if tokenizer.kind == "char":
        meta |= {"vocab_size": tokenizer.vocab_size, "chars": tokenizer.chars}
    setattr(hf.config, EXPORT_TOKENIZER, meta)  # the tokenizer sample.py and eval.py read the folder with
    # as sample.py generates: never a padding id past the tokenizer's (train.py pads BPE vocabularies to 64)
    padding = list(range(tokenizer.vocab_size, model.config.vocab_size))
    hf.generation_config = GenerationConfig(**special, suppress_tokens=padding or None, **generation)
    hf.save_pretrained(folder)
    return f"{what}, {sum(p.numel() for p in model.parameters()) / 1e6:.4g}M parameters"


def loaded_difference(model, folder):
    """(the largest difference between the model's logits and those of the folder's model as
    transformers loads it, T): over a window of T random tokens, the folder checked before it
    takes its name."""
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    T = min(model.config.block_size, 63)  # (63: no multiple of the usual chunk sizes)
    idx = torch.randint(model.config.vocab_size, (1, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (model(idx, all_logits=True)[0] - hf(idx).logits).abs().max().item(), T


def main():
    c = parse_config(DEFAULTS, sys.argv[1:], CHECKS)
    ckpt = checkpoint_path(c["out_dir"])  # a run that is not there fails here, before any work
    check_target(c["hf_dir"], c["overwrite"], ckpt)
    try:
        from transformers.utils import logging as hf_logging  # optional dependency, only needed here
    except ImportError:
        raise UserError("export.py needs transformers: pip install transformers")
    hf_logging.set_verbosity_error()  # no progress bars or notices between our lines: an error is one line
    hf_logging.disable_progress_bar()
    model, meta, _ = load_run(ckpt, hf=False)
    model, tokenizer = model.eval(), Tokenizer(meta)
    with new_folder(c["hf_dir"], "; nothing was written") as folder:
        what = save_model(model, tokenizer, folder)
        tokenizer_line = save_tokenizer(tokenizer, folder, model.config.block_size)
        difference, T = loaded_difference(model, folder)
        check_target(c["hf_dir"], c["overwrite"], ckpt)  # again: what is there now is what the swap removes
    print(f"wrote {c['hf_dir']}: {what}")
    print(f"loaded back by transformers, its logits are within {difference:.2g} of the run's on {T} tokens")
    print(tokenizer_line)


if __name__ == "__main__":
    run_main(main)
