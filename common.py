"""
What every entry script shares: one-line errors, configuration (defaults -> config/*.py ->
--key=value, and --quick) and the checks of each option's valid values, the study's model
variants, devices and precision, datasets and tokenizers, batches, instruction data (the Alpaca
template, batches of examples), checkpoints, run logs, figures.
"""

import ast
import difflib
import glob
import io
import json
import math
import os
import re
import sys
import types
from contextlib import contextmanager, nullcontext

import numpy as np

# torch and model.py are imported inside the functions that use them, not up here: prepare.py
# uses this module for its options and errors, and needs no second spent loading PyTorch.

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")

# the config keys that shape the model: GPTConfig's fields, in order, written out so that this
# module does not import model.py (tests/test_prepare.py checks that they agree)
MODEL_KEYS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "bias",
              "chunk_size", "n_ctx_layer", "n_enc_layer", "context_scale", "context_gain_init",
              "rotary_pct", "rotary_base", "parallel_residual", "tie_embeddings", "gelu_approximate", "layer_norm_eps")


class UserError(Exception):
    """Bad input: reported as one line naming the fix, exit status 1, no traceback."""


class WriteError(UserError, OSError):
    """A file that cannot be written (a full disk, no permission, a file where a folder should
    be): a UserError, so one line, and still an OSError for a caller that catches those."""


@contextmanager
def writing(path, kept=""):
    """Turn a failure to write `path` inside the with-block into a one-line WriteError; `kept`
    says what was left as it was."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        where = f": {e.filename}" if e.filename and str(e.filename) != str(path) else ""
        raise WriteError(f"cannot write {path} ({e.strerror or e}{where}){kept}: free some space, or fix the "
                         "path or its permissions") from e


def write_text(path, text, kept="; any previous file there is unchanged"):
    """Write text to path atomically (a temporary file renamed over it); a failure is one line."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with writing(path, kept):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_main(main):
    """Run an entry script's main(), turning a UserError into a one-line message."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------- configuration

def parse_config(defaults, argv, checks=None):
    """nanoGPT's configurator as a function: `defaults`, then each config file in argv (plain
    Python, run in order), then each --key=value (a Python literal, or else a string).
    Only known keys, with the default's type (an int is fine where a float is expected), and
    each final value valid by `checks`, the script's CHECKS (see check_options)."""
    config, origins = dict(defaults), {}  # origins: the config file that set a key last, if one did
    for arg in argv:
        if arg.startswith("--"):
            key, eq, text = arg[2:].partition("=")
            if not eq:
                raise UserError(f"{arg}: write overrides as --key=value")
            config[key] = _coerce(key, text, defaults, from_text=True)
            origins.pop(key, None)
        else:
            if not os.path.isfile(arg):
                raise UserError(f"config file {arg} not found (arguments are config files or --key=value)")
            namespace = {"__file__": arg}  # lets a config build on another one next to it
            try:
                exec(compile(open(arg).read(), arg, "exec"), namespace)
            except Exception as e:
                raise UserError(f"config file {arg} failed: {type(e).__name__}: {e}")
            for key, value in namespace.items():
                if not key.startswith("_") and not isinstance(value, types.ModuleType):
                    config[key] = _coerce(key, value, defaults, origin=arg)
                    origins[key] = arg
    if checks:
        check_options(config, checks, origins)
    return config


def _coerce(key, value, defaults, from_text=False, origin="command line"):
    if key not in defaults:
        hint = difflib.get_close_matches(key, defaults, n=3)
        hint = f" (did you mean {', '.join(hint)}?)" if hint else f"; known keys: {', '.join(defaults)}"
        raise UserError(f"unknown config key '{key}' in {origin}{hint}")
    default = defaults[key]
    if from_text:
        if isinstance(default, str):
            return value  # strings are taken as written: --start=123 is the text "123"
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # not a literal: keep it as a string, and let the type check below judge it
    if default is None or value is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise UserError(f"config key '{key}' wants a {type(default).__name__} "
                        f"(like {default!r}), got {value!r} from {origin}")
    return value


