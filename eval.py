"""
Perplexity of trained checkpoints on prepared test sets, laid out like the paper's Table 2, and
LAMBADA last-word perplexity and accuracy.

    python prepare.py wikitext && python prepare.py lambada
    python eval.py --ckpt=out-gpt2,out-contextlm --datasets=wikitext,lambada --json=table2.json
    python eval.py --ckpt=out-shakespeare-char --datasets=shakespeare_char --max_tokens=20000

Each dataset is read from <data_root>/<NAME>/test.bin, or val.bin where it has no test split.

Perplexity uses a sliding window over the whole split, so every token is scored exactly once
and with as much left context as block_size allows. The targets are ids[1:]. Every window is
L = min(block_size, len(ids) - 1) consecutive tokens ids[e-L:e], predicting ids[e-L+1 .. e]:
  - the first window ends at e = L and scores all of its targets, ids[1 .. L];
  - each next one ends `stride` tokens later, e = min(e_prev + stride, len(ids) - 1), and scores
    only its new targets ids[e_prev+1 .. e] (its last e - e_prev positions); its earlier
    positions are context only;
  - so the last window ends exactly at the end of the split (moving by less than `stride`).
A target ids[t] with t <= L sees all of ids[0:t]; a later one sees between block_size - stride
+ 1 and block_size tokens. stride = block_size gives non-overlapping windows (fast, less
context); stride = 1 gives every target a full block_size of context (slowest).
--batch_size windows go through the model together: raise it for tiny models, lower it when
the logits (batch_size x block_size x vocab_size floats) do not fit in memory.

LAMBADA (a dataset whose meta.json has "examples"): the token-level perplexity above, and its
last words scored as lm-evaluation-harness scores lambada_openai (the numbers published for
LAMBADA, the paper's Table 2 among them):
  - word ppl: exp of minus the mean, over examples, of the last word's log-likelihood given
    its context (summed over the word's tokens: a per-word, not a per-token, perplexity);
  - acc: an example is right when greedy prediction gets every token of the last word right
    (teacher-forced over the word's tokens).
Contexts longer than the window keep their last tokens.
"""

import json
import math
import os
import sys

import numpy as np
import torch
from torch.nn import functional as F

from common import (UserError, at_least, checkpoint_path, load_checkpoint, load_meta, model_from_checkpoint,
                    open_split, parse_config, run_main, setup_device)

DEFAULTS = dict(
    ckpt="out",                  # comma-separated checkpoint directories (each holds ckpt.pt)
    datasets="wikitext,lambada",  # comma-separated dataset names under data_root (see prepare.py)
    data_root="data",
    stride=0,                    # sliding-window step in tokens; 0 = block_size // 2
    batch_size=8,                # windows (or LAMBADA examples) per forward pass
    max_tokens=0,                # evaluate only the first max_tokens tokens of each split; 0 = all
    json="",                     # also write the results to this JSON file
    device="auto",
    dtype="auto",
)

# the valid values of the options above that need a check (common's; stride <= block_size: main)
CHECKS = dict(stride=at_least(0, "0 = block_size // 2"), batch_size=at_least(1), max_tokens=at_least(0, "0 = all"))


# ---------------------------------------------------------------- perplexity

def window_schedule(n_ids, block_size, stride):
    """[(start, n_scored), ...]: every window is ids[start:start + L], L = min(block_size,
    n_ids - 1), and scores the targets of its last n_scored positions (the module docstring
    gives the rule)."""
    L = min(block_size, n_ids - 1)
    if L < 1:
        return []
    windows, end = [(0, L)], L
    while end < n_ids - 1:
        new_end = min(end + stride, n_ids - 1)
        windows.append((new_end - L, new_end - end))
        end = new_end
    return windows


@torch.no_grad()
def sliding_window_nll(model, ids, block_size, stride, batch_size, device, autocast):
    """(total NLL in nats, number of scored tokens) of the 1-D LongTensor ids, every target
    ids[1:] scored exactly once by the sliding window of window_schedule."""
    windows = window_schedule(len(ids), block_size, stride)
    L = min(block_size, len(ids) - 1)
    total, count = 0.0, 0
    for b in range(0, len(windows), batch_size):
        batch = windows[b:b + batch_size]
        x = torch.stack([ids[s:s + L] for s, _ in batch]).to(device)
        y = torch.stack([ids[s + 1:s + L + 1] for s, _ in batch]).to(device)
        with autocast:
            logits, _ = model(x, all_logits=True)
        for i, (_, n) in enumerate(batch):
            # only the window's last n positions: its earlier ones were scored by a previous window
            total += F.cross_entropy(logits[i, L - n:].float(), y[i, L - n:], reduction="sum").item()
            count += n
    return total, count


