"""
Datasets as prepare.py writes them and every script reads them: a folder <data_root>/<name>/
holding meta.json (the tokenizer, vocab_size, token counts) and a uint16 .bin file of token ids
per split; the tokenizers meta.json names (characters, GPT-2 BPE, Pythia's GPT-NeoX BPE) and
whether two of them are one; instruction data (the Alpaca template, splits of examples).
"""

import json
import os

import numpy as np

from configurator import UserError


# ---------------------------------------------------------------- meta.json and splits

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
    if problem := meta_problem(meta):
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


# ---------------------------------------------------------------- tokenizers

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
