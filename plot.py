"""
Figures from training runs and checkpoints: validation loss against iterations, tokens and FLOPs
(the paper's Figure 1), attention maps of two checkpoints side by side (Figure 6), the loss at each
position of the window (the Figure 5 question), and a ContextLM beside its GPT over training.
docs/evaluation.md and docs/study.md show each figure beside the command that made it.

    python plot.py curves --runs=out-gpt2,out-contextlm [--labels=GPT-2,ContextLM] [--out=curves.png]
    python plot.py attention --ckpt=out-gpt2,out-contextlm --prompt="The new battery ..." [--layer=-1]
    python plot.py positions --json=positions.json [--dataset=openwebtext] [--labels=GPT-2,ContextLM]
    python plot.py inside --gpt=runs/a/gpt-s1337,runs/a/gpt-s1338 --contextlm=runs/a/contextlm-s1337,...
"""

import io
import json
import math
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402  (a dependency of matplotlib)
from torch.nn import functional as F  # noqa: E402

from checkpoint import load_run  # noqa: E402
from configurator import UserError, WriteError, atomic_write, parse_config, run_main  # noqa: E402
from dataset import Tokenizer  # noqa: E402
from device import setup_device  # noqa: E402


# ---------------------------------------------------------------- run logs and figures (compare.py and bench.py too)

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
    """Save a matplotlib figure as a compact PNG at path (a .png: no other file is ever replaced by
    a figure) and close it, atomically (configurator.atomic_write: a failed write leaves the file
    there as it was). Plots use few colours, so a 128-colour palette looks the same at a quarter
    of the size (figures live in the repo)."""
    if not path.lower().endswith(".png"):
        plt.close(fig)
        raise WriteError(f"cannot write {path}: a figure is a PNG file, give a path ending in .png")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    image = Image.open(buf).convert("RGB").quantize(colors=128)
    atomic_write(path, lambda f: image.save(f, format="PNG", optimize=True))


CURVES_DEFAULTS = dict(
    runs="",            # comma-separated out_dirs of train.py runs (each holds log.jsonl)
    labels="",          # legend entries, one per run; default: the directories' names
    out="curves.png",
)

POSITIONS_DEFAULTS = dict(
    json="",            # eval.py --by_position=True --json=... output
    dataset="",         # which of its datasets; default: the only one with loss_by_position
    labels="",          # legend entries, one per run; default: the runs' names
    bins=40,            # log-spaced bins of positions each curve is averaged over (0 = every position)
    out="positions.png",
)

INSIDE_DEFAULTS = dict(
    gpt="",             # comma-separated out_dirs of GPT runs, one a seed
    contextlm="",       # the ContextLM runs of the same seeds, in the same order
    label="contextlm",  # the ContextLM's name in the legends
    evals=3,            # the loss by position is drawn at the first `evals` evaluations after step 0, and the last
    bins=16,            # log-spaced bins of positions (0 = every position)
    out="inside.png",
)

ATTENTION_DEFAULTS = dict(
    ckpt="",            # one or more (comma-separated) checkpoint directories, drawn side by side
    prompt="",          # the text whose attention is drawn
    layer=-1,           # index into the token layers transformer.h; negative counts from the end
    out="attention.png",
    device="auto",
)


# ---------------------------------------------------------------- curves

def eval_rows(run_dir):
    """The evaluation rows of run_dir/log.jsonl, one per iteration, sorted by iteration."""
    rows = read_log(run_dir)[1]
    if not rows:
        raise UserError(f"{run_dir}/log.jsonl has no evaluation rows (val_loss) yet: "
                        "train past the first eval_interval")
    return rows