# ---------------------------------------------------------------- LAMBADA

@torch.no_grad()
def lambada_last_word(model, ids, examples, block_size, batch_size, device, autocast):
    """(number right, summed negative log-likelihood of the last words) over the examples
    [start, target_start, end], the last word being ids[target_start:end], each of its tokens
    predicted from the context and the word's earlier tokens (teacher forcing). An example is
    right when every one of those predictions' argmax is the word's token."""
    if not examples:
        return 0, 0.0
    longest = max(end - target_start for _, target_start, end in examples)
    if longest > block_size:
        raise UserError(f"a LAMBADA last word has {longest} tokens, more than block_size={block_size}")
    right, nll = 0, 0.0
    for b in range(0, len(examples), batch_size):
        batch = examples[b:b + batch_size]
        # the input is context + last word minus its final token, cropped to its last block_size
        inputs = [ids[max(start, end - 1 - block_size):end - 1] for start, _, end in batch]
        # right-padding is harmless: attention and context chunks are causal, so the padded
        # positions never change the logits of the real ones before them
        T = max(len(x) for x in inputs)
        x = torch.zeros(len(batch), T, dtype=torch.long)
        for i, inp in enumerate(inputs):
            x[i, :len(inp)] = inp
        with autocast:
            logits, _ = model(x.to(device), all_logits=True)
        for i, (inp, (_, target_start, end)) in enumerate(zip(inputs, batch)):
            n = end - target_start  # the last word's tokens are predicted at the input's last n positions
            word_logits, word = logits[i, len(inp) - n:len(inp)].float().cpu(), ids[target_start:end]
            right += bool((word_logits.argmax(dim=-1) == word).all())
            nll += F.cross_entropy(word_logits, word, reduction="sum").item()
    return right, nll


# ---------------------------------------------------------------- the script

def ppl(mean_nll):
    return math.exp(min(mean_nll, 700.0))  # capped: an untrained model must not overflow


def load_dataset(data_root, name, max_tokens):
    """(ids as a LongTensor, split name, meta) of a prepared dataset: test.bin, else val.bin."""
    meta = load_meta(data_root, name)
    split = "test" if os.path.isfile(os.path.join(data_root, name, "test.bin")) else "val"
    data = open_split(data_root, name, split)
    if max_tokens > 0:
        data = data[:max_tokens]
    if len(data) < 2:
        raise UserError(f"the {split} split of '{name}' ({os.path.join(data_root, name, split + '.bin')}) has "
                        f"{len(data)} token(s): nothing to score (prepare it again, or raise --max_tokens)")
    return torch.from_numpy(data.astype(np.int64)), split, meta


def check_tokenizer(ckpt_meta, meta, ckpt_dir, name, vocab_size):
    """The checkpoint must read token ids the way the dataset wrote them."""
    if ckpt_meta is None:
        raise UserError(f"{ckpt_dir}: the checkpoint does not say which tokenizer it uses (no 'meta'): "
                        "train it again with train.py")
    if ckpt_meta["tokenizer"] != meta["tokenizer"]:
        raise UserError(f"{ckpt_dir} uses the {ckpt_meta['tokenizer']} tokenizer but '{name}' is tokenized "
                        f"with {meta['tokenizer']}: evaluate on a dataset prepared with the model's tokenizer")
    if meta["tokenizer"] == "char" and ckpt_meta.get("chars") != meta.get("chars"):
        raise UserError(f"{ckpt_dir} and '{name}' use different character vocabularies: "
                        "evaluate on the dataset the model was trained on")
    if meta["vocab_size"] > vocab_size:
        raise UserError(f"'{name}' has {meta['vocab_size']} token ids, more than the model's vocab_size={vocab_size}")


