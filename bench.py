"""
ContextLM and GPT-2 side by side: training throughput, peak memory and MFU of three models of one
shape, then decoding speed with the KV cache against full recompute.

    python bench.py                         # the gpt2 shape (124M), on the GPU if there is one
    python bench.py --quick                 # config/bench_quick.py: a tiny shape, a minute at most on a CPU
    python bench.py --shape=gpt2-xl --interleave=False   # three XL models do not fit on one GPU together
    python bench.py --shape=pythia-160m                  # on Pythia's block (rotary, parallel, untied head)

The three models are the study's (variants.model_variants: gpt, contextlm and gpt+{P}L, as many
parameters as contextlm), of one shape and one block (--backbone, variants.BACKBONES). Markdown
tables go to stdout, progress to stderr, the numbers to out_dir/bench.json and a plot beside it
(docs/performance.md). Tokens are random: speed does not depend on what they say.
"""

import concurrent.futures
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time

import torch

from configurator import (SEED, UserError, at_least, check_options, counts, expand_quick, one_of, own_json,
                          parse_config, run_main, write_text)
from variants import BACKBONES, backbone_fields, model_variants
from device import peak_flops, setup_device, synchronize
from engine import DecodingState, Engine
from model import GPT, GPTConfig
from plot import plt, save_figure  # matplotlib as plot.py set it up: files only, no display

DEFAULTS = dict(
    # shape: a name; each of the six keys after it that is not 0 overrides the named shape
    shape="gpt2",            # gpt2, gpt2-medium, gpt2-large, gpt2-xl, pythia-70m ... pythia-1.4b, or tiny (--quick's)
    backbone="",             # the block, gpt2 or pythia (variants.BACKBONES); '' = the shape's
    n_layer=0,               # token layers of gpt and contextlm
    n_head=0,
    n_embd=0,
    block_size=0,            # sequence length of every training step
    vocab_size=0,
    batch_size=0,            # sequences per training step
    # ContextLM
    n_ctx_layer=2,           # context predictor layers; gpt+{P}L gets this many more token layers
    chunk_size=4,
    n_enc_layer=0,
    bias=False,              # like train.py
    # training: each model warms up, then in every round each model takes its steps in turn
    warmup_steps=10,         # untimed; compilation happens here
    train_rounds=5,          # tokens/s is the median over rounds
    steps_per_round=10,
    interleave=True,         # all three models on the device at once, taking turns; False: one at a time
    # decoding (gpt and contextlm): greedy generate() from a random prompt, cache on and off
    gen_lengths=(128, 512),  # new tokens per generate() call
    gen_batch_size=8,
    prompt_len=16,
    gen_rounds=3,            # tokens/s is the median over rounds
    # system
    device="auto",           # 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'
    dtype="auto",            # 'auto' = bfloat16 autocast on CUDA (float16 on older GPUs), float32 elsewhere
    compile=None,            # torch.compile the training step and the decode step; None = on CUDA only
    threads=0,               # CPU threads for torch (0 = torch's default; 1 is faster on a busy, shared CPU)
    seed=1337,
    out_dir="bench",
    json="",                 # the results file ('' = out_dir/bench.json); the plot goes next to it (.png)
)

# the valid values of the options above, checked by resolve() once the shape has filled in its
# zeros (device and dtype: device.setup_device)
CHECKS = dict(
    n_layer=at_least(1), n_head=at_least(1), n_embd=at_least(1), block_size=at_least(1),
    vocab_size=at_least(1), batch_size=at_least(1),
    n_ctx_layer=at_least(1, "with 0 contextlm would be the gpt baseline"), chunk_size=at_least(1),
    n_enc_layer=at_least(0), warmup_steps=at_least(0), train_rounds=at_least(1), steps_per_round=at_least(1),
    gen_lengths=counts("new tokens per generate(), like (128, 512)"), gen_batch_size=at_least(1),
    prompt_len=at_least(1), gen_rounds=at_least(1), compile=one_of(None, True, False),
    threads=at_least(0, "0 = torch's default"), seed=SEED, backbone=one_of("", *BACKBONES),
)

PYTHIA = dict(block_size=2048, vocab_size=50304, backbone="pythia")  # Pythia's window, vocabulary and block

