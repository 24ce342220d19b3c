"""
Prepare a dataset for train.py: its token ids as raw uint16 (train.bin, val.bin, and test.bin where it
has a test split) and a meta.json that says how to read them, in <data_root>/<NAME>/. Options are
--key=value (DEFAULTS below); docs/training.md, "Data", has --source, the tokenizers and meta.json.

    python prepare.py shakespeare_char                # characters, 1 MB, a second
    python prepare.py shakespeare                     # the same text in GPT-2 BPE
    python prepare.py text --files=notes/,extra.txt   # your own .txt files, GPT-2 BPE
    python prepare.py openwebtext --num_proc=8        # Hugging Face, ~9B train tokens, hours
    python prepare.py wikitext                        # validation + test, for evaluation
    python prepare.py lambada                         # test, with each example's offsets (also lambada_standard)
    python prepare.py pile --num_proc=16              # the Pile in Pythia's NeoX BPE (others: --tokenizer=neox)
    python prepare.py alpaca --val_fraction=0.02      # instructions to fine-tune on (docs/finetuning.md)
"""

import difflib
import functools
import glob
import json
import os
import sys

import numpy as np

from configurator import UserError, at_least, between, new_folder, parse_config, run_main, why_not_own
from dataset import PYTHIA_TOKENIZER, gpt2_encoding, neox_tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))

DEFAULTS = dict(
    data_root="data",          # outputs go to <data_root>/<NAME>/
    source="",                 # replace the input: a text file, a Hugging Face name or a local dataset folder
    files="",                  # text: comma-separated .txt files or folders (all *.txt in them, recursively)
    splits="",                 # wikitext, pile: which of train, val, test ('' = wikitext: val,test; pile: all)
    tokenizer="",              # BPE datasets: gpt2 or neox ('' = the dataset's own: neox for pile, else gpt2)
    tokenizer_path=PYTHIA_TOKENIZER,  # neox: a Hugging Face repository or local folder with its tokenizer.json
    num_proc=8,                # worker processes for Hugging Face datasets (load, tokenize)
    val_fraction=0.0005,       # openwebtext, alpaca: the share of documents (examples) held out as val
    seed=2357,                 # openwebtext, alpaca: the seed of that shuffled split
    ckpt="",                   # alpaca: take the tokenizer from this train.py checkpoint (its out_dir) instead
)

# the valid values of the options above that need a check (config's; the others: where they are read)
CHECKS = dict(num_proc=at_least(1), val_fraction=between(0, 1, low_open=True), seed=at_least(0))


# ---------------------------------------------------------------- shared pieces

GPT2 = ("gpt2", None)  # a BPE as bpe_encoder() takes it: (kind, tokenizer_path)


@functools.cache
def bpe_encoder(kind, path):
    """(encode: text -> ids, reading special-token text in it as plain text, the id of
    <|endoftext|>, how many ids) of GPT-2's BPE or the NeoX BPE at path. Cached per process:
    each worker of a Hugging Face map loads its own."""
    if kind == "gpt2":
        enc = gpt2_encoding()
        return enc.encode_ordinary, enc.eot_token, enc.n_vocab
    tok = neox_tokenizer(path)  # dataset.Tokenizer's, so that sample.py and eval.py read the same ids
    tok.encode_special_tokens = True
    return (lambda text: tok.encode(text, add_special_tokens=False).ids), tok.token_to_id("<|endoftext|>"), \
        tok.get_vocab_size(with_added_tokens=True)


def bpe(text, tok=GPT2, eot=False):
    """BPE ids of text (special tokens in it are plain text), + <|endoftext|> if eot."""
    encode, eot_token, _ = bpe_encoder(*tok)
    ids = encode(text)
    if eot:
        ids.append(eot_token)
    return ids