def plot_curves(c):
    """Validation loss of each run in c["runs"] against iterations, tokens and FLOPs, three panels saved
    to c["out"], and a fourth where a run is a ContextLM: its context's size beside the token state,
    ‖ĉ‖/‖h‖, at every evaluation (docs/method.md, "Scale"); the figure, whose lines hold what was drawn."""
    runs = [r for r in c["runs"].split(",") if r]
    if not runs:
        raise UserError("name the runs to plot: --runs=DIR[,DIR...]")
    labels = [label for label in c["labels"].split(",") if label] or \
        [os.path.basename(os.path.normpath(r)) for r in runs]
    if len(labels) != len(runs):
        raise UserError(f"--labels has {len(labels)} entries for {len(runs)} runs: give one label per run")
    rows_of = [eval_rows(run) for run in runs]
    ratios = any("context_ratio" in r for rows in rows_of for r in rows)
    fig, axes = plt.subplots(1, 3 + ratios, figsize=(13 + 4 * ratios, 3.6))
    for ax in axes[1:3]:
        ax.sharey(axes[0])
    for rows, label in zip(rows_of, labels):
        loss = [r["val_loss"] for r in rows]
        line = None
        for ax, key in zip(axes, ("iter", "tokens", "flops")):
            line, = ax.plot([r[key] for r in rows], loss, marker=".", label=label)
        ratio = [(r["iter"], r["context_ratio"]) for r in rows if "context_ratio" in r]
        if ratio:
            axes[3].plot(*zip(*ratio), marker=".", color=line.get_color(), label=label)
    for ax, xlabel in zip(axes, ("iterations", "training tokens", "training FLOPs", "iterations")):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss")
    axes[0].legend()
    if ratios:
        axes[3].set_ylabel("‖ĉ‖ / ‖h‖ where the context is added")
        axes[3].set_yscale("log", nonpositive="mask")  # 0 at iteration 0: the gain starts there
    save_figure(fig, c["out"])
    print(f"wrote {c['out']}")
    return fig


# ---------------------------------------------------------------- loss by position

def position_bins(T, bins):
    """[(first, last + 1), ...]: positions 0..T-1 cut into about `bins` log-spaced bins (a curve of
    per-position means is noisy, and most positions are far from the start), or one per position."""
    if bins <= 0 or bins >= T:
        return [(t, t + 1) for t in range(T)]
    edges = sorted(set(int(round(e)) for e in [T ** (i / bins) for i in range(bins + 1)]))
    return list(zip([0] + edges[:-1], edges))


def binned_by_position(curves, bins):
    """(x, binned): per-position curves (of one length T) averaged within position_bins(T, bins),
    and x the tokens of context at each bin's geometric middle (position t sees t + 1)."""
    edges = position_bins(len(curves[0]), bins)
    return ([math.sqrt((a + 1) * b) for a, b in edges],
            [[sum(curve[a:b]) / (b - a) for a, b in edges] for curve in curves])