def expand_quick(argv, script):
    """argv with each `--quick` (or --quick=True) replaced, in its place, by the config file
    config/<script>_quick.py, and --quick=False left out: what --quick means in every script that
    has it (bench.py, compare.py). Arguments after it still win, as after any config file."""
    quick = os.path.join(CONFIG_DIR, f"{script}_quick.py")
    return [quick if arg in ("--quick", "--quick=True") else arg for arg in argv if arg != "--quick=False"]


# ---------------------------------------------------------------- each option's valid values
# Every entry script keeps a CHECKS dict beside its DEFAULTS: {option: check}, a check being
# (ok, must): ok(value) is True for a valid value, and `must` ends the error for any other one,
# `--batch_size=0: must be at least 1`. The helpers below make the common ones; a check refuses
# None unless it says otherwise. Options that only make sense together are checked where they
# meet (GPTConfig, train.check_config, bench.resolve).

def check_options(config, checks, origins=None):
    """A one-line UserError for the first config[key] that fails checks[key], naming where the
    value came from (origins: {key: config file}; otherwise the command line)."""
    for key, (ok, must) in checks.items():
        if not ok(config[key]):
            origin = (origins or {}).get(key)
            where = f"{key}={config[key]!r} in {origin}" if origin else f"--{key}={config[key]!r}"
            raise UserError(f"{where}: must be {must}")


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _must(text, why):
    return f"{text} ({why})" if why else text


def at_least(low, why=""):
    """A check: a number >= low (why, if given, follows the error in brackets)."""
    return (lambda v: is_number(v) and v >= low), _must(f"at least {low}", why)


def above(low, why=""):
    """A check: a number > low."""
    return (lambda v: is_number(v) and v > low), _must(f"more than {low}", why)


def between(low, high, why="", low_open=False, high_closed=False):
    """A check: a number in [low, high), or (low, high) with low_open, or [low, high] with high_closed."""
    return ((lambda v: is_number(v) and (v > low if low_open else v >= low)
             and (v <= high if high_closed else v < high)),
            _must(f"in {'(' if low_open else '['}{low}, {high}{']' if high_closed else ')'}", why))


def one_of(*choices):
    """A check: one of choices, also by type (True is not 1)."""
    return ((lambda v: any(type(v) is type(c) and v == c for c in choices)),
            "one of " + ", ".join(repr(c) if c == "" else str(c) for c in choices))


def or_none(check, why=""):
    """A check: None, or what check accepts."""
    ok, must = check
    return (lambda v: v is None or ok(v)), _must(f"None or {must}", why)


def counts(why=""):
    """A check: a non-empty list or tuple of whole numbers, each at least 1."""
    return ((lambda v: isinstance(v, (list, tuple)) and len(v) > 0
             and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in v)),
            _must("a non-empty list of whole numbers, each at least 1", why))


NOT_EMPTY = (lambda v: isinstance(v, str) and v != ""), "a non-empty string"
SEED = ((lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**64),
        "a whole number that fits in 64 bits (what torch.manual_seed takes)")


# ---------------------------------------------------------------- the study's model variants