def bpe_meta(tok, eot=False):
    """What meta.json says of the BPE tok: tokenizer, tokenizer_path (neox), vocab_size, and
    eot_token if <|endoftext|> follows each document."""
    _, eot_token, n_vocab = bpe_encoder(*tok)
    if n_vocab > 2 ** 16:
        raise UserError(f"the tokenizer at {tok[1]} has {n_vocab} ids: token ids are stored as uint16 "
                        "(at most 65536); use a smaller vocabulary")
    meta = {"tokenizer": tok[0]} | ({"tokenizer_path": tok[1]} if tok[0] == "neox" else {})
    return meta | {"vocab_size": n_vocab} | ({"eot_token": eot_token} if eot else {})


def chosen_bpe(config, eot=False):
    """(The BPE config asks for, as bpe() takes it; bpe_meta of it): main() has resolved --tokenizer."""
    tok = (config["tokenizer"], config["tokenizer_path"] if config["tokenizer"] == "neox" else None)
    return tok, bpe_meta(tok, eot)


def bpe_batch(batch, tok, eot):
    """Dataset.map function: the "text" column of a batch to ids and their lengths."""
    ids = [bpe(text, tok, eot) for text in batch["text"]]
    return {"ids": ids, "len": [len(x) for x in ids]}


def check_text(dset):
    if "text" not in dset.column_names:
        raise UserError(f"the dataset has no 'text' column (it has {', '.join(dset.column_names)}): fix --source")


def tokenize(dset, tok, eot, num_proc, desc):
    """A Hugging Face dataset with a "text" column -> one with "ids" and "len" (nanoGPT's map)."""
    check_text(dset)
    import datasets
    # ids kept as uint16 in the cache too: a quarter of the disk of the default int64
    features = datasets.Features({"ids": datasets.Sequence(datasets.Value("uint16")), "len": datasets.Value("int64")})
    return dset.map(bpe_batch, batched=True, fn_kwargs={"tok": tok, "eot": eot}, remove_columns=dset.column_names,
                    features=features, num_proc=num_proc if num_proc > 1 else None, desc=desc)


def load_hf(source, name, config_name, split, num_proc, data_files=None):
    """split (a name or a list of names) of the Hugging Face dataset `name`, or of a local
    dataset folder given as `source`, read the way load_dataset(folder) reads it. data_files:
    {split: files} to read instead of what load_dataset would find (paths in the folder, or
    patterns in `name`'s repository): only these are downloaded."""
    if source and os.path.isfile(source):
        raise UserError(f"--source={source} is a file: put it in a folder, named after its split "
                        "(train.jsonl, validation.jsonl or test.jsonl), and give the folder")
    if source.startswith((".", "/", "~")) and not os.path.exists(source):
        raise UserError(f"--source={source} not found: give an existing folder or a Hugging Face name")
    if os.path.isdir(source):
        args = ("json",) if data_files else (source,)  # a local folder: the files given, or its files by split
    else:
        args = (source or name,) + ((config_name,) if config_name else ())
    import datasets
    try:
        return datasets.load_dataset(*args, data_files=data_files, split=split,
                                     num_proc=num_proc if num_proc > 1 else None)
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


# the files prepare.py writes into <data_root>/<NAME>/ (save): all that replacing a dataset removes
DATASET_FILES = ("meta.json", "train.bin", "val.bin", "test.bin", "train.examples.npy", "val.examples.npy")


def check_dataset_folder(data_root, name):
    """Refuse, in one line, to replace <data_root>/<name> unless prepare.py wrote it: missing,
    empty, or holding nothing but DATASET_FILES (a damaged dataset included: prepare it again)."""
    folder = os.path.join(data_root, name)
    if why := why_not_own(folder, DATASET_FILES):
        raise UserError(f"{folder} is not a dataset that prepare.py wrote ({why}): move it away, or give "
                        "another --data_root")