def print_table(results, names, datasets):
    """A row per checkpoint, a column per dataset (LAMBADA also its last-word ppl and accuracy),
    then the mean token-level ppl."""
    header = ["model"]
    for d in datasets:
        header += [f"{d} ppl"] + ([f"{d} word ppl", f"{d} acc"] if "acc" in results[0][d] else [])
    header.append("avg ppl")
    rows = []
    for name, res in zip(names, results):
        row = [name]
        for d in datasets:
            row.append(f"{res[d]['ppl']:.2f}")
            if "acc" in res[d]:
                row += [f"{res[d]['word_ppl']:.2f}", f"{100 * res[d]['acc']:.2f}%"]
        row.append(f"{sum(res[d]['ppl'] for d in datasets) / len(datasets):.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print(" | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))))


def main():
    c = parse_config(DEFAULTS, sys.argv[1:], CHECKS)
    ckpt_dirs = [d for d in c["ckpt"].split(",") if d]
    datasets = [d for d in c["datasets"].split(",") if d]
    if not ckpt_dirs or not datasets:
        raise UserError("name at least one checkpoint and one dataset: --ckpt=DIR[,DIR...] --datasets=NAME[,NAME...]")
    device, _, _, autocast = setup_device(c["device"], c["dtype"])

    # check every input before the long part starts (checkpoints are loaded one at a time later)
    data = {name: load_dataset(c["data_root"], name, c["max_tokens"]) for name in datasets}
    for d in ckpt_dirs:
        checkpoint_path(d)
    json_dir = os.path.dirname(c["json"]) or "."
    if c["json"] and not (os.path.isdir(json_dir) and os.access(json_dir, os.W_OK)):
        raise UserError(f"cannot write --json={c['json']}: {json_dir} is not a folder that can be written to")

    results, names = [], []
    for ckpt_dir in ckpt_dirs:
        checkpoint = load_checkpoint(ckpt_dir)
        checkpoint.pop("optimizer", None)  # not needed here, and as big as the model twice over
        for d in datasets:
            check_tokenizer(checkpoint.get("meta"), data[d][2], ckpt_dir, d, checkpoint["model_args"]["vocab_size"])
        model = model_from_checkpoint(checkpoint, ckpt_dir).eval().to(device)
        block_size = model.config.block_size
        stride = c["stride"] or max(1, block_size // 2)
        if stride > block_size:
            raise UserError(f"--stride={stride} is more than {ckpt_dir}'s block_size={block_size}: "
                            "targets would be skipped; use a stride <= block_size")
        n = model.param_breakdown()
        # a row is named after the checkpoint's folder
        path = os.path.normpath(os.path.dirname(ckpt_dir) if ckpt_dir.endswith(".pt") else ckpt_dir)
        names.append(f"{os.path.basename(path) or path} ({(n['token'] + n['predictor']) / 1e6:.4g}M)")
        res = {}
        for d in datasets:
            ids, split, meta = data[d]
            total, count = sliding_window_nll(model, ids, block_size, stride, c["batch_size"], device, autocast)
            res[d] = {"ppl": ppl(total / count), "tokens": count}
            print(f"{names[-1]} on {d}/{split}: ppl {res[d]['ppl']:.3f} over {count:,} tokens "
                  f"(window {min(block_size, len(ids) - 1)}, stride {stride})", file=sys.stderr)
            if "examples" in meta:  # LAMBADA: its last words too
                examples = [e for e in meta["examples"] if e[2] <= len(ids)]
                if not examples:
                    raise UserError(f"no LAMBADA example of '{d}' fits in --max_tokens={c['max_tokens']}: "
                                    "raise it (0 = all)")
                right, nll = lambada_last_word(model, ids, examples, block_size, c["batch_size"], device, autocast)
                res[d] |= {"word_ppl": ppl(nll / len(examples)), "acc": right / len(examples),
                           "examples": len(examples)}
                print(f"{names[-1]} on {d}/{split}: last-word ppl {res[d]['word_ppl']:.3f}, accuracy "
                      f"{100 * res[d]['acc']:.2f}% over {len(examples):,} examples", file=sys.stderr)
        results.append(res)
        del model, checkpoint

    print_table(results, names, datasets)
    if c["json"]:
        try:
            with open(c["json"], "w") as f:
                json.dump(dict(zip(ckpt_dirs, results)), f, indent=2)
        except OSError as e:
            raise UserError(f"cannot write --json={c['json']}: {e.strerror}")


if __name__ == "__main__":
    run_main(main)
