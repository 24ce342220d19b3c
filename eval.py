"""
Evaluate checkpoints the way the paper does: perplexity on prepared test sets (its Table 2), downstream
tasks through lm-evaluation-harness (its Table 4), and loss by position within the window (its Figure 5
question: does the gain grow with context?). --ckpt takes train.py runs, export.py's folders, GPT-2 or
Pythia weights; docs/evaluation.md has every column, the sliding window and the harness's requests.

    python prepare.py wikitext && python prepare.py lambada && python prepare.py lambada_standard
    python eval.py --ckpt=out-gpt2,out-contextlm --datasets=openwebtext,wikitext,lambada,lambada_standard \
        --json=results.json
    python eval.py --ckpt=out-gpt2,out-contextlm,gpt2 --tasks=paper --num_fewshot=0 --json=results.json
    python eval.py --ckpt=out-gpt2,out-contextlm --datasets=openwebtext --by_position=True --json=positions.json
    python eval.py --ckpt=out-shakespeare-char --datasets=shakespeare_char --max_tokens=20000
"""

import difflib
import functools
import json
import math
import os
import sys

import numpy as np
import torch
from torch.nn import functional as F

from checkpoint import is_pretrained, load_checkpoint, load_run, pretrained_tokenizer, run_meta
from configurator import UserError, at_least, parse_config, run_main, write_text
from dataset import Tokenizer, check_same_tokenizer, load_meta, open_split
from device import setup_device

DEFAULTS = dict(
    ckpt="out",                  # comma-separated checkpoint directories (each holds ckpt.pt), GPT-2 or Pythia names
    datasets="",                 # comma-separated dataset names under data_root (see prepare.py): Table 2
    tasks="",                    # comma-separated lm-evaluation-harness tasks, or `paper`: Table 4
    num_fewshot=0,               # tasks: examples shown before each question (the paper: 0 and 5)
    limit=0,                     # tasks: evaluate only the first `limit` examples of each; 0 = all
    include_path="",             # tasks: a folder of extra task YAML files
    by_position=False,           # datasets: also the loss at each position of the window
    data_root="data",
    stride=0,                    # sliding-window step in tokens; 0 = block_size // 2
    batch_size=8,                # windows, LAMBADA examples or harness requests per forward pass
    max_tokens=0,                # evaluate only the first max_tokens tokens of each split; 0 = all
    json="",                     # also merge the results into this JSON file
    device="auto",
    dtype="auto",
)

# The paper's Table 4, in its column order. Its one metric per task, averaged into "Avg Acc", is
# the harness's acc (acc_norm is in the JSON too).
PAPER_TASKS = ("lambada_openai", "arc_easy", "lambada_standard", "arc_challenge", "winogrande", "piqa", "hellaswag",
               "sciq", "race")
# the valid values of the options above that need a check (config's; stride <= block_size: main)
CHECKS = dict(stride=at_least(0, "0 = block_size // 2"), batch_size=at_least(1), max_tokens=at_least(0, "0 = all"),
              num_fewshot=at_least(0), limit=at_least(0, "0 = all"))


# ---------------------------------------------------------------- perplexity

def window_schedule(n_ids, block_size, stride):
    """[(start, n_scored), ...]: every window is ids[start:start + L], L = min(block_size, n_ids - 1), and
    scores the targets of its last n_scored positions. The first window ends at e = L and scores all its
    targets, ids[1 .. L]; each next one ends stride tokens later, e = min(e_prev + stride, n_ids - 1), and
    scores only its new targets ids[e_prev+1 .. e]: each target once (docs/evaluation.md has the rule)."""
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


# ---------------------------------------------------------------- continuations: LAMBADA, harness requests