def save(data_root, name, splits, meta, examples=None):
    """Write each split to <split>.bin (for instruction data also its examples' bounds to <split>.examples.npy)
    and meta.json into a temporary folder, swapped in for <data_root>/<name>/ (configurator.new_folder, which
    leaves the old one as it was on any failure) only if check_dataset_folder still allows it."""
    final = os.path.join(data_root, name)
    with new_folder(final, "; any previous dataset there is unchanged") as tmp:
        meta = {"dataset": name, **meta}
        for split, ids in splits.items():
            n = meta[f"{split}_tokens"] = write_split(os.path.join(tmp, f"{split}.bin"), ids)
            if n == 0:
                raise UserError(f"{name}: the {split} split came out empty: give it more text")
        for split, bounds in (examples or {}).items():
            np.save(os.path.join(tmp, f"{split}.examples.npy"), np.asarray(bounds, dtype=np.int64))
        with open(os.path.join(tmp, "meta.json"), "w") as f:  # one key a line, lists kept on theirs
            f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items()) + "\n}\n")
        check_dataset_folder(data_root, name)  # (main checked it before any work) what is there now is what goes
    for split in splits:
        print(f"{split}: {meta[f'{split}_tokens']:,} tokens")
    print(f"wrote {final}/ ({meta['tokenizer']} tokenizer, vocab_size {meta['vocab_size']})")


def split_90_10(seq):
    n = int(len(seq) * 0.9)
    return seq[:n], seq[n:]


# ---------------------------------------------------------------- datasets
# Each takes the config and returns ({split: token ids}, meta), for save(); instruction data
# also {split: its examples' bounds}.

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
    """Tiny Shakespeare in BPE, the same 90/10 split by characters."""
    tok, meta = chosen_bpe(config)
    data, source = shakespeare_text(config)
    train, val = split_90_10(data)
    return {"train": bpe(train, tok), "val": bpe(val, tok)}, meta | {"source": source}


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
    tok, meta = chosen_bpe(config, eot=True)
    texts = [read_text(f) for f in files]  # each file read (and checked: UTF-8) before any is tokenized
    docs = [bpe(text, tok, eot=True) for text in texts]
    if len(docs) >= 10:
        train, val = split_90_10(docs)
        splits = {"train": [i for d in train for i in d], "val": [i for d in val for i in d]}
    else:
        train, val = split_90_10([i for d in docs for i in d])
        splits = {"train": train, "val": val}
    return splits, meta | {"source": config["files"]}


def openwebtext(config):
    """OpenWebText (or --source), as nanoGPT: a shuffled val_fraction of the documents is val;
    each document is followed by <|endoftext|>."""
    tok, meta = chosen_bpe(config, eot=True)
    dataset = load_hf(config["source"], "openwebtext", None, "train", config["num_proc"])
    # owt by default only contains the 'train' split, so create a test split
    try:
        split_dataset = dataset.train_test_split(test_size=config["val_fraction"], seed=config["seed"], shuffle=True)
    except ValueError as e:
        raise UserError(f"cannot hold out --val_fraction={config['val_fraction']} of {len(dataset)} documents ({e})")
    split_dataset["val"] = split_dataset.pop("test")  # rename the test split to val
    splits = {split: tokenize(dset, tok, True, config["num_proc"], f"tokenizing {split}")
              for split, dset in split_dataset.items()}
    return splits, meta | {"source": config["source"] or "openwebtext"}


SPLITS = {"train": "train", "val": "validation", "test": "test"}  # ours -> Hugging Face's


def wanted_splits(text):
    """Our names of the splits in --splits (a comma-separated subset of train, val or
    validation, test), in that order."""
    wanted = {"val" if s.strip() == "validation" else s.strip() for s in text.split(",") if s.strip()}
    if not wanted or not wanted <= set(SPLITS):
        raise UserError(f"--splits={text}: give a comma-separated subset of train, val, test")
    return [s for s in SPLITS if s in wanted]


def wikitext(config):
    """WikiText-103 (raw): each split's lines joined as in the raw files (each row keeps its
    newline), in BPE, no <|endoftext|>. Only the splits in --splits (by default the validation
    and test splits, for evaluation; add train to train on it)."""
    order = wanted_splits(config["splits"] or "val,test")
    tok, meta = chosen_bpe(config)
    parts = load_hf(config["source"], "wikitext", "wikitext-103-raw-v1", [SPLITS[s] for s in order],
                    config["num_proc"])
    # tokenizing line by line gives the ids of the joined text: every row ends with its newline
    splits = {split: tokenize(dset, tok, False, config["num_proc"], f"tokenizing {split}")
              for split, dset in zip(order, parts)}
    return splits, meta | {"source": config["source"] or "wikitext/wikitext-103-raw-v1"}