def plot_positions(c):
    if not c["json"]:
        raise UserError("name the results: --json=FILE written by `python eval.py --by_position=True --json=FILE`")
    try:
        with open(c["json"]) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read --json={c['json']} ({type(e).__name__}): give a file eval.py wrote")
    found = sorted({d for res in results.values() for d, r in res.items() if "loss_by_position" in r})
    dataset = c["dataset"] or (found[0] if len(found) == 1 else "")
    if dataset not in found:
        raise UserError(f"--dataset={dataset or '?'}: choose one of the datasets with a loss by position in "
                        f"{c['json']} ({', '.join(found) or 'none: run eval.py with --by_position=True'})")
    runs = [run for run, res in results.items() if "loss_by_position" in res.get(dataset, {})]
    if len(runs) < 2:
        raise UserError(f"{c['json']} has a loss by position on {dataset} for one run only: evaluate two or more "
                        "checkpoints together, the GPT baseline first")
    labels = [label for label in c["labels"].split(",") if label] or \
        [os.path.basename(os.path.normpath(r)) for r in runs]
    if len(labels) != len(runs):
        raise UserError(f"--labels has {len(labels)} entries for {len(runs)} runs ({', '.join(runs)}): "
                        "give one label per run")
    losses = [results[run][dataset]["loss_by_position"] for run in runs]
    if len({len(loss) for loss in losses}) > 1:
        raise UserError(f"the runs have different block sizes ({', '.join(str(len(x)) for x in losses)}): "
                        "compare runs with the same window")
    x, binned = binned_by_position(losses, c["bins"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (y, label) in enumerate(zip(binned, labels)):  # a run has the same colour in both panels
        left.plot(x, y, color=f"C{i}", label=label)
        if i > 0:
            right.plot(x, [a - b for a, b in zip(y, binned[0])], color=f"C{i}", label=f"{label} − {labels[0]}")
    right.axhline(0.0, color="gray", lw=0.8)
    left.set_ylabel(f"{dataset} loss (nats)")
    right.set_ylabel(f"loss difference (nats), < 0: better than {labels[0]}")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("tokens of context (position in the window + 1)")
        ax.grid(alpha=0.3)
        ax.legend()
    windows = results[runs[0]][dataset].get("position_windows")
    fig.suptitle(f"{dataset}: mean loss by position" + (f" over {windows:,} windows" if windows else ""), fontsize=10)
    save_figure(fig, c["out"])
    print(f"wrote {c['out']}")


# ---------------------------------------------------------------- inside a ContextLM in training

def plot_inside(c):
    """A ContextLM beside its GPT over training, from the runs' log.jsonl, mean over the seeds
    (band: min-max): val loss; ‖ĉ‖/‖h‖ where the context is added, and the gain g; the share of the
    loss's gradient at h that comes back through the context path; and contextlm − gpt val loss by
    position at the first evaluations: why it learns more slowly, and where it does."""
    pairs = list(zip(*[[r for r in c[arm].split(",") if r] for arm in ("gpt", "contextlm")]))
    if not pairs or len(c["gpt"].split(",")) != len(c["contextlm"].split(",")):
        raise UserError("name the runs, one of each arm a seed in the same order: --gpt=DIR[,DIR...] "
                        "--contextlm=DIR[,DIR...]")
    rows = [(eval_rows(g), eval_rows(x)) for g, x in pairs]
    if any("context_grad_share" not in r or "val_loss_by_position" not in r for _, ctx_rows in rows for r in ctx_rows):
        raise UserError("these runs' logs have no context_grad_share or val_loss_by_position: train them "
                        "again with this train.py (`python train.py --out_dir=DIR ...`)")

    def curves(i, key):  # {seed: [(iteration, value)]} of arm i (0: gpt, 1: contextlm)
        return {n: [(r["iter"], r[key]) for r in pair[i] if key in r] for n, pair in enumerate(rows)}

    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    first = min(r["iter"] for r in rows[0][0] if r["iter"] > 0)  # from the first evaluation on: 0 dwarfs the rest
    band_plot(axes[0], curves(0, "val_loss"), "gpt", from_x=first)
    band_plot(axes[0], curves(1, "val_loss"), c["label"], from_x=first)
    for ax in axes[1:3]:
        ax.set_prop_cycle(color=[plt.rcParams["axes.prop_cycle"].by_key()["color"][1]])  # contextlm's, as in the first
    band_plot(axes[1], curves(1, "context_ratio"), c["label"])
    if all("context_gain" in r for _, ctx_rows in rows for r in ctx_rows):  # (logs written before it: no gain)
        band_plot(axes[1], curves(1, "context_gain"), "gain g", linestyle="--")
    band_plot(axes[2], curves(1, "context_grad_share"), c["label"])
    evals = sorted(set.intersection(*[{r["iter"] for r in arm if r["iter"] > 0} for pair in rows for arm in pair]))
    T = len(rows[0][1][-1]["val_loss_by_position"])
    steps = evals[:c["evals"]] + evals[-1:] * (len(evals) > c["evals"])
    for k, it in enumerate(steps):
        diffs = []  # per seed pair: contextlm − gpt at each position, at iteration it
        for gpt_rows, ctx_rows in rows:
            g, ctx = (next(r["val_loss_by_position"] for r in arm if r["iter"] == it) for arm in (gpt_rows, ctx_rows))
            diffs.append([a - b for a, b in zip(ctx, g)])
        x, (binned,) = binned_by_position([[statistics.mean(d[t] for d in diffs) for t in range(T)]], c["bins"])
        axes[3].plot(x, binned, color=plt.cm.viridis(k / max(1, len(steps) - 1)), label=f"iteration {it}")
    axes[3].axhline(0.0, color="gray", lw=0.8)
    axes[3].set_xscale("log")
    for ax, ylabel in zip(axes, ("validation loss", "‖ĉ‖ / ‖h‖ where the context is added; g",
                                 "share of h's gradient through ĉ", f"val loss, {c['label']} − gpt")):
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[3].set_xlabel("tokens of context (position in the window + 1)")
    axes[1].set_yscale("log", nonpositive="mask")  # 0 at iteration 0: the gain starts there
    fig.suptitle(f"inside {c['label']} in training, mean over {len(pairs)} seed(s)", fontsize=10)
    save_figure(fig, c["out"])
    print(f"wrote {c['out']}")
    return fig


# ---------------------------------------------------------------- attention

def resolve_layer(layer, config):
    """(index into transformer.h, 'encoder' or 'decoder') of a possibly negative layer index."""
    i = layer + config.n_layer if layer < 0 else layer
    if not 0 <= i < config.n_layer:
        raise UserError(f"--layer={layer} is out of range: the model has {config.n_layer} token layers "
                        f"(use 0..{config.n_layer - 1}, or -1 for the last)")
    return i, "encoder" if i < config.n_enc_layer else "decoder"


@torch.no_grad()
def attention_weights(model, idx, layer):
    """Attention probabilities (B, n_head, T, T) of token layer `layer` for idx (B, T).
    F.scaled_dot_product_attention does not return them, so a pre-hook on that layer's
    attention captures its input x, and they are recomputed from its c_attn weights as
    softmax(q k^T / sqrt(head_size)) with the causal mask."""
    attn = model.transformer.h[layer].attn
    captured = []
    handle = attn.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        model(idx)
    finally:
        handle.remove()
    x = captured[0]
    B, T, C = x.size()
    hs = C // attn.n_head
    q, k, _ = attn.c_attn(x).split(attn.n_embd, dim=2)
    q, k = (t.view(B, T, attn.n_head, hs).transpose(1, 2) for t in (q, k))
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    return F.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)


def token_labels(tokenizer, ids):
    """Each token's text with spaces as ␣ and newlines, tabs escaped, so that they stay visible."""
    return [repr(tokenizer.decode([i]))[1:-1].replace(" ", "␣") for i in ids]


def plot_attention(c):
    """The attention probabilities of layer c["layer"] for c["prompt"], one panel per checkpoint
    in c["ckpt"], saved to c["out"]; the figure, whose images hold what was drawn."""
    ckpts = [d for d in c["ckpt"].split(",") if d]
    if not ckpts:
        raise UserError("name the checkpoints: --ckpt=DIR[,DIR]")
    prompt = c["prompt"]
    if not prompt:
        raise UserError("the prompt is empty: pass --prompt=TEXT")
    device, _, _, _ = setup_device(c["device"], "float32")  # fp32: the weights are recomputed exactly

    panels = []
    for d in ckpts:
        model, meta, _ = load_run(d, hf=False)
        model, tokenizer = model.eval().to(device), Tokenizer(meta)
        ids = tokenizer.encode(prompt)
        if len(ids) > model.config.block_size:
            raise UserError(f"the prompt has {len(ids)} tokens, more than {d}'s block_size="
                            f"{model.config.block_size}: shorten it")
        layer, kind = resolve_layer(c["layer"], model.config)
        weights = attention_weights(model, torch.tensor([ids], device=device), layer)
        name = os.path.basename(os.path.normpath(d))
        title = (f"{name}: token layer {layer} of 0..{model.config.n_layer - 1} ({kind}), "
                 f"mean of {model.config.n_head} heads")
        panels.append((weights[0].mean(dim=0).cpu(), token_labels(tokenizer, ids), title))

    T = max(len(labels) for _, labels, _ in panels)
    size = min(8.0, max(4.0, 0.2 * T))  # inches per panel: room for the token labels
    fontsize = max(3.0, min(9.0, 40 * size / T))  # points: about 0.6 of a row's height
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    for ax, (weights, labels, title) in zip(axes[0], panels):
        image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(len(labels)), labels, fontsize=fontsize)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    save_figure(fig, c["out"])
    print(f"wrote {c['out']}")
    return fig