@torch.no_grad()
def score_continuations(model, pairs, block_size, batch_size, device, autocast):
    """[(log-likelihood, is_greedy), ...] of each (context ids, continuation ids) pair of lists:
    the summed log-probability of the continuation's tokens, each given everything before it,
    and whether every one of them is the model's argmax there (teacher forcing). The input is
    context + continuation minus its last token, cropped to its last block_size tokens: a long
    context loses its start, the continuation keeps its whole window (it must fit in one)."""
    longest = max((len(cont) for _, cont in pairs), default=0)
    if longest > block_size:
        raise UserError(f"a continuation to score has {longest} tokens, more than block_size={block_size}: "
                        "use a model with a longer window, or a task with shorter answers")
    # longest inputs first: a batch holds similar lengths, so little padding
    order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
    results = [None] * len(pairs)
    for b in range(0, len(order), batch_size):
        batch = order[b:b + batch_size]
        inputs = [(pairs[i][0] + pairs[i][1])[-(block_size + 1):-1] for i in batch]
        # right-padding is harmless: attention and context chunks are causal, so the padded
        # positions never change the logits of the real ones before them
        x = torch.zeros(len(batch), max(map(len, inputs)), dtype=torch.long)
        for row, inp in enumerate(inputs):
            x[row, :len(inp)] = torch.tensor(inp)
        with autocast:
            logits, _ = model(x.to(device), all_logits=True)
        for row, (i, inp) in enumerate(zip(batch, inputs)):
            cont = torch.tensor(pairs[i][1])
            # the continuation's tokens are predicted at the input's last len(cont) positions
            logprobs = F.log_softmax(logits[row, len(inp) - len(cont):len(inp)].float(), dim=-1).cpu()
            results[i] = (logprobs.gather(1, cont[:, None]).sum().item(), bool((logprobs.argmax(-1) == cont).all()))
    return results


def lambada_last_word(model, ids, examples, block_size, batch_size, device, autocast):
    """(number right, summed negative log-likelihood of the last words) over the examples
    [start, target_start, end] of the 1-D LongTensor ids, the last word being
    ids[target_start:end] and its context ids[start:target_start] (score_continuations)."""
    pairs = [(ids[start:target_start].tolist(), ids[target_start:end].tolist())
             for start, target_start, end in examples]
    scores = score_continuations(model, pairs, block_size, batch_size, device, autocast)
    return sum(greedy for _, greedy in scores), -sum(logprob for logprob, _ in scores)


# ---------------------------------------------------------------- loss by position in the window

@torch.no_grad()
def loss_by_position(model, ids, block_size, batch_size, device, autocast):
    """(mean loss at each position of the window as a list of block_size floats, number of
    windows). The 1-D LongTensor ids is cut into non-overlapping windows of block_size + 1 tokens
    ids[s:s + block_size + 1]; position t predicts the window's token t + 1 from its t + 1 first."""
    n_windows = (len(ids) - 1) // block_size
    if n_windows == 0:
        raise UserError(f"--by_position needs at least block_size + 1 = {block_size + 1} tokens, the split has "
                        f"{len(ids)}: raise --max_tokens (0 = all)")
    total = torch.zeros(block_size)
    for b in range(0, n_windows, batch_size):
        starts = range(b * block_size, min(b + batch_size, n_windows) * block_size, block_size)
        x = torch.stack([ids[s:s + block_size] for s in starts]).to(device)
        y = torch.stack([ids[s + 1:s + block_size + 1] for s in starts]).to(device)
        with autocast:
            logits, _ = model(x, all_logits=True)
        loss = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")  # (B, block_size)
        total += loss.sum(dim=0).cpu()
    return (total / n_windows).tolist(), n_windows


# ---------------------------------------------------------------- lm-evaluation-harness

@functools.cache
def harness_lm_class():
    """harness.HarnessLM, this repo's GPT as an lm-evaluation-harness model, scoring with this
    file's functions. Imported at first use, so that lm_eval is needed only when --tasks is used."""
    try:
        import lm_eval.api.model  # noqa: F401
    except ImportError:
        raise UserError("--tasks needs lm-evaluation-harness: pip install -r requirements-eval.txt")
    from harness import HarnessLM
    return functools.partial(HarnessLM, score_pairs=score_continuations, score_text=sliding_window_nll)


@functools.cache
def task_manager(include_path):
    """The harness's index of its ~15,000 task files and include_path's: seconds to build, so
    once per process."""
    from lm_eval.tasks import TaskManager
    if include_path and not os.path.isdir(include_path):
        raise UserError(f"--include_path={include_path} is not a folder: give a folder of task YAML files")
    return TaskManager(include_path=include_path or None)


def resolve_tasks(spec, include_path):
    """The task names in --tasks (`paper` stands for PAPER_TASKS), each one the harness knows."""
    harness_lm_class()  # a missing lm_eval is reported first
    names = []
    for name in (t.strip() for t in spec.split(",") if t.strip()):
        names += PAPER_TASKS if name == "paper" else [name]
    known = set(task_manager(include_path).all_tasks)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"unknown task '{name}'{hint}: list the harness's tasks with `lm-eval ls tasks`, "
                            "or add your own task YAML with --include_path=DIR")
    return list(dict.fromkeys(names))  # each once, in order