def lambada_examples(config, hf_name, config_name):
    """A LAMBADA test set: the examples' ids back to back (no <|endoftext|>) in test.bin and
    val.bin, and in meta.json "examples": [start, target_start, end] for each, where
    ids[start:target_start] is the context and ids[target_start:end] the last word (with its
    leading spaces), the text split as lm-evaluation-harness splits it: at its last space, any
    whitespace before that going with the last word."""
    tok, meta = chosen_bpe(config)
    dset = load_hf(config["source"], hf_name, config_name, "test", config["num_proc"])
    check_text(dset)
    ids, examples = [], []
    for n, example in enumerate(dset["text"]):
        context = example[:max(example.rfind(" "), 0)].rstrip()
        if not context:
            raise UserError(f"lambada example {n} has no context before its last word: {example[:60]!r}")
        start = len(ids)
        ids += bpe(context, tok)
        target_start = len(ids)
        ids += bpe(example[len(context):], tok)
        examples.append([start, target_start, len(ids)])
    ids = np.array(ids, dtype=np.uint16)
    return {"val": ids, "test": ids}, meta | {"source": config["source"] or hf_name, "examples": examples}


def lambada(config):
    """LAMBADA, OpenAI's version (the harness's lambada_openai, the usual one)."""
    return lambada_examples(config, "EleutherAI/lambada_openai", "default")


def lambada_standard(config):
    """LAMBADA, the original release (the harness's lambada_standard)."""
    return lambada_examples(config, "cimec/lambada", None)


PILE = "monology/pile-uncopyrighted"  # the Pile less Books3, BookCorpus2, OpenSubtitles, YTSubtitles, OWT2
# its files, as the Pile itself was served: a local --source folder is laid out the same way
PILE_FILES = {"train": "train/*.jsonl.zst", "validation": "val.jsonl.zst", "test": "test.jsonl.zst"}
JSON_FILES = (".jsonl", ".json", ".jsonl.zst", ".json.zst")


def pile_files(folder, split):
    """The files of one of our splits in a local folder laid out like the Pile: <split>.jsonl.zst
    or a <split>/ folder of them (also .jsonl, .json, .json.zst; val may be called validation)."""
    names = ("val", "validation") if split == "val" else (split,)
    found = sorted(f for name in names for pattern in (f"{name}.*", os.path.join(name, "*"))
                   for f in glob.glob(os.path.join(folder, pattern)) if f.endswith(JSON_FILES))
    if not found:
        raise UserError(f"--source={folder} has no {split} files: lay it out like the Pile (train/00.jsonl.zst "
                        f"..., val.jsonl.zst, test.jsonl.zst; or .jsonl, .json), or leave {split} out of --splits")
    return found


def pile(config):
    """The Pile that Pythia was trained on, less its copyrighted subsets (PILE, or --source: a
    local folder laid out like the Pile, or another Hugging Face name), each document followed by
    <|endoftext|>, in the order its files hold them. --splits: which of train, val and test
    (all three by default; val and test alone are what evaluation reads, and download little)."""
    order = wanted_splits(config["splits"] or "train,val,test")
    tok, meta = chosen_bpe(config, eot=True)
    source = config["source"]
    if os.path.isdir(source):
        data_files = {SPLITS[s]: pile_files(source, s) for s in order}
    else:  # PILE: only the files of the splits asked for; another name: whatever it holds
        data_files = None if source else {SPLITS[s]: [PILE_FILES[SPLITS[s]]] for s in order}
    if data_files and any(f.endswith(".zst") for files in data_files.values() for f in files):
        try:
            import zstandard  # noqa: F401  the Pile's files are zstd-compressed JSON lines
        except ImportError:
            raise UserError("the Pile's .jsonl.zst files need zstandard: pip install zstandard")
    parts = load_hf(source, PILE, None, [SPLITS[s] for s in order], config["num_proc"], data_files)
    splits = {split: tokenize(dset, tok, True, config["num_proc"], f"tokenizing {split}")
              for split, dset in zip(order, parts)}
    return splits, meta | {"source": source or PILE}


