"""
Does next-context prediction help? Trains GPT, ContextLM and a parameter-matched GPT on the same batches,
schedule and token budget over several seeds, and reports each arm against gpt paired by seed, with 95%
intervals. A finished run is reused, so a study resumes; docs/study.md has the results and the details.

    python compare.py                                   # config/compare_shakespeare_char.py: 8 seeds x 3 arms
    python compare.py --quick                           # a tiny one-seed study (what CI runs), under a minute
    python compare.py config/compare_shakespeare_bpe.py # GPT-2 BPE instead of characters, 5 seeds x 3 arms
    python compare.py --ablation=True --seeds=3         # chunk size x token-encoder depth (paper's Figure 4)
    python compare.py --seed=1341 --seeds=4             # seeds 1341-1344 only (a study split over processes)
    python compare.py config/compare_stability.py       # the stability sweep: widths x learning rates
    python compare.py --arms="['contextlm']" --earlier=assets/study_shakespeare_char.json --out_dir=runs/new
"""

import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import time

import train
from configurator import (CONFIG_DIR, UserError, at_least, counts, expand_quick, is_number, named_settings,
                          one_of, own_json, parse_config, run_main, why_not_own, write_text, writing)
from variants import BACKBONES, CONTEXT_OPTIONS, backbone_fields, model_variants
from dataset import load_meta
from plot import plot_study_ablation, plot_study_curves, plot_study_efficiency, plot_study_sweep, read_log

UNTIMED_ITERS = 10  # tokens/s leaves out the first iterations (allocation, compilation)

# train.py's keys (init_from and eval_only aside: every run trains from scratch), then the study's
DEFAULTS = {k: v for k, v in train.DEFAULTS.items() if k not in ("init_from", "eval_only")} | dict(
    out_dir="runs/compare",       # the study's folder; run <arm>-s<seed> trains in out_dir/<arm>-s<seed>
    dataset="shakespeare_char",
    lr_decay_iters=0,             # 0: decay over the whole run (= max_iters)
    seed=1337,                    # the first seed; seed s also seeds the batch sampler of every arm
    seeds=3,                      # runs per arm, seeds seed, seed + 1, ...
    backbone="",                  # gpt2 or pythia: sets the block's fields (variants.BACKBONES); '' = as configured
    ablation=False,               # train the chunk-size x encoder-depth grid instead of the three arms
    chunk_sizes=[2, 4, 8, 16],    # the ablation's chunk sizes; encoder depths are 0 and n_layer // 2
    sweep=False,                  # the stability sweep: gpt and contextlm at each width x learning rate
    widths=[128, 256, 384],       # the sweep's n_embd
    learning_rates=[1e-3, 2e-3],  # the sweep's learning_rate (min_lr keeps its ratio to it)
    cells={},                     # the sweep's cells by name, each the settings it changes ({} = widths x lrs)
    options={},                   # contextlm variants by name, the context options each sets (variants.CONTEXT_OPTIONS)
    fresh=False,                  # train again runs that are already finished
    arms=[],                      # the arms to train, by name (like ['contextlm']); [] = every arm
    earlier="",                   # an earlier study's results.json: the arms not trained here come from it
)

# train.py's checks, and the study's (each run's model and schedule: train.check_config, in main)
CHECKS = train.CHECKS | dict(
    n_ctx_layer=at_least(1, "with 0 contextlm would be the gpt baseline"),
    lr_decay_iters=at_least(0, "0 = max_iters"),
    seeds=at_least(1, "train at least one seed per arm"),
    chunk_sizes=counts("the ablation's chunk sizes, like [2, 4, 8, 16]"), backbone=one_of("", *BACKBONES),
    widths=counts("the sweep's widths, like [128, 256, 384]"),
    arms=((lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v)), "arm names, like ['contextlm']"),
    learning_rates=((lambda v: isinstance(v, list) and len(v) > 0 and all(is_number(x) and x > 0 for x in v)),
                    "a non-empty list of numbers above 0, like [1e-3, 2e-3]"),
    cells=named_settings(train.DEFAULTS, "{cell name: {train.py key: value}}, like {'dropout0': {'dropout': 0.0}}"),
    options=named_settings(CONTEXT_OPTIONS, "{name: {context option: value}}, like {'zero-init': {'predictor_init': "
                           "'zero'}}, the options among " + ", ".join(CONTEXT_OPTIONS)),
)


# ---------------------------------------------------------------- the arms and their runs

