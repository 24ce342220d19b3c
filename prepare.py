"""
Prepare a dataset for train.py: its token ids as raw uint16 (train.bin, val.bin, and test.bin
where it has a test split) and a meta.json that says how to read them, in <data_root>/<NAME>/.

    python prepare.py shakespeare_char                # characters, 1 MB, a second
    python prepare.py shakespeare                     # the same text in GPT-2 BPE
    python prepare.py text --files=notes/,extra.txt   # your own .txt files, GPT-2 BPE
    python prepare.py openwebtext --num_proc=8        # Hugging Face, ~9B train tokens, hours
    python prepare.py wikitext                        # validation + test, for evaluation
    python prepare.py lambada                         # test, with each example's offsets

Options are --key=value (see DEFAULTS below). --source replaces a dataset's input: a text file for
shakespeare*, a Hugging Face name or a local dataset folder for the others (a folder of .jsonl,
.parquet, ... files with a "text" column, named after their split: train.jsonl, test.jsonl).

Everything is written into a temporary sibling folder that is renamed into place at the end, so
an interrupted run never leaves a folder that looks complete. meta.json holds: dataset,
tokenizer ("char" or "gpt2"), vocab_size, source, <split>_tokens for each split written, and
chars (char), eot_token (where <|endoftext|> follows each document), examples (lambada).
"""

import difflib
import functools
import glob
import json
import os
import shutil
import sys

import numpy as np

from common import UserError, at_least, between, gpt2_encoding, parse_config, run_main, writing

HERE = os.path.dirname(os.path.abspath(__file__))

DEFAULTS = dict(
    data_root="data",          # outputs go to <data_root>/<NAME>/
    source="",                 # replace the input: a text file, a Hugging Face name or a local dataset folder
    files="",                  # text: comma-separated .txt files or folders (all *.txt in them, recursively)
    splits="validation,test",  # wikitext: which of train, validation, test to write
    num_proc=8,                # worker processes for Hugging Face datasets (load, tokenize)
    val_fraction=0.0005,       # openwebtext: the share of documents held out as val
    seed=2357,                 # openwebtext: the seed of that shuffled split
)

# the valid values of the options above that need a check (common's; the others: where they are read)
CHECKS = dict(num_proc=at_least(1), val_fraction=between(0, 1, low_open=True), seed=at_least(0))

GPT2_VOCAB_SIZE = 50257  # the trainer pads it to a multiple of 64 itself


# ---------------------------------------------------------------- shared pieces

@functools.cache
def gpt2():
    return gpt2_encoding()


def bpe(text, eot=False):
    """GPT-2 BPE ids of text (special tokens in it are plain text), + <|endoftext|> if eot."""
    ids = gpt2().encode_ordinary(text)
    if eot:
        ids.append(gpt2().eot_token)
    return ids


def bpe_batch(batch, eot):
    """Dataset.map function: the "text" column of a batch to ids and their lengths."""
    ids = [bpe(text, eot) for text in batch["text"]]
    return {"ids": ids, "len": [len(x) for x in ids]}


def check_text(dset):
    if "text" not in dset.column_names:
        raise UserError(f"the dataset has no 'text' column (it has {', '.join(dset.column_names)}): fix --source")


def tokenize(dset, eot, num_proc, desc):
    """A Hugging Face dataset with a "text" column -> one with "ids" and "len" (nanoGPT's map)."""
    check_text(dset)
    return dset.map(bpe_batch, batched=True, fn_kwargs={"eot": eot}, remove_columns=dset.column_names,
                    num_proc=num_proc if num_proc > 1 else None, desc=desc)


def load_hf(source, name, config_name, split, num_proc):
    """split (a name or a list of names) of the Hugging Face dataset `name`, or of a local
    dataset folder given as `source`, read the way load_dataset(folder) reads it."""
    if source and os.path.isfile(source):
        raise UserError(f"--source={source} is a file: put it in a folder, named after its split "
                        "(train.jsonl, validation.jsonl or test.jsonl), and give the folder")
    if source.startswith((".", "/", "~")) and not os.path.exists(source):
        raise UserError(f"--source={source} not found: give an existing folder or a Hugging Face name")
    if os.path.isdir(source):
        args = (source,)  # a local folder: its files, by split
    else:
        args = (source or name,) + ((config_name,) if config_name else ())
    import datasets
    try:
        return datasets.load_dataset(*args, split=split, num_proc=num_proc if num_proc > 1 else None)
    except Exception as e:  # not found, offline, unknown split, unreadable files: all input problems
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load {source or name} ({why}): check --source, --splits and the network")


def read_text(path):
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": the text exactly as stored
            return f.read()
    except FileNotFoundError:
        raise UserError(f"{path} not found: fix --source or --files")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): convert it or leave it out")