ALPACA_FIELDS = ("instruction", "input", "output")  # input may be missing or empty


def read_instructions(source, num_proc):
    """The records of an instruction dataset: the Hugging Face hub's tatsu-lab/alpaca, or
    --source: a local .json file (a list of records, as Stanford Alpaca's alpaca_data.json) or
    .jsonl file (a record a line), a local dataset folder or another hub name."""
    if source.endswith((".json", ".jsonl")) or os.path.isfile(source):
        text = read_text(source)
        try:
            if source.endswith(".jsonl"):
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{source} is not valid JSON{' lines' if source.endswith('.jsonl') else ''} "
                            f"(line {e.lineno}: {e.msg}): fix the file")
    dset = load_hf(source, "tatsu-lab/alpaca", None, "train", num_proc)
    if not {"instruction", "output"} <= set(dset.column_names):
        raise UserError(f"{source or 'tatsu-lab/alpaca'} has no instruction and output columns (it has "
                        f"{', '.join(dset.column_names)}): give a dataset with {', '.join(ALPACA_FIELDS)}")
    return dset.select_columns([f for f in ALPACA_FIELDS if f in dset.column_names]).to_list()


def instruction_tokenizer(config):
    """(Tokenizer, its meta.json entries): --tokenizer's, or with --ckpt the checkpoint's."""
    from dataset import Tokenizer
    if config["ckpt"]:
        from checkpoint import load_checkpoint, run_meta  # (loads PyTorch)
        meta = run_meta(load_checkpoint(config["ckpt"]), config["ckpt"])
        tokenizer = Tokenizer(meta)
        described = {k: v for k, v in meta.items() if k in ("tokenizer", "tokenizer_path")}
    else:  # main() has checked --tokenizer
        described = {"tokenizer": config["tokenizer"]}
        if config["tokenizer"] == "neox":
            described["tokenizer_path"] = config["tokenizer_path"]
        tokenizer = Tokenizer(described)
    if tokenizer.eot_token is None:
        raise UserError(f"{config['ckpt']} reads characters: instruction data needs a tokenizer with an "
                        "end-of-text token (a model trained on GPT-2 BPE or Pythia's)")
    return tokenizer, described


def alpaca(config):
    """Instruction data: each example is its Alpaca prompt (dataset.alpaca_prompt), then its output
    and the end-of-text token, in the tokenizer of the model to fine-tune. A shuffled val_fraction
    of the examples (at least one) is val. Each split's examples are written back to back, and
    their bounds [start, target_start, end] to <split>.examples.npy: the response is
    ids[target_start:end], the only tokens train.py trains on."""
    from dataset import alpaca_prompt
    tokenizer, described = instruction_tokenizer(config)
    source = config["source"] or "tatsu-lab/alpaca"
    records = read_instructions(config["source"], config["num_proc"])
    if not isinstance(records, list) or not records:
        raise UserError(f"{source} holds no examples: give a list of records with {', '.join(ALPACA_FIELDS)}")
    examples = []  # (instruction, input, output)
    for n, record in enumerate(records):
        instruction, input, output = (record.get(f) if isinstance(record, dict) else None for f in ALPACA_FIELDS)
        input = input or ""  # optional
        if not all(isinstance(f, str) for f in (instruction, input, output)):
            found = (", ".join(record) or "nothing") if isinstance(record, dict) else f"a {type(record).__name__}"
            raise UserError(f"{source}: example {n} is not an instruction (it has {found}): each needs "
                            "instruction, output and optionally input, as text")
        examples.append((instruction, input, output))
    n_val = max(1, round(len(examples) * config["val_fraction"]))
    if n_val >= len(examples):
        raise UserError(f"{source} has {len(examples)} example(s): too few to hold out a val split "
                        "and train on the rest")
    is_val = np.zeros(len(examples), dtype=bool)
    is_val[np.random.default_rng(config["seed"]).permutation(len(examples))[:n_val]] = True
    splits, bounds = {"train": [], "val": []}, {"train": [], "val": []}
    for (instruction, input, output), val in zip(examples, is_val):
        split = "val" if val else "train"
        prompt = tokenizer.encode_ordinary(alpaca_prompt(instruction, input))
        response = tokenizer.encode_ordinary(output) + [tokenizer.eot_token]
        start = len(splits[split])
        splits[split] += prompt + response
        bounds[split].append([start, start + len(prompt), len(splits[split])])
    meta = {**described, "vocab_size": tokenizer.vocab_size, "template": "alpaca",
            "eot_token": tokenizer.eot_token, "source": source,
            "train_examples": len(bounds["train"]), "val_examples": len(bounds["val"])}
    return splits, meta, bounds