def model_variants(c):
    """The three models the study compares, by name: {name: the GPTConfig fields that set them
    apart}. c: a config with n_layer (L), n_ctx_layer (P), chunk_size (w) and n_enc_layer (E);
    every other field (width, heads, vocabulary, block size) is the same for all three.
        gpt        L token layers: the GPT-2 baseline
        contextlm  the same L token layers + a P-layer context predictor
        gpt+{P}L   L + P token layers: about as many parameters as contextlm, all spent on tokens
    bench.py measures these three; compare.py trains them (its ablation grid varies contextlm)."""
    L, P, w = c["n_layer"], c["n_ctx_layer"], c["chunk_size"]  # P >= 1 (bench's and compare's CHECKS)
    # chunk_size and n_enc_layer do nothing without a predictor: the GPTs keep w and no encoder
    # (and the default context_scale, so that a study of another context_scale reuses their runs)
    gpt = dict(n_ctx_layer=0, chunk_size=w, n_enc_layer=0, context_scale="learned", context_gain_init=0.0)
    return {"gpt": dict(n_layer=L, **gpt),
            "contextlm": dict(n_layer=L, n_ctx_layer=P, chunk_size=w, n_enc_layer=c["n_enc_layer"],
                              context_scale=c.get("context_scale", "learned"),
                              context_gain_init=c.get("context_gain_init", 0.0)),
            f"gpt+{P}L": dict(n_layer=L + P, **gpt)}


# The Transformer blocks the study runs on: GPTConfig's backbone fields, set all at once by
# bench.py's and compare.py's --backbone (docs/pythia.md). bias is not among them: train.py's
# GPT-2 recipe has none, Pythia has them (its configs say bias = True).
BACKBONES = {
    "gpt2": dict(rotary_pct=0.0, rotary_base=10000.0, parallel_residual=False, tie_embeddings=True,
                 gelu_approximate="tanh", layer_norm_eps=1e-5),
    "pythia": dict(rotary_pct=0.25, rotary_base=10000.0, parallel_residual=True, tie_embeddings=False,
                   gelu_approximate="none", layer_norm_eps=1e-5),
}


def backbone_fields(name):
    """The GPTConfig fields of the backbone called name (a key of BACKBONES)."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}': use one of {', '.join(BACKBONES)}")
    return dict(BACKBONES[name])


# ---------------------------------------------------------------- devices and precision

def setup_device(device="auto", dtype="auto"):
    """(device, device_type, torch dtype, autocast context). 'auto' picks cuda, then mps, then
    cpu, and bfloat16 where the GPU supports it, float16 on other GPUs, float32 elsewhere."""
    import torch
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device_type = device.split(":")[0]
    if device_type not in ("cuda", "mps", "cpu"):
        raise UserError(f"device '{device}' not understood: use auto, cpu, cuda, cuda:N or mps")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' asked for but CUDA is not available: use --device=cpu")
    if device_type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{device}' asked for but MPS is not available: use --device=cpu")
    if dtype == "auto":
        dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if device_type == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"dtype '{dtype}' not understood: use auto, float32, bfloat16 or float16")
    ptdtype = getattr(torch, dtype)
    ctx = nullcontext() if ptdtype == torch.float32 else torch.autocast(device_type=device_type, dtype=ptdtype)
    return device, device_type, ptdtype, ctx


def peak_flops(device):
    """Dense bf16 peak FLOP/s of the GPU, for MFU; None where we do not know it (CPU, MPS)."""
    if not str(device).startswith("cuda"):
        return None
    import torch
    name = torch.cuda.get_device_name(device)
    for key, flops in (("H100", 989e12), ("H200", 989e12), ("A100", 312e12), ("L4", 121e12), ("A10", 125e12)):
        if key in name:
            return flops
    return None


# ---------------------------------------------------------------- datasets, tokenizers, batches

def dataset_dir(data_root, dataset):
    return os.path.join(data_root, dataset)


TOKENIZERS = ("char", "gpt2", "neox")  # what meta.json's "tokenizer" may name (see Tokenizer)


def load_meta(data_root, dataset):
    """The dataset's meta.json written by prepare.py (tokenizer, vocab_size, token counts), as a
    dict; a one-line error naming `python prepare.py NAME` if it is missing, unreadable or incomplete."""
    path = os.path.join(dataset_dir(data_root, dataset), "meta.json")
    if not os.path.isfile(path):
        raise UserError(f"dataset '{dataset}' not found ({path} is missing): run `python prepare.py {dataset}` first")
    again = f"run `python prepare.py {dataset}` again"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): fix its permissions or {again}")
    except ValueError as e:  # not JSON, or not UTF-8
        raise UserError(f"{path} is not valid JSON ({e}): {again}")
    problem = meta_problem(meta)
    if problem:
        raise UserError(f"{path} is incomplete: {problem}; {again}")
    return meta


def meta_problem(meta):
    """What keeps a meta.json's contents from describing a dataset, or None if nothing does."""
    if not isinstance(meta, dict):
        return f"it holds a {type(meta).__name__}, not an object"
    for key in ("tokenizer", "vocab_size"):
        if key not in meta:
            return f"it has no '{key}'"
    if meta["tokenizer"] not in TOKENIZERS:
        return f"its tokenizer {meta['tokenizer']!r} is none of {', '.join(TOKENIZERS)}"
    vocab_size = meta["vocab_size"]
    if not (isinstance(vocab_size, int) and vocab_size >= 1):
        return f"its vocab_size {vocab_size!r} is not a positive whole number"
    if meta["tokenizer"] == "char" and not (isinstance(meta.get("chars"), list) and len(meta["chars"]) == vocab_size):
        return f"its 'chars' are not a list of {vocab_size} characters"
    examples = meta.get("examples", [])  # LAMBADA's [start, target_start, end]
    if not (isinstance(examples, list) and all(isinstance(e, list) and len(e) == 3 and all(type(i) is int for i in e)
                                               and 0 <= e[0] <= e[1] < e[2] for e in examples)):
        return "its 'examples' are not lists [start, target_start, end] with start <= target_start < end"
    return None