def evaluate_tasks(lm, tasks, include_path, num_fewshot, limit, batch_size):
    """{TASK: {"acc": ..., "acc_norm": ..., other metrics, "n": examples, "num_fewshot": ...}}
    from lm_eval.simple_evaluate (its task loading, request building and metrics). A task
    evaluated with shots is keyed TASK@Nshot, so that 0- and 5-shot results live side by side."""
    import lm_eval
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager(include_path),
                                      num_fewshot=num_fewshot, limit=limit or None, batch_size=batch_size,
                                      log_samples=False)
    except (ConnectionError, FileNotFoundError) as e:  # a dataset the harness cannot reach or find
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the tasks' data ({why}): the harness downloads it from the Hugging Face "
                        "hub, so check the network, or the task YAML's dataset_path and data_files")
    results = {}
    for task, counts in out["n-samples"].items():  # leaf tasks only, not groups
        # the harness keys metrics "METRIC,FILTER" ("none": no filter); a stderr it did not compute is "N/A"
        metrics = {key.removesuffix(",none"): value for key, value in out["results"][task].items()
                   if "," in key and isinstance(value, (int, float))}
        shots = out["n-shot"][task]
        results[task if shots == 0 else f"{task}@{shots}shot"] = metrics | {"n": counts["effective"],
                                                                            "num_fewshot": shots}
    return results


# ---------------------------------------------------------------- the script

def ppl(mean_nll):
    return math.exp(min(mean_nll, 700.0))  # capped: an untrained model must not overflow


def load_dataset(data_root, name, max_tokens):
    """(ids as a LongTensor, split name, meta) of a prepared dataset: test.bin, else val.bin; a
    LAMBADA's meta keeps the examples within max_tokens (there must be one)."""
    meta = load_meta(data_root, name)
    split = "test" if os.path.isfile(os.path.join(data_root, name, "test.bin")) else "val"
    data = open_split(data_root, name, split)
    if max_tokens > 0:
        data = data[:max_tokens]
    if len(data) < 2:
        raise UserError(f"the {split} split of '{name}' ({os.path.join(data_root, name, split + '.bin')}) has "
                        f"{len(data)} token(s): nothing to score (prepare it again, or raise --max_tokens)")
    if "examples" in meta:
        meta = meta | {"examples": [e for e in meta["examples"] if e[2] <= len(data)]}
        if not meta["examples"]:
            raise UserError(f"no LAMBADA example of '{name}' fits in --max_tokens={max_tokens}: raise it (0 = all)")
    return torch.from_numpy(data.astype(np.int64)), split, meta


def checkpoint_tokenizer(spec):
    """(meta, vocab_size) of spec as load_run will load it, read now: a damaged or missing
    checkpoint fails before any other one is evaluated. A train.py run's checkpoint is opened
    memory-mapped (its tensors are not read here); Hugging Face weights' config.json only, their
    vocab_size (None) checked once they load."""
    if is_pretrained(spec):
        return pretrained_tokenizer(spec), None
    checkpoint = load_checkpoint(spec, mmap=True)
    return run_meta(checkpoint, spec), checkpoint["model_args"].get("vocab_size")


def load_model(spec):
    """(model on the CPU in eval mode, its tokenizer's meta, the row's name) of a train.py
    checkpoint, or of Hugging Face weights as they are: GPT-2 or Pythia, no predictor."""
    model, meta, _ = load_run(spec)
    n = model.param_breakdown()
    # a row is named after the checkpoint's folder
    path = os.path.normpath(os.path.dirname(spec) if spec.endswith(".pt") else spec)
    return model.eval(), meta, f"{os.path.basename(path) or path} ({(n['token'] + n['predictor']) / 1e6:.4g}M)"


def check_tokenizer(ckpt_meta, meta, spec, name, vocab_size):
    """The model must read token ids the way the dataset wrote them (vocab_size None: not known yet)."""
    check_same_tokenizer(ckpt_meta, meta, spec, f"'{name}'",
                         "evaluate on a dataset prepared with the model's tokenizer")
    if vocab_size is not None and meta["vocab_size"] > vocab_size:
        raise UserError(f"'{name}' has {meta['vocab_size']} token ids, more than the model's vocab_size={vocab_size}")