BPE_OPTIONS = ("tokenizer", "tokenizer_path")
# each dataset: what reads it, the options it takes besides data_root, and its own tokenizer
DATASETS = {
    "shakespeare_char": (shakespeare_char, ("source",), "char"),
    "shakespeare": (shakespeare, ("source",) + BPE_OPTIONS, "gpt2"),
    "text": (text, ("files",) + BPE_OPTIONS, "gpt2"),
    "openwebtext": (openwebtext, ("source", "num_proc", "val_fraction", "seed") + BPE_OPTIONS, "gpt2"),
    "wikitext": (wikitext, ("source", "num_proc", "splits") + BPE_OPTIONS, "gpt2"),
    "lambada": (lambada, ("source", "num_proc") + BPE_OPTIONS, "gpt2"),
    "lambada_standard": (lambada_standard, ("source", "num_proc") + BPE_OPTIONS, "gpt2"),
    "pile": (pile, ("source", "num_proc", "splits") + BPE_OPTIONS, "neox"),
    "alpaca": (alpaca, ("source", "num_proc", "val_fraction", "seed", "ckpt") + BPE_OPTIONS, "gpt2"),
}


def dataset_folder(name, tokenizer, own_tokenizer):
    """The folder under data_root of dataset name in tokenizer: a dataset in another tokenizer than
    its own (--tokenizer, alpaca --ckpt: the checkpoint's) goes next to it, NAME_<tokenizer>."""
    return name if tokenizer == own_tokenizer else f"{name}_{tokenizer}"


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
    prepare, options, own_tokenizer = DATASETS[name]
    stray = [k for k in config if config[k] != DEFAULTS[k] and k not in ("data_root",) + options]
    if stray:
        raise UserError(f"--{stray[0]} does not apply to {name} (its options: data_root, {', '.join(options)})")
    # the BPE: the dataset's own, or another one written next to it, as NAME_<tokenizer>/
    config["tokenizer"] = config["tokenizer"] or own_tokenizer
    if "tokenizer" in options and config["tokenizer"] not in ("gpt2", "neox"):
        raise UserError(f"--tokenizer={config['tokenizer']}: use gpt2 or neox")
    if config["tokenizer_path"] != DEFAULTS["tokenizer_path"] and config["tokenizer"] != "neox":
        raise UserError("--tokenizer_path applies to the neox tokenizer: add --tokenizer=neox")
    path = os.path.expanduser(config["tokenizer_path"])
    config["tokenizer_path"] = os.path.abspath(path) if os.path.isdir(path) else path  # meta.json works from anywhere
    if not config["ckpt"]:  # the folder to replace, before any work (alpaca --ckpt's tokenizer is the run's)
        check_dataset_folder(config["data_root"], dataset_folder(name, config["tokenizer"], own_tokenizer))
    splits, meta, *bounds = prepare(config)  # instruction data also gives its examples' bounds
    save(config["data_root"], dataset_folder(name, meta["tokenizer"], own_tokenizer), splits, meta, *bounds)


if __name__ == "__main__":
    run_main(main)