def open_split(data_root, dataset, split):
    """The token ids of one split as a read-only uint16 memmap, checked against the dataset's
    meta.json: a whole number of tokens, as many as it says, each below its vocab_size. The
    check reads the file once, at memory speed (0.18 s a GiB from the page cache: docs/bad_input.md)."""
    path = os.path.join(dataset_dir(data_root, dataset), f"{split}.bin")
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: run `python prepare.py {dataset}` first")
    meta = load_meta(data_root, dataset)
    again = f"run `python prepare.py {dataset}` again"
    size = os.path.getsize(path)
    if size == 0:
        raise UserError(f"{path} is empty: {again}")
    if size % 2:
        raise UserError(f"{path} has {size:,} bytes, not a whole number of 2-byte tokens (cut short?): {again}")
    expected = meta.get(f"{split}_tokens")
    if isinstance(expected, int) and expected != size // 2:
        raise UserError(f"{path} holds {size // 2:,} tokens but meta.json says {expected:,} (cut short, or "
                        f"from another preparation): {again}")
    try:
        data = np.memmap(path, dtype=np.uint16, mode="r")
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): fix its permissions or {again}")
    # an id beyond the vocabulary would crash the embedding (CUDA: an opaque device-side assert),
    # or worse, train a padding row of it without a word
    largest, vocab_size = int(data.max()), meta["vocab_size"]
    if largest >= vocab_size:
        first = int(np.argmax(data >= vocab_size))
        raise UserError(f"{path} holds token ids up to {largest} (the first at token {first:,}), but meta.json's "
                        f"vocab_size is {vocab_size}: {again}")
    return data


def sample_offsets(data, block_size, shape, generator):
    """Where the rows of a batch begin, a LongTensor of `shape` drawn with `generator`: anywhere a
    whole row fits in text (a uint16 memmap), at the start of an example in instruction data
    (Examples), so that a response is never seen without its prompt."""
    import torch
    if isinstance(data, Examples):
        starts = torch.from_numpy(data.bounds[:, 0])
        return starts[torch.randint(len(starts), shape, generator=generator)]
    return torch.randint(len(data) - block_size, shape, generator=generator)