def print_rows(header, rows):
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print(" | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))))


def print_table2(results, names, datasets):
    """The paper's Table 2: a row per checkpoint, a ppl column per dataset (word ppl and acc for
    LAMBADA), their mean; then what each column is."""
    lambada = [d for d in datasets if "word_ppl" in results[0][d]]
    header, notes = ["model"], []
    for d in datasets:
        header += [f"{d} word ppl", f"{d} acc"] if d in lambada else [f"{d} ppl"]
        notes.append(f"{d}: " + ("last-word perplexity (per word, as lm-evaluation-harness's lambada) and "
                                 "accuracy (every last-word token greedy)" if d in lambada else
                                 f"token-level perplexity of the {results[0][d]['split']} split, sliding window "
                                 f"(stride {results[0][d]['stride']})"))
    header.append("avg ppl")
    rows = []
    for name, res in zip(names, results):
        cells = [[f"{res[d]['word_ppl']:.2f}", f"{100 * res[d]['acc']:.2f}%"] if d in lambada else
                 [f"{res[d]['ppl']:.2f}"] for d in datasets]
        paper_ppl = [res[d]["word_ppl" if d in lambada else "ppl"] for d in datasets]
        rows.append([name] + sum(cells, []) + [f"{sum(paper_ppl) / len(paper_ppl):.2f}"])
    print_rows(header, rows)
    for note in notes + ["avg ppl: mean of the ppl columns, word ppl for LAMBADA (the paper's Avg PPL)"]:
        print(f"  {note}")


def print_table4(results, names, keys):
    """The paper's Table 4: a row per checkpoint, a column per task (acc in %, or the task's
    first metric where it has no acc), the mean of the acc columns; then what they are."""
    first = results[0]
    metric = {k: "acc" if "acc" in first[k] else next(m for m in first[k] if m not in ("n", "num_fewshot"))
              for k in keys}
    accs = [k for k in keys if metric[k] == "acc"]
    header = ["model"] + [k if metric[k] == "acc" else f"{k} {metric[k]}" for k in keys] + ["avg acc"] * bool(accs)
    rows = []
    for name, res in zip(names, results):
        row = [f"{100 * res[k]['acc']:.1f}" if metric[k] == "acc" else f"{res[k][metric[k]]:.4g}" for k in keys]
        avg = [f"{100 * sum(res[k]['acc'] for k in accs) / len(accs):.1f}"] * bool(accs)
        rows.append([name] + row + avg)
    print_rows(header, rows)
    shots = "/".join(str(s) for s in sorted({first[k]["num_fewshot"] for k in keys}))
    print(f"  {shots}-shot, lm-evaluation-harness; examples per task: {', '.join(str(first[k]['n']) for k in keys)}")
    print("  acc: % of examples whose right answer has the highest log-likelihood (acc_norm, per character, "
          "is in --json);")
    print("  LAMBADA: % of examples whose last word is the greedy choice; avg acc: mean of the acc columns")


def print_positions(results, names, datasets):
    """Mean loss by position in the window, in buckets of context length 1, 2-3, 4-7, ..."""
    for d in datasets:
        T = len(results[0][d]["loss_by_position"])
        edges = [2 ** i for i in range(T.bit_length())] + [T + 1]
        edges = sorted(set(min(e, T + 1) for e in edges))
        buckets = list(zip(edges, edges[1:]))
        header = [f"{d}: loss at context"] + [f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in buckets]
        rows = [[name] + [f"{np.mean(res[d]['loss_by_position'][a - 1:b - 1]):.3f}" for a, b in buckets]
                for name, res in zip(names, results)]
        print_rows(header, rows)


def read_results(path):
    """The eval.py results already in the JSON file at path, {CKPT: {DATASET or TASK: {...}}}, {}
    if there is none; a one-line error for a file that is something else (another script's JSON,
    say), which merging into would spoil."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            merged = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read --json={path} to merge into it ({type(e).__name__}): fix or move it")
    if not (isinstance(merged, dict) and all(isinstance(res, dict) for res in merged.values())):
        raise UserError(f"--json={path} does not hold eval.py results ({{checkpoint: {{dataset or task: results}}}}): "
                        "fix or move it, or give another --json")
    return merged


def merge_json(path, results):
    """Merge {CKPT: {DATASET or TASK: {...}}} into the JSON file at path (read_results, read again:
    another eval.py may have merged meanwhile): what it holds for other checkpoints, datasets and
    tasks is kept. Written to a temporary file, then renamed."""
    merged = read_results(path)
    for ckpt, res in results.items():
        merged.setdefault(ckpt, {}).update(res)
    write_text(path, json.dumps(merged, indent=2))


def main():
    c = parse_config(DEFAULTS, sys.argv[1:], CHECKS)
    ckpts = [d for d in c["ckpt"].split(",") if d]
    datasets = [d for d in c["datasets"].split(",") if d]
    if not ckpts or not (datasets or c["tasks"]):
        raise UserError("name checkpoints and datasets or tasks: --ckpt=DIR[,DIR...] --datasets=NAME[,NAME...] "
                        "and/or --tasks=TASK[,TASK...] (or --tasks=paper)")
    if c["by_position"] and not datasets:
        raise UserError("--by_position=True measures the loss on --datasets=NAME[,NAME...]: name at least one")
    device, _, _, autocast = setup_device(c["device"], c["dtype"])

    # check every input before the long part starts (models are loaded one at a time later)
    data = {name: load_dataset(c["data_root"], name, c["max_tokens"]) for name in datasets}
    tasks = resolve_tasks(c["tasks"], c["include_path"]) if c["tasks"] else []
    for spec in ckpts:
        ckpt_meta, vocab_size = checkpoint_tokenizer(spec)
        for d in datasets:
            check_tokenizer(ckpt_meta, data[d][2], spec, d, vocab_size)
    json_dir = os.path.dirname(c["json"]) or "."
    if c["json"] and not (os.path.isdir(json_dir) and os.access(json_dir, os.W_OK)):
        raise UserError(f"cannot write --json={c['json']}: {json_dir} is not a folder that can be written to")
    if c["json"]:
        read_results(c["json"])  # one that is not eval.py's is refused now, not after hours of evaluating

    results, names = [], []
    for spec in ckpts:
        model, ckpt_meta, name = load_model(spec)
        for d in datasets:
            check_tokenizer(ckpt_meta, data[d][2], spec, d, model.config.vocab_size)
        model.to(device)
        names.append(name)
        block_size = model.config.block_size
        stride = c["stride"] or max(1, block_size // 2)
        if stride > block_size:
            raise UserError(f"--stride={stride} is more than {spec}'s block_size={block_size}: "
                            "targets would be skipped; use a stride <= block_size")
        res = {}
        for d in datasets:
            ids, split, meta = data[d]
            total, count = sliding_window_nll(model, ids, block_size, stride, c["batch_size"], device, autocast)
            res[d] = {"ppl": ppl(total / count), "tokens": count, "split": split, "stride": stride}
            print(f"{name} on {d}/{split}: ppl {res[d]['ppl']:.3f} over {count:,} tokens "
                  f"(window {min(block_size, len(ids) - 1)}, stride {stride})", file=sys.stderr)
            if "examples" in meta:  # LAMBADA: its last words too (load_dataset kept those within max_tokens)
                examples = meta["examples"]
                right, nll = lambada_last_word(model, ids, examples, block_size, c["batch_size"], device, autocast)
                res[d] |= {"word_ppl": ppl(nll / len(examples)), "acc": right / len(examples),
                           "examples": len(examples)}
                print(f"{name} on {d}/{split}: last-word ppl {res[d]['word_ppl']:.3f}, accuracy "
                      f"{100 * res[d]['acc']:.2f}% over {len(examples):,} examples", file=sys.stderr)
            if c["by_position"]:
                res[d]["loss_by_position"], res[d]["position_windows"] = loss_by_position(
                    model, ids, block_size, c["batch_size"], device, autocast)
        if tasks:
            lm = harness_lm_class()(model, Tokenizer(ckpt_meta), spec, stride, c["batch_size"], device, autocast)
            for task, r in evaluate_tasks(lm, tasks, c["include_path"], c["num_fewshot"], c["limit"],
                                          c["batch_size"]).items():
                res[task] = r
                print(f"{name} on {task}: " + ", ".join(f"{m} {v:.4g}" for m, v in r.items() if "stderr" not in m),
                      file=sys.stderr)
        results.append(res)
        del model

    if datasets:
        print_table2(results, names, datasets)
    if c["by_position"]:
        print_positions(results, names, datasets)
    if tasks:
        print_table4(results, names, [k for k in results[0] if k not in datasets])
    if c["json"]:
        merge_json(c["json"], dict(zip(ckpts, results)))


if __name__ == "__main__":
    run_main(main)