def write_split(path, ids):
    """Write token ids to path as raw uint16; return how many. ids: an array or list, or a
    tokenized Hugging Face dataset, written shard by shard into a memmap (nanoGPT's loop)."""
    if not hasattr(ids, "shard"):
        ids = np.asarray(ids)
        if ids.size and ids.max() >= 2 ** 16:
            raise UserError(f"token id {ids.max()} does not fit in uint16: the vocabulary is too large")
        ids.astype(np.uint16).tofile(path)
        return len(ids)
    import pyarrow.compute as pc  # Arrow columns: numpy-formatted ones are ~50x slower here
    from tqdm import tqdm
    dset = ids.with_format("arrow")
    arr_len = pc.sum(dset["len"]).as_py() or 0
    if arr_len == 0:
        open(path, "wb").close()
        return 0
    arr = np.memmap(path, dtype=np.uint16, mode="w+", shape=(arr_len,))
    total_batches = min(1024, len(dset))
    idx = 0
    for batch_idx in tqdm(range(total_batches), desc=f"writing {os.path.basename(path)}"):
        # batch together samples for faster write
        batch = dset.shard(num_shards=total_batches, index=batch_idx, contiguous=True)
        arr_batch = pc.list_flatten(batch["ids"]).to_numpy()
        arr[idx: idx + len(arr_batch)] = arr_batch
        idx += len(arr_batch)
    arr.flush()
    del arr
    return arr_len


def save(data_root, name, splits, meta):
    """Write each split to <split>.bin and then meta.json into a temporary sibling folder, and
    only then swap it in for <data_root>/<name>/: an interrupted run, or one that cannot write
    (a full disk: a one-line error), leaves the old one as it was."""
    final = os.path.join(data_root, name)
    tmp = os.path.join(data_root, f".{name}.tmp-{os.getpid()}")
    old = os.path.join(data_root, f".{name}.old-{os.getpid()}")
    try:
        with writing(final, "; any previous dataset there is unchanged"):
            os.makedirs(data_root, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            meta = {"dataset": name, **meta}
            for split, ids in splits.items():
                n = meta[f"{split}_tokens"] = write_split(os.path.join(tmp, f"{split}.bin"), ids)
                if n == 0:
                    raise UserError(f"{name}: the {split} split came out empty: give it more text")
            with open(os.path.join(tmp, "meta.json"), "w") as f:  # one key a line, lists kept on theirs
                f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items()) + "\n}\n")
            if os.path.exists(final):
                os.rename(final, old)
            try:
                os.rename(tmp, final)
            except OSError:  # put the old one back
                if os.path.exists(old):
                    os.rename(old, final)
                raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for split in splits:
        print(f"{split}: {meta[f'{split}_tokens']:,} tokens")
    print(f"wrote {final}/ ({meta['tokenizer']} tokenizer, vocab_size {meta['vocab_size']})")


def split_90_10(seq):
    n = int(len(seq) * 0.9)
    return seq[:n], seq[n:]


# ---------------------------------------------------------------- datasets
# Each takes the config and returns ({split: token ids}, meta), for save().

def shakespeare_text(config):
    """Tiny Shakespeare (shipped next to this script), or the text file --source; its name."""
    if config["source"]:
        return read_text(config["source"]), config["source"]
    return read_text(os.path.join(HERE, "data", "tinyshakespeare.txt")), "data/tinyshakespeare.txt"


def shakespeare_char(config):
    """Tiny Shakespeare by character: the first 90% is train, the last 10% val."""
    data, source = shakespeare_text(config)
    chars = sorted(set(data))
    stoi = {ch: i for i, ch in enumerate(chars)}
    train, val = split_90_10(data)
    splits = {"train": [stoi[c] for c in train], "val": [stoi[c] for c in val]}
    return splits, {"tokenizer": "char", "vocab_size": len(chars), "chars": chars, "source": source}


def shakespeare(config):
    """Tiny Shakespeare in GPT-2 BPE, the same 90/10 split by characters."""
    data, source = shakespeare_text(config)
    train, val = split_90_10(data)
    return {"train": bpe(train), "val": bpe(val)}, {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE, "source": source}


def text(config):
    """Your own files, each one document followed by <|endoftext|>. With 10 or more documents
    the last 10% of them (in order: as listed, folders sorted) are val; with fewer, the last
    10% of the tokens."""
    paths = [p.strip() for p in config["files"].split(",") if p.strip()]
    if not paths:
        raise UserError("text needs --files=PATH[,PATH...]: text files, or folders of *.txt files")
    files = []
    for path in map(os.path.expanduser, paths):
        if os.path.isdir(path):
            found = sorted(f for f in glob.glob(os.path.join(path, "**", "*.txt"), recursive=True) if os.path.isfile(f))
            if not found:
                raise UserError(f"--files: folder {path} holds no *.txt files")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError(f"--files: {path} not found (give existing files or folders, comma-separated)")
    docs = [bpe(read_text(f), eot=True) for f in files]
    if len(docs) >= 10:
        train, val = split_90_10(docs)
        splits = {"train": [i for d in train for i in d], "val": [i for d in val for i in d]}
    else:
        train, val = split_90_10([i for d in docs for i in d])
        splits = {"train": train, "val": val}
    return splits, {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE, "eot_token": gpt2().eot_token,
                    "source": config["files"]}