def get_batch(data, offsets, block_size, device):
    """Inputs and next-token targets, (len(offsets), block_size) each, from those offsets. In
    instruction data (Examples) every target but the response of the row's own example is -1."""
    import torch
    if isinstance(data, Examples):
        x, y = data.batch(offsets.numpy(), block_size)
    else:
        rows = torch.stack([torch.from_numpy(data[i:i + block_size + 1].astype(np.int64)) for i in offsets.tolist()])
        x, y = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()  # one read per row: targets are inputs shifted
    if str(device).startswith("cuda"):  # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


PYTHIA_TOKENIZER = "EleutherAI/pythia-160m"  # where the GPT-NeoX BPE is read from: every Pythia size shares it


def neox_tokenizer(path):
    """The GPT-NeoX BPE of Pythia, a `tokenizers.Tokenizer` read from tokenizer.json in a Hugging
    Face repository (downloaded once into the hub cache) or a local folder: the file and the
    library GPT-NeoX itself tokenized the Pile with. Needs no PyTorch (prepare.py uses it)."""
    try:
        import tokenizers  # optional dependency (transformers installs it), only needed here
    except ImportError:
        raise UserError("the neox tokenizer needs the tokenizers package: pip install tokenizers")
    try:
        if os.path.isdir(path):
            file = os.path.join(path, "tokenizer.json")
        else:
            from huggingface_hub import hf_hub_download
            file = hf_hub_download(path, "tokenizer.json")
        return tokenizers.Tokenizer.from_file(file)
    except Exception as e:  # no such folder or file, not in the cache while offline, unreadable JSON
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the neox tokenizer from '{path}' ({why}): give a Hugging Face "
                        "repository like EleutherAI/pythia-160m or a folder holding its tokenizer.json")


def gpt2_encoding():
    """tiktoken's GPT-2 BPE. tiktoken downloads its two files on first use and caches them: offline
    without them, a one-line error."""
    import tiktoken
    try:
        return tiktoken.get_encoding("gpt2")
    except OSError as e:  # (requests' errors are OSErrors)
        raise UserError(f"cannot load tiktoken's GPT-2 BPE ({type(e).__name__}): its first use downloads two files, "
                        "so connect to the internet once, or set TIKTOKEN_CACHE_DIR to a folder that holds them")


class Tokenizer:
    """Text <-> token ids, as described by a dataset's meta.json: characters, GPT-2 BPE, or the
    GPT-NeoX BPE of Pythia ("neox", from the Hugging Face repository or local folder named by
    "tokenizer_path"). vocab_size: how many ids it has; eot_token: the id of <|endoftext|>
    (None for characters)."""

    def __init__(self, meta):
        self.kind = meta["tokenizer"]
        self.eot_token = None
        if self.kind == "char":
            self.chars = meta["chars"]
            self.stoi = {ch: i for i, ch in enumerate(self.chars)}
            self.vocab_size = len(self.chars)
        elif self.kind == "gpt2":
            self.enc = gpt2_encoding()
            self.vocab_size = self.enc.n_vocab  # 50257; the model pads its vocabulary to 50304
            self.eot_token = self.enc.eot_token
        elif self.kind == "neox":
            self.enc = neox_tokenizer(meta.get("tokenizer_path", PYTHIA_TOKENIZER))
            self.vocab_size = self.enc.get_vocab_size(with_added_tokens=True)  # 50277; Pythia pads to 50304
            self.eot_token = self.enc.token_to_id("<|endoftext|>")
        else:
            raise UserError(f"unknown tokenizer '{self.kind}' in meta.json (expected char, gpt2 or neox)")

    def encode(self, text):
        if self.kind == "gpt2":
            return self.enc.encode(text, allowed_special={"<|endoftext|>"})
        if self.kind == "neox":  # no BOS/EOS added; "<|endoftext|>" in the text is its special token
            return self.enc.encode(text, add_special_tokens=False).ids
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise UserError(f"characters {''.join(unknown)!r} are not in this model's character vocabulary")
        return [self.stoi[ch] for ch in text]

    def encode_ordinary(self, text):
        """Like encode, but the text of a special token ("<|endoftext|>") stays plain text: for
        data, whose end-of-text tokens are placed by the code, never by what the text says."""
        if self.kind == "gpt2":
            return self.enc.encode_ordinary(text)
        if self.kind == "neox":
            self.enc.encode_special_tokens = True  # tokenizers' switch: special-token text is plain text
            try:
                return self.enc.encode(text, add_special_tokens=False).ids
            finally:
                self.enc.encode_special_tokens = False
        return self.encode(text)

    def decode(self, ids):
        if self.kind == "gpt2":
            return self.enc.decode(ids)
        if self.kind == "neox":  # exactly the text, special tokens included
            return self.enc.decode(ids, skip_special_tokens=False)
        return "".join(self.chars[i] for i in ids)