def arms_of(c):
    """{arm: the model fields it sets}: variants.model_variants' three models and a contextlm for each
    of c["options"], or with ablation=True gpt and a contextlm per chunk size x encoder depth."""
    variants = model_variants(c)
    if not c["ablation"]:  # and contextlm-<name> for each of the options (each compared with contextlm too)
        return variants | {f"contextlm-{name}": model_variants(c | changes)["contextlm"]
                           for name, changes in c["options"].items()}
    arms = {"gpt": variants["gpt"]}
    main_cell = (c["chunk_size"], c["n_enc_layer"])
    for enc in sorted({0, c["n_layer"] // 2}):
        for size in c["chunk_sizes"]:
            if size > c["block_size"]:
                print(f"ablation: chunk_size={size} skipped, larger than block_size={c['block_size']}")
                continue
            # the main study's contextlm run is one cell of the grid: same name, so it is reused
            name = "contextlm" if (size, enc) == main_cell else f"contextlm-w{size}-enc{enc}"
            arms[name] = model_variants(c | dict(chunk_size=size, n_enc_layer=enc))["contextlm"]
    return arms


def run_config(c, name, fields, seed):
    """train.py's config for one run: the shared settings, the arm's model fields and the seed."""
    shared = {k: c[k] for k in train.DEFAULTS if k in c}
    return train.DEFAULTS | shared | fields | dict(
        seed=seed, out_dir=os.path.join(c["out_dir"], f"{name}-s{seed}"), wandb_run_name=f"{name}-s{seed}",
        lr_decay_iters=c["lr_decay_iters"] or c["max_iters"], init_from="scratch", eval_only=False)


def study_runs(c, arms, seeds):
    """Every run of a study, seed by seed (early seeds are complete first): [(arm, seed, train.py config)]."""
    return [(name, seed, run_config(c, name, arms[name], seed)) for seed in seeds for name in arms]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def changed_settings(cfg):
    """{key: (then, now)} where the run finished in cfg's folder differs from cfg (out_dir aside: a
    study folder can move; data_root as the folder it names); None where none finished there. A
    setting added since the run was written has its value then (train.as_written)."""
    try:
        done, (_, evals) = read_json(os.path.join(cfg["out_dir"], "run.json"))["config"], read_log(cfg["out_dir"])
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None
    done = json.loads(json.dumps(train.as_written(done)))
    now, path = json.loads(json.dumps(cfg)), os.path.realpath  # compared as stored (lists, not tuples)
    same = {"out_dir": lambda a, b: True, "data_root": lambda a, b: path(a) == path(b)}
    return None if not evals or evals[-1]["iter"] != done.get("max_iters") else \
        {k: (done.get(k), now.get(k)) for k in done.keys() | now.keys()
         if not same.get(k, lambda a, b: a == b)(done.get(k), now.get(k))}


def finished(cfg):
    """run.json of a run that ended with this very config, or None."""
    return read_json(os.path.join(cfg["out_dir"], "run.json")) if changed_settings(cfg) == {} else None


# a run's folder: train_run's train.log (first) and run.json (last), train.py's log.jsonl and ckpt.pt (+ its .tmp)
RUN_FILES = ("train.log", "log.jsonl", "ckpt.pt", "ckpt.pt.tmp.*", "run.json")


def check_run_folder(folder):
    """Refuse, in one line, to clear a run's folder that compare.py did not start: one that holds
    anything but RUN_FILES, or no train.log (a train.py run of the user's, say)."""
    if why := why_not_own(folder, RUN_FILES, ("train.log", os.path.isfile)):
        raise UserError(f"{folder} is not a run that compare.py started ({why}): move it away, or give "
                        "another --out_dir")


def train_run(cfg, master):
    """Train one run from scratch (its stdout into train.log); its run.json record."""
    if master:
        check_run_folder(cfg["out_dir"])  # (main checked every run's before the first trained)
        shutil.rmtree(cfg["out_dir"], ignore_errors=True)  # a partial or outdated run: start over
        with writing(cfg["out_dir"]):
            os.makedirs(cfg["out_dir"])
    t0 = time.time()
    log = open(os.path.join(cfg["out_dir"], "train.log"), "w") if master else open(os.devnull, "w")
    with log, contextlib.redirect_stdout(log):
        summary = train.train(cfg)
    if summary["iter_num"] < cfg["max_iters"]:
        raise UserError(f"{cfg['out_dir']} stopped at iteration {summary['iter_num']} of {cfg['max_iters']}: "
                        "run the same command again to resume the study")
    done = {"config": cfg, "params": summary["params"], "wall_s": round(time.time() - t0, 1)}
    if master:
        write_text(os.path.join(cfg["out_dir"], "run.json"), json.dumps(done, indent=1))
    return done


def training_seconds(timing, evals):
    """Wall-clock training seconds before each evaluation row (evaluation not counted), a list like evals:
    each timing row's step time (tokens per step / tokens_per_sec) stands for every step since the last."""
    elapsed, seconds, last_iter, rows = 0.0, [], -1, iter(timing)
    row = next(rows, None)
    for ev in evals:
        # the timing row of step i is written after it, when tokens already count it: steps < ev["iter"]
        while row is not None and row["iter"] < ev["iter"]:
            step_tokens = row["tokens"] / (row["iter"] + 1)  # every run here trains from scratch
            elapsed += (row["iter"] - last_iter) * step_tokens / row["tokens_per_sec"]
            last_iter, row = row["iter"], next(rows, None)
        seconds.append(elapsed)
    return seconds


def collect(cfg, done):
    """What the report needs from one finished run."""
    timing, evals = read_log(cfg["out_dir"])
    speeds = [r["tokens_per_sec"] for r in timing if r["iter"] >= UNTIMED_ITERS]
    return {"params": done["params"], "final": evals[-1]["val_loss"], "evals": evals,
            "seconds": training_seconds(timing, evals),
            "tokens_per_sec": statistics.median(speeds) if speeds else None}


def check_same_batches(runs, seeds):
    """Every arm of a seed must have drawn the same batches: equal data_hash at every evaluation."""
    for seed in seeds:
        (ref_name, ref), *others = [(name, [(r["iter"], r["data_hash"]) for r in by_seed[seed]["evals"]])
                                    for name, by_seed in runs.items()]
        for name, hashes in others:
            if hashes != ref:
                bad = next((a, b) for a, b in zip(ref + [None], hashes + [None]) if a != b)
                raise UserError(f"seed {seed}: arms '{ref_name}' and '{name}' did not draw the same training "
                                f"batches (evaluation (iter, data_hash) {bad[0]} vs {bad[1]}), so the comparison "
                                "is not controlled: rerun the study with --fresh=True")


EARLIER = " (earlier)"  # the name suffix of an earlier study's arm that this study trains again


def read_earlier(c, seeds, trained):
    """The arms of an earlier study (c['earlier'], its results.json) as run_all gives them, {arm: {seed:
    collect()}}, an arm this study trains (trained) named '<arm> (earlier)'. Its settings must be this
    study's but for the arms' model fields, so that a seed drew the same batches in both."""
    try:  # read whole, before any run trains: a file that is missing or not one compare.py wrote fails now
        earlier = read_json(c["earlier"])
        config = earlier["config"]
        own = ("out_dir", "wandb_run_name", *CONTEXT_OPTIONS)  # an arm's own, or not a setting
        differ = [k for k in train.DEFAULTS if k in config and k not in own and config[k] != c[k]]
        missing = sorted(set(seeds) - set(earlier["seeds"]))
        if earlier.get("study") != "main" or differ or missing:
            why = f"its {', '.join(f'{k}={config[k]!r}' for k in differ)}" if differ else \
                f"it has no seed {', '.join(map(str, missing))}" if missing else "it is not a study of the three arms"
            raise UserError(f"--earlier={c['earlier']} cannot be paired with this study: {why}")
        return {name + EARLIER if name in trained else name: {s: {
            "model": a["model"], "params": a["params"], "final": a["final_val_loss"][str(s)],
            "tokens_per_sec": a["tokens_per_sec"][str(s)],
            "evals": [{"iter": it, "val_loss": loss, "flops": flops} for (it, loss), (flops, _)
                      in zip(a["curves"][str(s)], a["flops_curves"][str(s)])],
            "seconds": [t for t, _ in a["seconds_curves"][str(s)]]} for s in seeds}
            for name, a in earlier["arms"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # (UserError is none of them)
        raise UserError(f"--earlier={c['earlier']}: not a results.json that compare.py wrote ({type(e).__name__}: {e})")


# ---------------------------------------------------------------- statistics: paired intervals, equal budgets

def t_cdf(x, df, steps=2000):
    """P(T <= x) for Student's t with df degrees of freedom, x >= 0: 1/2 plus the density
    integrated over [0, x] by Simpson's rule (steps even; ~1e-9 for the x an interval needs)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    h = x / steps
    ys = [math.exp(log_norm - (df + 1) / 2 * math.log1p((i * h) ** 2 / df)) for i in range(steps + 1)]
    return 0.5 + h / 3 * (ys[0] + ys[-1] + 4 * sum(ys[1:-1:2]) + 2 * sum(ys[2:-1:2]))


def t_quantile(p, df):
    """The p-quantile of Student's t (p > 1/2), by bisection on t_cdf (no scipy): 12.706 for
    p=0.975, df=1; 2.262 for df=9; 1.960 in the normal limit."""
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(40):  # the bracket shrinks to 1e-12 of its width
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def interval(xs, level=0.95):
    """Mean of xs with its Student-t confidence interval, mean ± t(n-1) * std / sqrt(n):
    {n, mean, std, low, high}; std and the interval are None under two values, mean under one."""
    n = len(xs)
    mean, std = mean_std(xs) if xs else (None, None)
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "low": None if half is None else mean - half,
            "high": None if half is None else mean + half}


def excludes(iv, value):
    """Whether interval iv lies wholly on one side of value (None without an interval)."""
    return None if iv["low"] is None else not iv["low"] <= value <= iv["high"]


def loss_at(curve, budget):
    """Val loss at a training budget (FLOPs or seconds) on an evaluation curve [(budget, loss)],
    interpolated linearly in log budget and log loss between the evaluations around it (exact for a
    power law, loss = a * budget^-b). Budget 0 (iteration 0) is left out; budget must lie within the rest."""
    points = [(b, loss) for b, loss in curve if b > 0]
    for (b0, l0), (b1, l1) in zip(points, points[1:] + points[-1:]):
        if b0 <= budget <= b1:
            f = math.log(budget / b0) / math.log(b1 / b0) if b1 > b0 else 0.0
            return l0 * (l1 / l0) ** f
    raise ValueError(f"budget {budget:g} outside the curve's {points[0][0]:g}..{points[-1][0]:g}")


def budget_to_reach(curve, target):
    """The budget at which a curve [(budget, loss)] first reaches loss <= target, interpolated as in
    loss_at; None if it never does; at its first evaluation after iteration 0: that budget (an upper bound)."""
    points = [(b, loss) for b, loss in curve if b > 0]
    if points[0][1] <= target:
        return points[0][0]
    for (b0, l0), (b1, l1) in zip(points, points[1:]):
        if l1 <= target:  # l0 > target >= l1
            return b0 * (b1 / b0) ** (math.log(target / l0) / math.log(l1 / l0))
    return None


def reach_ratio(curves, baseline_curves):
    """Per seed, an arm's budget to first reach the baseline's final val loss over the baseline's final
    budget (0.8: 20% less; None: never), with the interval of the seeds that reach it and whether it excludes 1."""
    per_seed = {}
    for seed, curve in curves.items():
        budget, loss = baseline_curves[seed][-1]
        per_seed[seed] = None if (need := budget_to_reach(curve, loss)) is None else need / budget
    iv = interval([r for r in per_seed.values() if r is not None])
    return {"per_seed": per_seed, "reached": iv["n"], **iv, "excludes_one": excludes(iv, 1.0)}


def paired(a, b, key):
    """a[key] - b[key] paired by seed ({seed: value} each, or None: n/a): interval, per seed, excludes 0?"""
    if a[key] is None or b[key] is None:
        return {"per_seed": None, **interval([]), "excludes_zero": None}
    per_seed = {s: a[key][s] - b[key][s] for s in a[key]}
    iv = interval(list(per_seed.values()))
    return {"per_seed": per_seed, **iv, "excludes_zero": excludes(iv, 0.0)}


def equal_budgets(summary):
    """{'flops': F, 'seconds': S}: the smallest final budget of any run, and per arm the val loss each
    seed had at it (loss_at_equal_flops, ...); seconds None (n/a) when no time lies on every curve."""
    budgets = {kind: min(curve[-1][0] for a in summary.values() for curve in a[f"{kind}_curves"].values())
               for kind in ("flops", "seconds")}
    late = [(name, seed, first) for name, a in summary.items() for seed, curve in a["seconds_curves"].items()
            if (first := min(t for t, _ in curve if t > 0)) > budgets["seconds"]]
    for name, seed, first in late:  # wall clock only: FLOPs are counted, not timed
        print(f"equal time left out: {name}, seed {seed}, trained {first:.2f} s before its first evaluation, more than "
              f"the shortest run's whole training ({budgets['seconds']:.2f} s): its clock was disturbed (a busy or "
              "suspended machine); for that column, delete that run's folder under out_dir and run the study again")
    if late:
        budgets["seconds"] = None
    for name, a in summary.items():
        for kind, budget in budgets.items():
            a[f"loss_at_equal_{kind}"] = None if budget is None else \
                {s: loss_at(curve, budget) for s, curve in a[f"{kind}_curves"].items()}
    return budgets


def comparisons(c, summary):
    """Every arm against gpt, and each contextlm (main study: options too) against gpt+{P}L, paired by seed: final
    val loss, val loss at equal FLOPs and time, and the tokens, FLOPs and time to reach the baseline's final loss."""
    pairs = [(name, "gpt") for name in summary if name != "gpt"]
    matched, options = f"gpt+{c['n_ctx_layer']}L", [f"contextlm-{name}" for name in c["options"]]
    pairs += [(name, matched) for name in ["contextlm"] + options if {name, matched} <= set(summary)]
    pairs += [(name, "contextlm") for name in options if {name, "contextlm"} <= set(summary)]  # the default too
    pairs += [(name.removesuffix(EARLIER), name) for name in summary if name.endswith(EARLIER)]
    tests = []
    for name, base in pairs:
        a, b = summary[name], summary[base]
        tests.append({"arm": name, "baseline": base, "final_val_loss": paired(a, b, "final_val_loss"),
                      "at_equal_flops": paired(a, b, "loss_at_equal_flops"),
                      "at_equal_seconds": paired(a, b, "loss_at_equal_seconds"),
                      "tokens_to_reach_baseline": reach_ratio(a["curves"], b["curves"]),
                      "flops_to_reach_baseline": reach_ratio(a["flops_curves"], b["flops_curves"]),
                      "seconds_to_reach_baseline": reach_ratio(a["seconds_curves"], b["seconds_curves"])})
    return tests


# ---------------------------------------------------------------- report

def mean_std(xs):
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def pm(mean, std, digits=4):
    return f"{mean:.{digits}f} ± " + (f"{std:.{digits}f}" if std is not None else "n/a")


def count(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n else "0"


def summarize(arms, runs, seeds):
    """Per arm: the per-seed numbers and their summary (JSON-ready)."""
    gpt_speeds = [runs["gpt"][s]["tokens_per_sec"] for s in seeds]
    out = {}
    for name, fields in arms.items():
        by_seed = runs[name]
        loss, loss_std = mean_std([by_seed[s]["final"] for s in seeds])
        speeds = [by_seed[s]["tokens_per_sec"] for s in seeds]
        speed = None if None in speeds + gpt_speeds else statistics.median(speeds) / statistics.median(gpt_speeds)
        out[name] = {
            "model": fields, "params": by_seed[seeds[0]]["params"],
            "final_val_loss": {str(s): by_seed[s]["final"] for s in seeds},
            "tokens_per_sec": {str(s): by_seed[s]["tokens_per_sec"] for s in seeds},
            "val_loss_mean": loss, "val_loss_std": loss_std, "val_ppl": math.exp(loss), "speed_vs_gpt": speed,
            "curves": {str(s): [[r["iter"], r["val_loss"]] for r in by_seed[s]["evals"]] for s in seeds},
            "flops_curves": {str(s): [[r["flops"], r["val_loss"]] for r in by_seed[s]["evals"]] for s in seeds},
            "seconds_curves": {str(s): [[t, r["val_loss"]] for t, r in zip(by_seed[s]["seconds"], by_seed[s]["evals"])]
                               for s in seeds},
        }
        delta = paired(out[name], out["gpt"], "final_val_loss")
        out[name] |= {"delta_vs_gpt": delta["mean"], "delta_std": delta["std"]}
    return out


def markdown(c, summary, seeds, title, tests, budgets):
    """The report: a row per arm, how to read it, (main study) contextlm against gpt and gpt+{P}L,
    paired by seed; then the comparisons (tests) with their intervals, and the equal budgets' losses."""
    gpt_speeds = list(summary["gpt"]["tokens_per_sec"].values())
    gpt_speed = "" if None in gpt_speeds else f" ({statistics.median(gpt_speeds):,.0f} tokens/s)"
    tokens = c["max_iters"] * c["gradient_accumulation_steps"] * c["batch_size"] * c["block_size"]
    lines = [f"## {title}", "",
             f"{c['dataset']}, {c['max_iters']} iterations ({tokens:,} training tokens) per run, "
             f"seeds {', '.join(map(str, seeds))}.", "",
             "| arm | model | token params | predictor params | final val loss | val ppl | Δ loss vs gpt "
             "| tokens/s vs gpt |",
             "|---|---|---|---|---|---|---|---|"]
    for name, a in summary.items():
        m = a["model"]
        model = f"L={m['n_layer']}" + (f", P={m['n_ctx_layer']}, w={m['chunk_size']}, E={m['n_enc_layer']}"
                                       if m["n_ctx_layer"] else "")
        delta = "—" if name == "gpt" else pm(a["delta_vs_gpt"], a["delta_std"])
        speed = "n/a" if a["speed_vs_gpt"] is None else f"{a['speed_vs_gpt']:.2f}x"
        lines.append(f"| {name} | {model} | {count(a['params']['token'])} | {count(a['params']['predictor'])} | "
                     f"{pm(a['val_loss_mean'], a['val_loss_std'])} | {a['val_ppl']:.3f} | {delta} | {speed} |")
    lines += ["", f"Final val loss: at iteration {c['max_iters']}, over {c['eval_iters']} batches; mean ± sample "
              f"std over {len(seeds)} seed(s) (n/a with one). val ppl = exp(mean val loss). Δ: arm − gpt, paired by "
              "seed, mean ± sample std. tokens/s: median training tokens/s of each run (iterations >= "
              f"{UNTIMED_ITERS}), median over seeds, relative to gpt{gpt_speed}; wall clock, so meaningful on an "
              "otherwise idle machine only. All arms of each seed drew identical batches (data_hash equal at every "
              "evaluation" + (
                  f"; the arms read from {c['earlier']} were trained before, with the same settings and seeds). Their "
                  "clocks ran in another session: between an arm trained here and one read from there, tokens/s "
                  "and every time column compare two machines' loads, not two models (bench.py does)."
                  if c["earlier"] else ")."), ""]
    matched = f"gpt+{c['n_ctx_layer']}L"
    if not c["ablation"] and {"contextlm", matched} <= set(summary):  # the reviewers' question: more than
        for other in ("gpt", matched):                                 # the predictor's extra parameters?
            delta = paired(summary["contextlm"], summary[other], "final_val_loss")
            lines.append(f"contextlm − {other}, paired by seed: {pm(delta['mean'], delta['std'])} (per seed: "
                         + ", ".join(f"{d:+.4f}" for d in delta["per_seed"].values()) + ").")
        lines.append("")
    return "\n".join(lines + paired_lines(tests, seeds) + budget_lines(summary, budgets))


def ci(iv, digits=4, sign="+"):
    """'mean [low, high]', or the mean alone without an interval (one seed)."""
    if iv["mean"] is None:
        return "n/a"
    f = f"{sign}.{digits}f"
    return f"{iv['mean']:{f}} " + (f"[{iv['low']:{f}}, {iv['high']:{f}}]" if iv["low"] is not None else "(one seed)")


def ratio_cell(r):
    """A reach ratio's cell: 'mean [low, high], k/n seeds', or 'not reached'."""
    n = len(r["per_seed"])
    return "not reached" + (f" (0/{n} seeds)" if n > 1 else "") if not r["reached"] else \
        f"{ci(r, 3, '')}" + (f", {r['reached']}/{n} seeds" if n > 1 else "")


def paired_lines(tests, seeds):
    """The comparisons' table: paired differences with 95% intervals, and the reach ratios."""
    yes_no = {True: "yes", False: "no", None: "n/a"}
    lines = ["| arm − baseline | seeds | Δ final val loss [95% CI] | CI excludes 0 | Δ at equal FLOPs "
             "| Δ at equal time | tokens to reach baseline's final loss | FLOPs to reach it | time to reach it |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in tests:
        lines.append(f"| {t['arm']} − {t['baseline']} | {t['final_val_loss']['n']} | {ci(t['final_val_loss'])} "
                     f"| {yes_no[t['final_val_loss']['excludes_zero']]} | {ci(t['at_equal_flops'])} "
                     f"| {ci(t['at_equal_seconds'])} | {ratio_cell(t['tokens_to_reach_baseline'])} "
                     f"| {ratio_cell(t['flops_to_reach_baseline'])} | {ratio_cell(t['seconds_to_reach_baseline'])} |")
    return lines + ["", f"Paired by seed over {len(seeds)} seed(s): mean difference with its 95% Student-t interval, "
                    "mean ± t(0.975, n−1) · std / √n (none with one seed). Equal FLOPs, equal time: the val loss each "
                    "run has at the smallest final budget of any run (table below), interpolated between evaluations "
                    "linearly in log budget and log loss; the arm with the larger budget is then caught mid-schedule, "
                    "its learning rate not yet decayed, which favours the cheaper arm. To reach: the training tokens "
                    "(FLOPs, seconds) at which the arm's curve first reaches the baseline's final val loss of the same "
                    "seed, interpolated the same way, over the baseline's final tokens (FLOPs, seconds): 0.80 = 20% "
                    "less; the interval is over the seeds that reach it. Reached mid-schedule, before its learning "
                    "rate has decayed: a run scheduled to end there would likely get there sooner, so the ratio is "
                    "conservative. FLOPs: model.flops_per_token × training tokens, the predictor's included; "
                    "seconds: wall-clock training time from log.jsonl's step times, evaluation excluded.", ""]


def budget_lines(summary, budgets):
    """Per arm: its final budgets and the val loss it reaches at the equal budgets (mean over seeds)."""
    seconds = "equal time (n/a: a disturbed clock)" if budgets["seconds"] is None else f"{budgets['seconds']:.0f} s"
    lines = [f"| arm | training FLOPs | training time | val loss at {budgets['flops']:.3g} FLOPs "
             f"| val loss at {seconds} |", "|---|---|---|---|---|"]
    for name, a in summary.items():
        final = {kind: statistics.mean(curve[-1][0] for curve in a[f"{kind}_curves"].values()) for kind in budgets}
        at = {kind: "n/a" if a[f"loss_at_equal_{kind}"] is None else
              f"{statistics.mean(a[f'loss_at_equal_{kind}'].values()):.4f}" for kind in budgets}
        lines.append(f"| {name} | {final['flops']:.3g} | {final['seconds']:.0f} s | {at['flops']} | {at['seconds']} |")
    return lines + ["", "(means over seeds; time: wall clock, meaningful on an otherwise idle machine only)", ""]


# ---------------------------------------------------------------- the stability sweep

def sweep_cells(c):
    """{cell name: the study config of one cell, in its own folder}: each of c["cells"] with the settings
    it changes, or else each width x learning rate; min_lr keeps its ratio to learning_rate."""
    cells = c["cells"] or {f"w{width}-lr{lr:g}": dict(n_embd=width, learning_rate=lr)
                           for width in c["widths"] for lr in c["learning_rates"]}
    return {name: c | ({"min_lr": c["min_lr"] * changes["learning_rate"] / c["learning_rate"]}
                       if "learning_rate" in changes else {}) | changes | dict(out_dir=os.path.join(c["out_dir"], name))
            for name, changes in cells.items()}


def context_suffix(c):
    """'' for the default context options, else each one c changes: '-none', '-context_gain_init=1.0'."""
    changed = {k: c[k] for k, default in CONTEXT_OPTIONS.items() if c[k] != default}
    return "".join(f"-{v}" if k == "context_scale" else f"-{k}={v}" for k, v in changed.items())


def sweep_arms(c):
    """gpt, and contextlm named by its options (context_suffix): every candidate shares the gpt runs."""
    variants = model_variants(c)
    return {"gpt": variants["gpt"], "contextlm" + context_suffix(c): variants["contextlm"]}


def sweep_cell(cell, runs, seeds):
    """One cell's numbers from {arm: {seed: collect()}}: each arm's final val loss; contextlm − gpt paired by seed,
    final and worst after warmup (mean over seeds); each contextlm's largest ‖ĉ‖/‖h‖ and val loss rise with ĉ = 0."""
    (_, gpt), (_, ctx) = runs.items()  # gpt, then contextlm (sweep_arms)
    evals = gpt[seeds[0]]["evals"]  # (a run shorter than its warmup: all its evaluations)
    after_warmup = [i for i, r in enumerate(evals) if r["iter"] > cell["warmup_iters"]] or list(range(len(evals)))
    deltas = [(gpt[seeds[0]]["evals"][i]["iter"],
               statistics.mean(ctx[s]["evals"][i]["val_loss"] - gpt[s]["evals"][i]["val_loss"] for s in seeds))
              for i in after_warmup]
    last = {s: ctx[s]["evals"][-1] for s in seeds}
    return {"n_embd": cell["n_embd"], "learning_rate": cell["learning_rate"],
            "gpt": {str(s): gpt[s]["final"] for s in seeds}, "contextlm": {str(s): ctx[s]["final"] for s in seeds},
            "delta": interval([ctx[s]["final"] - gpt[s]["final"] for s in seeds]),
            "worst_delta_after_warmup": max(deltas, key=lambda d: d[1]), "delta_curve": deltas,
            "max_context_ratio": {str(s): max(r["context_ratio"] for r in ctx[s]["evals"]) for s in seeds},
            "context_ratio_curves": {str(s): [[r["iter"], r["context_ratio"]] for r in ctx[s]["evals"]]
                                     for s in seeds},
            "final_context_gain": {str(s): last[s].get("context_gain") for s in seeds},  # None: no gain
            "no_context_rise": statistics.mean(last[s]["val_loss_no_context"] - last[s]["val_loss"] for s in seeds),
            "context_grad_share": statistics.mean(last[s].get("context_grad_share", math.nan) for s in seeds)}


def sweep_markdown(c, cells, seeds):
    """The sweep's report: one row a cell, and how to read it."""
    settings = "; ".join(f"{name} " + (", ".join(f"{k}={v!r}" for k, v in changes.items()) or "as above")
                         for name, changes in c["cells"].items())
    options = ", ".join(f"{k}={c[k]!r}" for k, v in CONTEXT_OPTIONS.items() if c[k] != v) \
        or "the default context options"
    lines = [f"## {'sweep' if c['cells'] else 'stability sweep'}, {c['dataset']}, {options}", "",
             f"n_layer={c['n_layer']}, block_size={c['block_size']}, batch {c['batch_size']}, dropout {c['dropout']}, "
             f"{c['max_iters']} iterations (warmup {c['warmup_iters']}), seeds {', '.join(map(str, seeds))}.", "",
             "| cell | width | lr | gpt | contextlm | contextlm − gpt [95% CI] | worst Δ after warmup (iter) "
             "| largest ‖ĉ‖/‖h‖ | gain g at the end | h's gradient through ĉ | val loss rise with ĉ = 0 |",
             "|" + "---|" * 11]
    for name, cell in cells.items():
        it, worst = cell["worst_delta_after_warmup"]
        gains = [g for g in cell["final_context_gain"].values() if g is not None]
        lines.append(f"| {name} | {cell['n_embd']} | {cell['learning_rate']:g} "
                     f"| {statistics.mean(cell['gpt'].values()):.4f} "
                     f"| {statistics.mean(cell['contextlm'].values()):.4f} "
                     f"| {ci(cell['delta'])} | {worst:+.4f} ({it}) | {max(cell['max_context_ratio'].values()):.2f} "
                     f"| {f'{statistics.mean(gains):+.3f}' if gains else '—'} "
                     f"| {cell.get('context_grad_share', math.nan):.3f} | {cell['no_context_rise']:+.4f} |")
    return "\n".join(lines + [
        "", f"Cell: its folder under out_dir, {'settings: ' + settings if settings else 'a width x learning rate'}. "
        "gpt, contextlm: final val loss, mean over seeds. contextlm − gpt: final val loss paired by seed, mean with "
        "its 95% Student-t interval. Worst Δ after warmup: the largest mean over seeds of contextlm − gpt at any "
        "evaluation after warmup_iters, and its iteration. Largest ‖ĉ‖/‖h‖: the context's norm over the norm of the "
        "token state it is added to, mean over the val batches' positions, the largest at any evaluation of any seed. "
        "Gain g at the end: context_scale='learned''s gain at the last evaluation, mean over seeds (a per-channel "
        "gain: its mean over channels). h's gradient through ĉ: the share of the loss's gradient at the encoder's "
        "output that comes back through the context path, at the last evaluation, mean over seeds. Val loss rise with "
        "ĉ = 0: the trained contextlm evaluated with the context replaced by zeros, minus its val loss (mean over "
        "seeds): how much the decoder relies on the context.", ""])


def run_sweep(c, seeds, master):
    """Train and report the stability sweep: gpt and contextlm in every cell (sweep_cells)."""
    cells = {}
    for name, cell in sweep_cells(c).items():
        changed = c["cells"].get(name, ("n_embd", "learning_rate"))
        print(f"cell {name}: " + ", ".join(f"{k}={cell[k]!r}" for k in changed))
        runs = run_all(cell, sweep_arms(cell), seeds, master)
        if master:
            check_same_batches(runs, seeds)
            cells[name] = sweep_cell(cell, runs, seeds)
    if not master:
        return
    stem, table = report_stem(c), sweep_markdown(c, cells, seeds)
    write_text(stem + ".md", table)
    write_text(stem + ".json", json.dumps({"study": "sweep", "seeds": seeds, "config": c, "cells": cells}, indent=1))
    plot_study_sweep(cells, stem + ".png", "stability sweep, " + (context_suffix(c)[1:] or "default context"))
    print("\n" + table)
    print(f"wrote {stem}.md, {stem}.json and {stem}.png")


# ---------------------------------------------------------------- main

def study_config(argv):
    """The study's config from the command line: DEFAULTS, then config/compare_shakespeare_char.py
    unless argv names a config file (--quick names config/compare_quick.py), then argv; checked."""
    argv = expand_quick(argv, "compare")
    if all(a.startswith("--") for a in argv):  # no config file: the default study
        argv = [os.path.join(CONFIG_DIR, "compare_shakespeare_char.py")] + argv
    c = parse_config(DEFAULTS, argv, CHECKS)
    if c["sweep"] and c["ablation"]:
        raise UserError("--sweep=True and --ablation=True are two studies: run one, then the other")
    if c["backbone"]:  # all the arms on that block: its fields replace the configured ones
        c |= backbone_fields(c["backbone"])
    load_meta(c["data_root"], c["dataset"])  # a missing dataset fails now, not after the first run
    return c


def run_all(c, arms, seeds, master):
    """Train every run of the study, or reuse it where it finished earlier, seed by seed (early
    seeds are complete first), with one progress line a run; {arm: {seed: collect()}} on rank 0."""
    todo = study_runs(c, arms, seeds)
    earlier = [None if c["fresh"] else finished(cfg) for _, _, cfg in todo]
    to_train = earlier.count(None)
    print(f"{len(todo)} runs: {len(todo) - to_train} finished earlier, {to_train} to train")
    for (name, seed, cfg), done in zip(todo, earlier):  # say what replaces a finished run, before it goes
        if not (c["fresh"] or done) and (changed := changed_settings(cfg)):
            print(f"  {name}-s{seed} finished with other settings, trained again: "
                  + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())))
    runs = {name: {} for name in arms}
    t0, trained, trained_s = time.time(), 0, 0.0
    for i, ((name, seed, cfg), done) in enumerate(zip(todo, earlier), 1):
        # time left: the mean time of the runs trained so far, times the runs still to train
        left = f", about {train.format_duration(trained_s / trained * (to_train - trained))} left" if trained else ""
        print(f"[run {i}/{len(todo)}] {name}-s{seed} in {cfg['out_dir']} "
              f"({train.format_duration(time.time() - t0)} elapsed{left}): ", end="", flush=True)
        status = "finished earlier, reused"
        if done is None:
            done = train_run(cfg, master)
            trained, trained_s = trained + 1, trained_s + done["wall_s"]
            status = f"trained in {done['wall_s']:.0f}s"
        if master:
            runs[name][seed] = collect(cfg, done)
            print(f"{status}, final val loss {runs[name][seed]['final']:.4f}")
    return runs


def report_stem(c):
    """The report's path, less its extension: out_dir/results, ablation, or sweep and the context
    options it changes (sweep-none, sweep-context_gain_init=1.0, ...)."""
    name = "sweep" + context_suffix(c) if c["sweep"] else "ablation" if c["ablation"] else "results"
    return os.path.join(c["out_dir"], name)


def check_report(path, earlier):
    """Refuse, in one line, a study whose report (path: its .json; the .md and figures beside it)
    would replace a file compare.py did not write, or the --earlier results it reads."""
    if earlier and os.path.realpath(earlier) == os.path.realpath(path):
        raise UserError(f"--earlier={earlier} is the report this study writes: give another --out_dir, or copy "
                        "the earlier results.json elsewhere first")
    own_json(path, lambda r: isinstance(r, dict) and "study" in r,
             f"{path} is not a report that compare.py wrote (no 'study' in it): move it away or give another --out_dir")


def main(argv=None):
    c = study_config(sys.argv[1:] if argv is None else list(argv))
    master = int(os.environ.get("RANK", 0)) == 0  # under torchrun, only rank 0 writes and reports
    if not master:
        sys.stdout = open(os.devnull, "w")
    arms = arms_of(c)
    seeds = [c["seed"] + i for i in range(c["seeds"])]
    if set(c["arms"]) - set(arms):
        raise UserError(f"--arms={c['arms']}: this study's arms are {', '.join(arms)}")
    trained = {name: fields for name, fields in arms.items() if not c["arms"] or name in c["arms"]}

    # every input and output checked before the first run trains: each run's model, schedule and
    # folder (one to train again must be compare.py's own), the report's files, the earlier study
    studies = [(cell, sweep_arms(cell)) for cell in sweep_cells(c).values()] if c["sweep"] else [(c, trained)]
    for study, study_arms in studies:
        for _, _, cfg in study_runs(study, study_arms, seeds):
            train.check_config(cfg)
            if c["fresh"] or not finished(cfg):
                check_run_folder(cfg["out_dir"])
    check_report(report_stem(c) + ".json", c["earlier"])
    earlier = read_earlier(c, seeds, trained) if c["earlier"] and not c["sweep"] else {}
    if not c["sweep"] and not earlier and "gpt" not in trained:
        raise UserError("a study of some arms (--arms) without gpt is reported beside an earlier one's: give "
                        "--earlier=PATH to its results.json, or add 'gpt' to --arms")

    if c["sweep"]:
        run_sweep(c, seeds, master)
        return train.end_ddp()
    runs = run_all(c, trained, seeds, master)
    train.end_ddp()  # train() keeps one process group for all the runs under torchrun
    if not master:
        return

    check_same_batches(runs, seeds)
    arms = trained  # and before them the earlier study's arms (gpt first: every arm is paired with it)
    if earlier:
        arms = {name: next(iter(by_seed.values()))["model"] for name, by_seed in earlier.items()} | trained
        runs = {name: (earlier | runs)[name] for name in arms}
    title = f"{'ablation' if c['ablation'] else 'next-context prediction'}, {c['dataset']}" + \
        (f", {c['backbone']} block" if c["backbone"] else "")
    summary = summarize(arms, runs, seeds)
    budgets = equal_budgets(summary)
    tests = comparisons(c, summary)
    stem = report_stem(c)
    table = markdown(c, summary, seeds, title, tests, budgets)
    write_text(stem + ".md", table)
    write_text(stem + ".json", json.dumps({"study": "ablation" if c["ablation"] else "main", "seeds": seeds,
                                           "config": c, "same_batches_checked": True, "arms": summary,
                                           "equal_budgets": budgets, "comparisons": tests}, indent=1))
    png = stem + ".png" if c["ablation"] else os.path.join(c["out_dir"], "curves.png")
    (plot_study_ablation if c["ablation"] else plot_study_curves)(summary, seeds, png, title)
    efficiency_png = os.path.join(c["out_dir"], ("ablation_" if c["ablation"] else "") + "efficiency.png")
    plot_study_efficiency(summary, seeds, budgets, efficiency_png, title)
    print("\n" + table)
    print(f"wrote {stem}.md, {stem}.json, {png} and {efficiency_png}")


if __name__ == "__main__":
    run_main(main)