def openwebtext(config):
    """OpenWebText (or --source), as nanoGPT: a shuffled val_fraction of the documents is val;
    each document is followed by <|endoftext|>."""
    dataset = load_hf(config["source"], "openwebtext", None, "train", config["num_proc"])
    # owt by default only contains the 'train' split, so create a test split
    try:
        split_dataset = dataset.train_test_split(test_size=config["val_fraction"], seed=config["seed"], shuffle=True)
    except ValueError as e:
        raise UserError(f"cannot hold out --val_fraction={config['val_fraction']} of {len(dataset)} documents ({e})")
    split_dataset["val"] = split_dataset.pop("test")  # rename the test split to val
    splits = {split: tokenize(dset, True, config["num_proc"], f"tokenizing {split}")
              for split, dset in split_dataset.items()}
    return splits, {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE, "eot_token": gpt2().eot_token,
                    "source": config["source"] or "openwebtext"}


WIKITEXT_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # ours -> Hugging Face's


def wikitext(config):
    """WikiText-103 (raw): each split's lines joined as in the raw files (each row keeps its
    newline), GPT-2 BPE, no <|endoftext|>. Only the splits in --splits (by default the
    validation and test splits, for evaluation; add train to train on it)."""
    wanted = {"validation" if s.strip() == "val" else s.strip() for s in config["splits"].split(",") if s.strip()}
    if not wanted or not wanted <= set(WIKITEXT_SPLITS.values()):
        raise UserError(f"--splits={config['splits']}: give a comma-separated subset of train, validation, test")
    order = [ours for ours, theirs in WIKITEXT_SPLITS.items() if theirs in wanted]
    parts = load_hf(config["source"], "wikitext", "wikitext-103-raw-v1", [WIKITEXT_SPLITS[s] for s in order],
                    config["num_proc"])
    # tokenizing line by line gives the ids of the joined text: every row ends with its newline
    splits = {split: tokenize(dset, False, config["num_proc"], f"tokenizing {split}")
              for split, dset in zip(order, parts)}
    return splits, {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE,
                    "source": config["source"] or "wikitext/wikitext-103-raw-v1"}


def lambada(config):
    """LAMBADA (OpenAI's version): the test examples' ids back to back (no <|endoftext|>) in
    test.bin and val.bin, and in meta.json "examples": [start, target_start, end] for each, where
    ids[start:target_start] is the context and ids[target_start:end] the last word (with its
    leading space), the text split at its last space."""
    dset = load_hf(config["source"], "EleutherAI/lambada_openai", "default", "test", config["num_proc"])
    check_text(dset)
    ids, examples = [], []
    for n, example in enumerate(dset["text"]):
        i = example.rfind(" ")
        if i <= 0:
            raise UserError(f"lambada example {n} has no context before its last word: {example[:60]!r}")
        start = len(ids)
        ids += bpe(example[:i])
        target_start = len(ids)
        ids += bpe(example[i:])
        examples.append([start, target_start, len(ids)])
    ids = np.array(ids, dtype=np.uint16)
    return {"val": ids, "test": ids}, {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE,
                                       "source": config["source"] or "EleutherAI/lambada_openai",
                                       "examples": examples}


# each dataset, and the options it reads besides data_root
DATASETS = {
    "shakespeare_char": (shakespeare_char, ("source",)),
    "shakespeare": (shakespeare, ("source",)),
    "text": (text, ("files",)),
    "openwebtext": (openwebtext, ("source", "num_proc", "val_fraction", "seed")),
    "wikitext": (wikitext, ("source", "num_proc", "splits")),
    "lambada": (lambada, ("source", "num_proc")),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    names = ", ".join(DATASETS)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    if not argv or argv[0].startswith("-"):
        raise UserError(f"name the dataset first: python prepare.py NAME [--key=value ...], NAME one of {names}")
    name, argv = argv[0], argv[1:]
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UserError(f"unknown dataset '{name}': {hint}choose one of {names}")
    config = parse_config(DEFAULTS, argv, CHECKS)
    config["source"] = os.path.expanduser(config["source"])
    prepare, options = DATASETS[name]
    stray = [k for k in config if config[k] != DEFAULTS[k] and k not in ("data_root",) + options]
    if stray:
        raise UserError(f"--{stray[0]} does not apply to {name} (its options: data_root, {', '.join(options)})")
    splits, meta = prepare(config)
    save(config["data_root"], name, splits, meta)


if __name__ == "__main__":
    run_main(main)