# ---------------------------------------------------------------- instruction data
# prepare.py alpaca writes it, train.py fine-tunes on it, sample.py prompts in its template.

# The Alpaca prompt (Stanford Alpaca's template, as in the "text" column of tatsu-lab/alpaca):
# the response follows "### Response:\n" directly, then the end-of-text token.
ALPACA_INTRO = ("Below is an instruction that describes a task. "
                "Write a response that appropriately completes the request.\n\n")
ALPACA_INTRO_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
                      "further context. Write a response that appropriately completes the request.\n\n")
TEMPLATES = ("alpaca",)  # the values of meta.json's "template" and of sample.py's --template


def alpaca_prompt(instruction, input="", intro=True):
    """The Alpaca prompt of an instruction and its input ("" for none), up to where the response
    begins. intro=False leaves out the opening sentence: a follow-up turn of a conversation."""
    if input:
        return (f"{ALPACA_INTRO_INPUT if intro else ''}### Instruction:\n{instruction}\n\n"
                f"### Input:\n{input}\n\n### Response:\n")
    return f"{ALPACA_INTRO if intro else ''}### Instruction:\n{instruction}\n\n### Response:\n"


class Examples:
    """One split of instruction data, as train.py draws batches from it: the examples back to back
    in ids (a uint16 memmap), and bounds (n, 3) int64, a row (start, target_start, end) per
    example: its prompt is ids[start:target_start], its response and end-of-text token
    ids[target_start:end], the only tokens trained on. A batch row begins at an example's start
    (position 0, as when sampling) and counts that example's response alone: the tokens after it
    (the next example, or padding past the split's end) cannot change a causal model's
    predictions before them. left_out, cut: how many examples open_examples left out (their
    prompt fills a row) and how many of the rest are longer than a row (their end is not seen)."""

    def __init__(self, ids, bounds, left_out=0, cut=0):
        self.ids, self.bounds, self.left_out, self.cut = ids, bounds, left_out, cut

    def __len__(self):
        return len(self.ids)

    def batch(self, offsets, block_size):
        """(x, y) LongTensors (B, block_size) of the rows beginning at offsets (B,), example
        starts: y is -1 except on the tokens of the row's own response (and end-of-text)."""
        import torch
        T = block_size
        rows = np.zeros((len(offsets), T + 1), dtype=np.int64)  # zeros past the split's end: never targets
        for r, o in enumerate(offsets):
            row = self.ids[o:o + T + 1]
            rows[r, :len(row)] = row
        _, target_start, end = self.bounds[np.searchsorted(self.bounds[:, 0], offsets)].T  # (B,) each
        pos = offsets[:, None] + 1 + np.arange(T)  # (B, T): where in ids each target is
        counted = (pos >= target_start[:, None]) & (pos < end[:, None])
        x = np.ascontiguousarray(rows[:, :-1])
        y = np.where(counted, rows[:, 1:], -1)  # -1: the ignore index of the model's loss
        return torch.from_numpy(x), torch.from_numpy(y)