# ---------------------------------------------------------------- the study's figures (compare.py draws them)

def save_plot(fig, path):
    """Grid and legend, then plot.save_figure."""
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.axes[0].legend()
    save_figure(fig, path)


def band_plot(ax, curves, label, from_x=0, **line_style):
    """Mean over seeds as a line, min-max over seeds as a band, of curves {seed: [(x, loss)]}
    (x: iteration, FLOPs or seconds; from_x on), at the seeds' mean x of each evaluation."""
    xs = [statistics.mean(x) for x in zip(*[[x for x, _ in curve] for curve in curves.values()])]
    by_eval = list(zip(*[[loss for _, loss in curve] for curve in curves.values()]))  # (evaluations, seeds)
    xs, by_eval = zip(*[(x, losses) for x, losses in zip(xs, by_eval) if x >= from_x])
    line, = ax.plot(xs, [statistics.mean(v) for v in by_eval], label=label, **line_style)
    if len(curves) > 1:
        ax.fill_between(xs, [min(v) for v in by_eval], [max(v) for v in by_eval], color=line.get_color(), alpha=0.2)


def plot_study_curves(summary, seeds, path, title):
    """The whole run, and its second half zoomed in, where the arms' differences show."""
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, a in summary.items():
        last = max(it for curve in a["curves"].values() for it, _ in curve)
        band_plot(whole, a["curves"], name)
        band_plot(zoom, a["curves"], name, from_x=last / 2)
    for ax in (whole, zoom):
        ax.set_xlabel("iteration")
        ax.set_ylabel("validation loss")
    whole.set_title(f"{title}\nmean over {len(seeds)} seed(s)" + (", band: min-max" if len(seeds) > 1 else ""))
    zoom.set_title("second half, zoomed in")
    save_plot(fig, path)