SHAPES = {  # GPT-2's sizes (vocabulary padded to a multiple of 64), a batch for one 80 GB GPU
    "gpt2":        dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304, batch_size=12),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, vocab_size=50304, batch_size=8),
    "gpt2-large":  dict(n_layer=36, n_head=20, n_embd=1280, block_size=1024, vocab_size=50304, batch_size=4),
    "gpt2-xl":     dict(n_layer=48, n_head=25, n_embd=1600, block_size=1024, vocab_size=50304, batch_size=2),
    "tiny":        dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=512, batch_size=8),
    # Pythia's sizes on its block (PYTHIA); batches of about as many tokens as the GPT-2 shape of
    # the same size, not measured (1b, 1.4b: --interleave=False, as XL)
    "pythia-70m":  dict(PYTHIA, n_layer=6, n_head=8, n_embd=512, batch_size=8),
    "pythia-160m": dict(PYTHIA, n_layer=12, n_head=12, n_embd=768, batch_size=6),
    "pythia-410m": dict(PYTHIA, n_layer=24, n_head=16, n_embd=1024, batch_size=4),
    "pythia-1b":   dict(PYTHIA, n_layer=16, n_head=8, n_embd=2048, batch_size=2),
    "pythia-1.4b": dict(PYTHIA, n_layer=24, n_head=16, n_embd=2048, batch_size=1),
}

DECODERS = ("gpt", "contextlm")  # the parameter-matched GPT decodes like gpt, only deeper


def resolve(config):
    """The config with the shape filled in and every value checked (UserError naming the fix)."""
    c = dict(config)
    if c["shape"] not in SHAPES:
        raise UserError(f"unknown shape '{c['shape']}': use one of {', '.join(SHAPES)}")
    shape = dict(SHAPES[c["shape"]])
    c["backbone"] = c["backbone"] or shape.pop("backbone", "gpt2")
    backbone_fields(c["backbone"])  # an unknown name stops here
    for key, value in shape.items():
        if c[key] == 0:
            c[key] = value
    check_options(c, CHECKS)
    # decoding stays inside one window, so that no re-prefill (past block_size) enters the timing
    if c["prompt_len"] + max(c["gen_lengths"]) > c["block_size"]:
        raise UserError(f"prompt_len + longest gen_length = {c['prompt_len'] + max(c['gen_lengths'])} > "
                        f"block_size={c['block_size']}: shorten --gen_lengths or --prompt_len")
    if not c["json"]:
        c["json"] = os.path.join(c["out_dir"], "bench.json")
    check_results_file(c["json"])
    try:
        for model_args in model_args_of(c).values():
            GPTConfig(**model_args)
    except ValueError as e:
        raise UserError(f"invalid model shape: {e}")
    return c


def check_results_file(path):
    """Refuse, before measuring, a --json that would replace a file bench.py did not write (the
    plot goes beside it, with .png for .json)."""
    if not path.endswith(".json"):
        raise UserError(f"--json={path}: the results are a .json file (the plot goes beside it as .png)")
    own_json(path, lambda earlier: isinstance(earlier, dict) and "settings" in earlier,
             f"{path} is not a bench.py result: move it away, or give another --json")


def model_args_of(c):
    """GPTConfig arguments of the three models (variants.model_variants), by name, in c's shape."""
    shared = dict(block_size=c["block_size"], vocab_size=c["vocab_size"], n_head=c["n_head"],
                  n_embd=c["n_embd"], bias=c["bias"], dropout=0.0) | backbone_fields(c["backbone"])
    return {name: shared | fields for name, fields in model_variants(c).items()}


def progress(message):
    print(message, file=sys.stderr, flush=True)


def random_tokens(vocab_size, shape, seed, device):
    return torch.randint(vocab_size, shape, generator=torch.Generator().manual_seed(seed)).to(device)


def random_batch(vocab_size, batch_size, block_size, seed, device):
    """(inputs, targets) of random tokens: the speed of a step does not depend on what they say."""
    return tuple(random_tokens(vocab_size, (batch_size, block_size), seed + i, device) for i in (0, 1))


# ---------------------------------------------------------------- training