def open_examples(data_root, dataset, split, block_size):
    """A split of instruction data (prepare.py alpaca: <split>.bin and <split>.examples.npy) as
    Examples, without those whose prompt is block_size tokens or more: no response token would
    be a target of a row of block_size."""
    ids = open_split(data_root, dataset, split)
    path = os.path.join(dataset_dir(data_root, dataset), f"{split}.examples.npy")
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: run `python prepare.py {dataset}` again")
    bounds = np.load(path, allow_pickle=False)
    fits = bounds[:, 1] - bounds[:, 0] <= block_size  # the first response token is a row's last target, or earlier
    if not fits.any():
        raise UserError(f"every prompt in the {split} split of '{dataset}' is longer than block_size={block_size}: "
                        "raise --block_size")
    bounds = bounds[fits]
    cut = int((bounds[:, 2] - bounds[:, 0] > block_size + 1).sum())  # a row holds block_size + 1 tokens
    return Examples(ids, bounds, left_out=int((~fits).sum()), cut=cut)


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(checkpoint, path):
    """Write atomically: a temporary file in the same folder, flushed to disk, then renamed over
    the old one, so a crash or a failed write (a full disk) leaves the previous checkpoint intact.
    A write that fails is a one-line WriteError."""
    import torch
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with writing(path, "; any previous checkpoint there is unchanged"):
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def load_checkpoint(path, device="cpu"):
    """A checkpoint written by train.py: a dict with 'model' (the state_dict) and 'model_args'
    (GPTConfig's fields). Never unpickles arbitrary objects (weights_only). Anything else is
    refused in one line that says what the file is instead, and what to do."""
    import torch
    path = checkpoint_path(path)
    again = "restore it from a good copy or train again"
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): fix its permissions")
    kind = file_kind(head)
    if kind:
        raise UserError(f"{path} is not a torch file: {kind}; {again}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch reports a damaged file with many exception types
        code = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if code:
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
    """GPT.from_pretrained (GPT-2 or Pythia weights), failures as one line; a ContextLM folder that
    export.py wrote loads as it is (model_from_export)."""
    from model import GPT, hf_architecture
    with hf_errors(name_or_dir):
        if hf_architecture(name_or_dir)[1] == EXPORT_MODEL_TYPE:
            return model_from_export(name_or_dir, override_args)
        return GPT.from_pretrained(name_or_dir, override_args)


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
    model_args = {k: config[k] for k in MODEL_KEYS if k in config}
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
    """meta.json's description of the tokenizer a Hugging Face model (GPT.from_pretrained's
    name_or_dir) reads: GPT-2's BPE for a GPT-2, for a GPT-NeoX (Pythia) the BPE in its own
    repository or folder; for a folder that export.py wrote, the one its config.json names."""
    from model import hf_architecture
    with hf_errors(name_or_dir):
        name, arch = hf_architecture(name_or_dir)
        exported = exported_tokenizer(name_or_dir)
    if exported:
        return exported
    if arch not in ("gpt2", "gpt_neox"):
        raise UserError(f"{name_or_dir} holds a model of type {arch!r}; this repo loads 'gpt2' (GPT-2) and "
                        "'gpt_neox' (Pythia) models")
    return {"tokenizer": "gpt2"} if arch == "gpt2" else {"tokenizer": "neox", "tokenizer_path": name}


def is_pretrained(spec):
    """Whether spec names Hugging Face weights that GPT.from_pretrained loads: a GPT-2 or Pythia
    name (gpt2-medium, pythia-160m, EleutherAI/pythia-1b) or a local folder with a config.json."""
    names = ("gpt2", "pythia-", "EleutherAI/pythia-")
    return spec.startswith(names) or os.path.isfile(os.path.join(spec, "config.json"))


def same_tokenizer(a, b):
    """Whether two meta.json descriptions (a dataset's, a checkpoint's 'meta', pretrained_tokenizer's)
    name one tokenizer, so that ids written by one are read right by the other: the same kind and
    vocabulary (characters; for the NeoX BPE its tokenizer.json, which the hub and a local copy of
    it share, so two paths are compared by their vocabularies)."""
    if a["tokenizer"] != b["tokenizer"] or a.get("chars") != b.get("chars"):
        return False
    if "vocab_size" in a and "vocab_size" in b and a["vocab_size"] != b["vocab_size"]:
        return False
    if a["tokenizer"] == "neox" and a.get("tokenizer_path") != b.get("tokenizer_path"):
        return Tokenizer(a).enc.get_vocab(with_added_tokens=True) == Tokenizer(b).enc.get_vocab(with_added_tokens=True)
    return True


def describe_tokenizer(meta):
    """Like 'char tokens (65 ids)' or 'neox tokens (50277 ids, EleutherAI/pythia-160m)', for errors."""
    details = ([f"{meta['vocab_size']} ids"] if "vocab_size" in meta else []) + \
        ([meta["tokenizer_path"]] if "tokenizer_path" in meta else [])
    return f"{meta['tokenizer']} tokens" + (f" ({', '.join(details)})" if details else "")


def check_same_tokenizer(model_meta, data_meta, model, dataset, fix):
    """Raise unless weights trained on model_meta's tokens read the ids of a dataset (data_meta)
    as they were written (same_tokenizer); model and dataset name them in the one-line error."""
    if same_tokenizer(model_meta, data_meta):
        return
    a, b = describe_tokenizer(model_meta), describe_tokenizer(data_meta)
    why = f"reads {a}, but {dataset} is {b}" if a != b else f"and {dataset} have different vocabularies of {a}"
    raise UserError(f"{model} {why}: {fix}")


def checkpoint_tokenizer(checkpoint, path="checkpoint"):
    """The Tokenizer of the dataset a train.py checkpoint was trained on (its 'meta')."""
    if "meta" not in checkpoint:
        raise UserError(f"{path}: the checkpoint does not say which tokenizer it uses (no 'meta')")
    return Tokenizer(checkpoint["meta"])


def model_from_checkpoint(checkpoint, path="checkpoint"):
    """Rebuild the GPT a checkpoint describes and load its weights."""
    from model import FIELDS_BEFORE_THEY_EXISTED, GPT, GPTConfig
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


# ---------------------------------------------------------------- run logs

def read_log(run_dir):
    """(training rows, evaluation rows) of train.py's run_dir/log.jsonl, each sorted by iteration,
    one row per iteration: a resumed run repeats iterations, and the last row for each one wins."""
    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: train with `python train.py --out_dir={run_dir}` or fix the path")
    rows = ({}, {})  # training, evaluation (rows with val_loss)
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash; the rest is still good
                print(f"warning: {path}:{n} is not valid JSON, skipped", file=sys.stderr)
                continue
            if not (isinstance(row, dict) and isinstance(row.get("iter"), int)):
                print(f"warning: {path}:{n} is not a row of train.py's log (no 'iter'), skipped", file=sys.stderr)
                continue
            rows["val_loss" in row][row["iter"]] = row
    return tuple([by_iter[it] for it in sorted(by_iter)] for by_iter in rows)


def save_figure(fig, path):
    """Save a matplotlib figure as a compact PNG and close it. Plots use few colours, so a
    128-colour palette looks the same at a quarter of the size (figures live in the repo)."""
    import matplotlib.pyplot as plt
    from PIL import Image  # a dependency of matplotlib

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    image = Image.open(buf).convert("RGB").quantize(colors=128)
    try:
        image.save(path, optimize=True)
    except (OSError, ValueError) as e:  # no such folder, no permission, a full disk; an unknown extension
        raise WriteError(f"cannot write {path} ({getattr(e, 'strerror', None) or e}): give a .png path in an "
                         "existing folder that can be written") from e