def plot_study_efficiency(summary, seeds, budgets, path, title):
    """Val loss against training FLOPs and against training seconds, from a quarter of the equal
    budget on (the start dwarfs the differences), the equal budget as a dotted line."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, label in zip(axes, ("flops", "seconds"), ("training FLOPs", "training seconds (wall clock)")):
        for name, a in summary.items():
            band_plot(ax, a[f"{kind}_curves"], name, from_x=(budgets[kind] or 0) / 4)
        if budgets[kind] is not None:  # None: no equal time (a disturbed clock)
            ax.axvline(budgets[kind], color="k", linestyle=":", linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss")
    axes[0].set_title(f"{title}\nmean over {len(seeds)} seed(s)" + (", band: min-max" if len(seeds) > 1 else ""))
    axes[1].set_title("against time; dotted: the equal budgets")
    save_plot(fig, path)


def plot_study_ablation(summary, seeds, path, title):
    """Final val loss against chunk size, one line per encoder depth, gpt as a horizontal band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    gpt = list(summary["gpt"]["final_val_loss"].values())
    ax.axhline(statistics.mean(gpt), color="k", linestyle="--", label="gpt")
    ax.axhspan(min(gpt), max(gpt), color="k", alpha=0.1)
    contextlm = [a for a in summary.values() if a["model"]["n_ctx_layer"]]
    for enc in sorted({a["model"]["n_enc_layer"] for a in contextlm}):
        cells = sorted((a["model"]["chunk_size"], list(a["final_val_loss"].values()))
                       for a in contextlm if a["model"]["n_enc_layer"] == enc)
        means = [statistics.mean(losses) for _, losses in cells]
        low = [m - min(losses) for m, (_, losses) in zip(means, cells)]
        high = [max(losses) - m for m, (_, losses) in zip(means, cells)]
        ax.errorbar([w for w, _ in cells], means, yerr=[low, high], marker="o", capsize=3,
                    label=f"contextlm, {enc} encoder layers")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({a["model"]["chunk_size"] for a in contextlm}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("chunk size w")
    ax.set_ylabel("final validation loss")
    ax.set_title(f"{title}\nmean over {len(seeds)} seed(s)" + (", bars: min-max" if len(seeds) > 1 else ""))
    save_plot(fig, path)


def plot_study_sweep(cells, path, title):
    """contextlm − gpt (mean over seeds) and ‖ĉ‖/‖h‖ (every seed) over iterations, a line per cell."""
    fig, (delta_ax, ratio_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, cell in cells.items():
        line, = delta_ax.plot(*zip(*cell["delta_curve"]), label=name)
        for i, curve in enumerate(cell["context_ratio_curves"].values()):
            ratio_ax.plot(*zip(*curve), color=line.get_color(), alpha=0.7, label=name if i == 0 else None)
    delta_ax.axhline(0, color="k", linewidth=1)
    delta_ax.set_ylabel("val loss, contextlm − gpt (mean over seeds)")
    delta_ax.set_title(f"{title}\nafter warmup")
    ratio_ax.set_yscale("log", nonpositive="mask")  # 0 at iteration 0: the gain starts there
    ratio_ax.set_ylabel("‖ĉ‖ / ‖h‖ at the injection")
    ratio_ax.set_title("the context's size beside the token state")
    for ax in (delta_ax, ratio_ax):
        ax.set_xlabel("iteration")
    save_plot(fig, path)


# ---------------------------------------------------------------- the script

COMMANDS = {"curves": (plot_curves, CURVES_DEFAULTS), "attention": (plot_attention, ATTENTION_DEFAULTS),
            "positions": (plot_positions, POSITIONS_DEFAULTS), "inside": (plot_inside, INSIDE_DEFAULTS)}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        raise UserError(f"name the figure first: python plot.py {{{','.join(COMMANDS)}}} --key=value ...")
    command, defaults = COMMANDS[argv[0]]
    command(parse_config(defaults, argv[1:]))


if __name__ == "__main__":
    run_main(main)