def make_trainer(model_args, device, autocast, use_compile, seed):
    """(model, step): a freshly initialised model on device and a function taking one training
    step on a batch: forward, backward and AdamW configured as train.py does."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**model_args)).to(device)
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.split(":")[0])
    forward = torch.compile(model) if use_compile else model

    def step(x, y):
        with autocast:
            _, loss = forward(x, y)
        loss.backward()  # no float16 loss scaling: only the speed matters here
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


def warm_up_runtime(model_args, device, autocast, x, y):
    """One training step of a minute model of the same kind on a few tokens, so that the
    libraries' one-time allocations (CPU: code and buffers, ~100 MB; CUDA: cuBLAS workspaces)
    are not charged to whichever model is measured first."""
    minute = model_args | dict(n_layer=1, n_head=1, n_embd=8, n_ctx_layer=min(1, model_args["n_ctx_layer"]),
                               n_enc_layer=0)
    n = 2 * model_args["chunk_size"]  # a complete chunk at least, for the context predictor
    _, step = make_trainer(minute, device, autocast, False, 0)
    step(x[:1, :n], y[:1, :n])


def peak_rss():
    """This process's peak resident memory so far, in bytes. Linux: VmHWM, as ru_maxrss would
    start from the high-water mark of the parent this process was forked from."""
    if os.path.exists("/proc/self/status"):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: in bytes


def cpu_peak_memory(model_args, batch_size, dtype, use_compile, seed, threads):
    """Run in a fresh process: how far building one model and its optimizer and taking two
    training steps (the second with AdamW's state in place) raise the peak resident memory."""
    torch.set_num_threads(threads)
    _, _, _, autocast = setup_device("cpu", dtype)
    x, y = random_batch(model_args["vocab_size"], batch_size, model_args["block_size"], seed, "cpu")
    warm_up_runtime(model_args, "cpu", autocast, x, y)
    before = peak_rss()
    _, step = make_trainer(model_args, "cpu", autocast, use_compile, seed)
    for _ in range(2):
        step(x, y)
    return peak_rss() - before


def in_fresh_process(fn, *args):
    """fn(*args) in a new Python process (spawned, so that nothing is inherited from this one)."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def bench_training(c, variants, device, dtype, autocast, use_compile):
    """Per model: tokens/s (median over rounds), peak memory, parameters, FLOPs/token and MFU."""
    device_type = device.split(":")[0]
    x, y = random_batch(c["vocab_size"], c["batch_size"], c["block_size"], c["seed"], device)
    warm_up_runtime(variants["contextlm"], device, autocast, x, y)
    tokens_per_round = c["steps_per_round"] * c["batch_size"] * c["block_size"]
    # Interleaved rounds spread drift (clocks, temperature, other processes) evenly over the models
    groups = [list(variants)] if c["interleave"] else [[name] for name in variants]
    rows, speeds, memory = {}, {name: [] for name in variants}, {name: None for name in variants}
    for group in groups:
        steps = {}
        for name in group:
            # CUDA: the models already built hold the same memory throughout (their gradients are
            # freed after each step), so what a step of this one adds on top is its own peak
            base = torch.cuda.memory_allocated(device) if device_type == "cuda" else 0
            model, steps[name] = make_trainer(variants[name], device, autocast, use_compile, c["seed"])
            params = model.param_breakdown()
            rows[name] = dict(n_layer=model.config.n_layer, n_ctx_layer=model.config.n_ctx_layer,
                              params_token=params["token"], params_predictor=params["predictor"],
                              flops_per_token=model.flops_per_token(c["block_size"]))
            del model  # the step function keeps it
            progress(f"{name}: {(params['token'] + params['predictor']) / 1e6:.2f}M parameters, "
                     f"{c['warmup_steps']} warm-up steps{' (compiling)' if use_compile else ''}")
            for _ in range(c["warmup_steps"]):
                steps[name](x, y)
            if device_type == "cuda":
                synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                steps[name](x, y)
                synchronize(device)
                memory[name] = torch.cuda.max_memory_allocated(device) - base
        for r in range(c["train_rounds"]):
            for name in group:
                synchronize(device)
                t0 = time.perf_counter()
                for _ in range(c["steps_per_round"]):
                    steps[name](x, y)
                synchronize(device)
                speeds[name].append(tokens_per_round / (time.perf_counter() - t0))
            progress(f"training round {r + 1}/{c['train_rounds']}: " +
                     ", ".join(f"{name} {speeds[name][-1]:,.0f} tok/s" for name in group))
        del steps  # free this group's models before the next group is built
        if device_type == "cuda":
            torch.cuda.empty_cache()

    if device_type == "cpu":
        # The CPU allocator keeps no peak like CUDA's, and tracemalloc does not see tensor memory,
        # so each model is built and stepped in a fresh process, and its memory is how far that
        # raises the process's peak resident set. Coarse (pages, the C allocator's caching) but
        # per model: one process's high-water mark is never shared by two models.
        for name in variants:
            progress(f"{name}: peak memory of two training steps, in a fresh process")
            memory[name] = in_fresh_process(cpu_peak_memory, variants[name], c["batch_size"], dtype, use_compile,
                                            c["seed"], torch.get_num_threads())
    # (MPS: no per-model peak to read, so no memory figures)

    peak = peak_flops(device)  # None where unknown (CPU, MPS): no MFU then
    for name, row in rows.items():
        row["tokens_per_sec"] = statistics.median(speeds[name])
        row["tokens_per_sec_rounds"] = speeds[name]
        row["throughput_ratio"] = row["tokens_per_sec"] / statistics.median(speeds["gpt"])
        row["peak_memory_bytes"] = memory[name]
        row["memory_ratio"] = memory[name] / memory["gpt"] if memory[name] and memory["gpt"] else None
        row["mfu"] = row["flops_per_token"] * row["tokens_per_sec"] / peak if peak else None
    return rows


# ---------------------------------------------------------------- decoding

def bench_decoding(c, variants, device, autocast, use_compile):
    """Per decoding model, batch size (gen_batch_size, and 1) and length: greedy generation with
    the KV cache, the decode step compiled if use_compile (engine.Engine), and with a
    full forward over the whole sequence at every step (eager). Steady tokens/s are medians over
    rounds; the first call's extra seconds are the first cached generate() of each batch size and
    length, less a steady one: compiling, CUDA graphs recorded, attention plans, allocations."""
    batch_sizes = sorted({c["gen_batch_size"], 1}, reverse=True)
    prompts = {B: random_tokens(c["vocab_size"], (B, c["prompt_len"]), c["seed"] + 2, device) for B in batch_sizes}
    engines = {}
    for name in DECODERS:
        torch.manual_seed(c["seed"])
        engines[name] = Engine(GPT(GPTConfig(**variants[name])).to(device).eval(), compile=use_compile)
    # a DecodingState per model and batch size, its buffers (and on CUDA its CUDA graph) reused by every call
    states = {(name, B): DecodingState(engines[name].model.config) for name in DECODERS for B in batch_sizes}

    def seconds(name, B, length, use_cache):
        synchronize(device)
        t0 = time.perf_counter()
        with autocast:
            engines[name].generate(prompts[B], length, temperature=0.0, use_cache=use_cache, state=states[name, B])
        synchronize(device)
        return time.perf_counter() - t0

    progress(f"decoding: first calls{' (compiling the decode step)' if use_compile else ''}")
    first = {(name, B, n): seconds(name, B, n, True)
             for name in DECODERS for B in batch_sizes for n in c["gen_lengths"]}
    for name in DECODERS:
        for B in batch_sizes:
            seconds(name, B, min(c["gen_lengths"]), False)  # recompute's warm-up
    keys = [(name, B, n) for B in batch_sizes for n in c["gen_lengths"] for name in DECODERS]
    runs = {(key, use_cache): [] for key in keys for use_cache in (True, False)}
    for r in range(c["gen_rounds"]):
        for key in keys:
            for use_cache in (True, False):
                runs[key, use_cache].append(seconds(*key, use_cache))
        progress(f"decoding round {r + 1}/{c['gen_rounds']}: " + ", ".join(
            f"{name}@{n}x{B} {B * n / runs[(name, B, n), True][-1]:,.0f} / {B * n / runs[(name, B, n), False][-1]:,.0f}"
            " tok/s" for name, B, n in keys) + " (cache / recompute)")

    rows = []
    for name, B, n in keys:
        cache, recompute = (statistics.median(runs[(name, B, n), use_cache]) for use_cache in (True, False))
        gpt_cache = statistics.median(runs[("gpt", B, n), True])
        rows.append(dict(model=name, length=n, batch_size=B, first_call_s=first[name, B, n],
                         first_call_extra_s=first[name, B, n] - cache,
                         cache_tokens_per_sec=B * n / cache, recompute_tokens_per_sec=B * n / recompute,
                         speedup=recompute / cache, ratio_to_gpt=gpt_cache / cache))
    return rows


# ---------------------------------------------------------------- targets, the whole run

def check_targets(training, decoding):
    """The figures the benchmark exists to measure, against the project's targets (stated for the
    gpt2 shape on a GPU): information, never an assertion."""
    targets = []

    def target(text, measured, threshold, at_least=True):
        met = None if measured is None else (measured >= threshold if at_least else measured <= threshold)
        targets.append(dict(target=text, threshold=threshold, measured=measured, met=met))

    target("contextlm training tokens/s >= 0.95x gpt", training["contextlm"]["throughput_ratio"], 0.95)
    target("contextlm peak memory <= 1.05x gpt", training["contextlm"]["memory_ratio"], 1.05, at_least=False)
    lengths = sorted({row["length"] for row in decoding})
    n = 512 if 512 in lengths else lengths[-1]
    B = max(row["batch_size"] for row in decoding)
    for row in decoding:
        if row["length"] == n and row["batch_size"] == B:
            target(f"{row['model']} KV cache >= 10x full recompute at {n} tokens, batch {B}"
                   + ("" if n == 512 else " (target stated at 512)"), row["speedup"], 10.0)
    target("contextlm KV-cache decoding >= 0.9x gpt (slowest length and batch)",
           min(row["ratio_to_gpt"] for row in decoding if row["model"] == "contextlm"), 0.9)
    target("batch-1 KV-cache decoding >= 1,000 tokens/s (slowest model and length)",
           min(row["cache_tokens_per_sec"] for row in decoding if row["batch_size"] == 1), 1000.0)
    target("the first generate()'s extra seconds <= 1 (largest)",
           max(row["first_call_extra_s"] for row in decoding), 1.0, at_least=False)
    return targets


MEMORY_MEASURES = {  # what "peak memory" means, by device type (MPS: not measured)
    "cuda": "torch.cuda.max_memory_allocated in one training step, less what was allocated before the model was built",
    "cpu": "growth of the peak resident memory of a fresh process building the model and taking two training steps",
}


def run_bench(config):
    """Measure everything `config` (DEFAULTS' keys) asks for; the results as a JSON-ready dict."""
    c = resolve(config)
    device, device_type, ptdtype, autocast = setup_device(c["device"], c["dtype"])
    use_compile = device_type == "cuda" if c["compile"] is None else c["compile"]
    dtype = str(ptdtype).removeprefix("torch.")
    if c["threads"]:
        torch.set_num_threads(c["threads"])
    variants = model_args_of(c)
    shape_name = c["shape"] if all(c[key] == value for key, value in SHAPES[c["shape"]].items()) else "custom"
    progress(f"{shape_name}: {c['backbone']} block, {c['n_layer']} layers, {c['n_head']} heads, {c['n_embd']} dims, "
             f"block {c['block_size']}, batch {c['batch_size']}, vocab {c['vocab_size']} on {device} "
             f"({dtype}{', compiled' if use_compile else ''})")
    t0 = time.time()
    training = bench_training(c, variants, device, dtype, autocast, use_compile)
    decoding = bench_decoding(c, variants, device, autocast, use_compile)
    return dict(
        device=torch.cuda.get_device_name(device) if device_type == "cuda" else f"{device} ({platform.machine()})",
        device_type=device_type,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        dtype=dtype,
        compile=use_compile,
        shape={"name": shape_name} | {
            key: c[key] for key in (*SHAPES["tiny"], "n_ctx_layer", "chunk_size", "n_enc_layer", "bias")},
        settings=c,
        memory_measure=MEMORY_MEASURES.get(device_type),
        training=training,
        decoding=decoding,
        targets=check_targets(training, decoding),
        seconds=time.time() - t0,
    )


# ---------------------------------------------------------------- output

def markdown(results):
    """The results as markdown: training and decoding tables, then the targets."""
    s = results["shape"]
    out = [f"## Training: {s['name']} shape ({results['settings']['backbone']} block, {s['n_layer']} layers, "
           f"{s['n_head']} heads, {s['n_embd']} dims), "
           f"batch {s['batch_size']} x {s['block_size']} tokens, {results['dtype']}"
           f"{', compiled' if results['compile'] else ''}, on {results['device']}",
           "",
           "| model | layers (token + predictor) | params token | params predictor | tokens/s | ratio "
           "| peak memory | ratio | FLOPs/token | MFU |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["training"].items():
        memory = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:,.1f} MiB"
        memory_ratio = "n/a" if r["memory_ratio"] is None else f"{r['memory_ratio']:.3f}"
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu'] * 100:.1f}%"
        out.append(f"| {name} | {r['n_layer']} + {r['n_ctx_layer']} | {r['params_token'] / 1e6:.2f}M "
                   f"| {r['params_predictor'] / 1e6:.2f}M | {r['tokens_per_sec']:,.0f} | {r['throughput_ratio']:.3f} "
                   f"| {memory} | {memory_ratio} "
                   f"| {r['flops_per_token'] / 1e6:,.1f}M | {mfu} |")
    out += ["", f"## Decoding: greedy, prompt {results['settings']['prompt_len']} tokens; KV cache "
                f"{'compiled' if results['compile'] else 'eager'}, recompute eager",
            "",
            "| model | batch | new tokens | first call | its extra | KV cache tok/s (steady) | recompute tok/s "
            "| speed-up | cache ratio to gpt |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results["decoding"]:
        out.append(f"| {r['model']} | {r['batch_size']} | {r['length']} | {r['first_call_s']:.2f} s "
                   f"| {r['first_call_extra_s']:+.2f} s | {r['cache_tokens_per_sec']:,.0f} "
                   f"| {r['recompute_tokens_per_sec']:,.0f} | {r['speedup']:.2f}x | {r['ratio_to_gpt']:.3f} |")
    out += ["", "## Targets (stated for the gpt2 shape on a GPU; information, not assertions)", ""]
    for t in results["targets"]:
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.3f}"
        mark = {True: "pass", False: "FAIL", None: "n/a"}[t["met"]]
        out.append(f"- {t['target']}: measured {measured} ({mark})")
    return "\n".join(out)


def plot(results, path):
    """Two panels: training tokens/s per model; decoding tokens/s against length."""
    fig, (train_ax, decode_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(results["training"])
    bars = train_ax.bar(names, [results["training"][n]["tokens_per_sec"] for n in names],
                        color=["tab:gray", "tab:blue", "tab:orange"])
    train_ax.bar_label(bars, labels=[f"{results['training'][n]['throughput_ratio']:.2f}x" for n in names])
    train_ax.set_ylabel("training tokens/s")
    train_ax.set_title("training (ratio to gpt above the bars)")
    B = results["settings"]["gen_batch_size"]
    for name, color in zip(DECODERS, ("tab:gray", "tab:blue")):
        rows = [r for r in results["decoding"] if r["model"] == name and r["batch_size"] == B]
        lengths = [r["length"] for r in rows]
        decode_ax.plot(lengths, [r["cache_tokens_per_sec"] for r in rows], "o-", color=color, label=f"{name}, KV cache")
        decode_ax.plot(lengths, [r["recompute_tokens_per_sec"] for r in rows], "o--", color=color,
                       label=f"{name}, recompute")
    decode_ax.set_xlabel("new tokens")
    decode_ax.set_ylabel("decoding tokens/s")
    decode_ax.set_yscale("log")
    decode_ax.set_title(f"greedy decoding, batch {B} (steady)")
    decode_ax.legend()
    s = results["shape"]
    fig.suptitle(f"{s['name']} shape ({results['settings']['backbone']} block, {s['n_layer']}/{s['n_head']}/"
                 f"{s['n_embd']}) on {results['device']}, {results['dtype']}")
    save_figure(fig, path)


def save(results):
    """Write the JSON and, next to it, the plot; their paths."""
    json_path = results["settings"]["json"]
    png_path = os.path.splitext(json_path)[0] + ".png"
    write_text(json_path, json.dumps(results, indent=2))
    plot(results, png_path)
    return json_path, png_path


def main(argv=None):
    # (CHECKS apply in resolve, once the shape has filled in its zeros)
    config = parse_config(DEFAULTS, expand_quick(sys.argv[1:] if argv is None else argv, "bench"))
    try:
        results = run_bench(config)
    except torch.cuda.OutOfMemoryError:
        raise UserError("out of GPU memory: lower --batch_size, or build one model at a time with --interleave=False")
    print(markdown(results))
    json_path, png_path = save(results)
    progress(f"wrote {json_path} and {png_path} ({results['seconds']:.0f}s)")


if __name__ == "__main__":
    run_main(main)
