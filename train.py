"""
Train ContextLM, or with --n_ctx_layer=0 the plain GPT-2 (or Pythia) baseline, with the same script.
With no config file it trains the paper's ContextLM-Base (Table 1): GPT-2 124M plus a 2-layer
context predictor on OpenWebText (`python prepare.py openwebtext` first), ~0.5M tokens a step.

    python train.py config/train_shakespeare_char.py                 # a small model, on a CPU
    python train.py config/train_pythia_shakespeare_char.py          # the same on Pythia's block
    python train.py --batch_size=8 --gradient_accumulation_steps=64  # ContextLM-Base on one GPU
    torchrun --standalone --nproc_per_node=8 train.py                # ContextLM-Base on 8 GPUs
    python train.py config/finetune_alpaca_gpt2.py                   # fine-tune a run on Alpaca

Multi-node DDP, fine-tuning and every key: docs/training.md and docs/finetuning.md. The
configuration is the defaults below (the model's are GPTConfig's), then config files, then
--key=value overrides, in order.

Read top down: train() tells a run (processes and device, data, model and optimizer, then the
loop: evaluate and checkpoint, step, log, stop on a signal); what the loop calls follows in that
order (the research probes beside estimate_loss, which logs them; the next micro-batch is fetched
while this one computes); then the setup and checks train() calls.
"""

import gc
import hashlib
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, fields
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from checkpoint import is_pretrained, is_run, load_run, pretrained_tokenizer, save_checkpoint
from configurator import NOT_EMPTY, SEED, UserError, above, at_least, between, one_of, parse_config, run_main, writing
from dataset import Examples, check_same_tokenizer, load_meta, open_examples, open_split, same_tokenizer
from device import peak_flops, setup_device
from model import FIELDS_BEFORE_THEY_EXISTED, GPT, GPTConfig

MODEL_KEYS = tuple(f.name for f in fields(GPTConfig))  # the config keys that shape the model

# The paper's ContextLM-Base run (Table 1), which config/train_contextlm_owt.py names (out_dir,
# wandb_run_name); tests/test_train.py checks that the two agree.
DEFAULTS = dict(
    # I/O
    out_dir="out",
    eval_interval=1000,
    log_interval=10,
    eval_iters=200,
    eval_only=False,              # evaluate once and exit
    always_save_checkpoint=True,  # else only when val loss improves
    init_from="scratch",          # 'scratch', 'resume' (out_dir/ckpt.pt), GPT-2/Pythia weights, or a run to fine-tune
    wandb_log=False,
    wandb_project="contextlm",
    wandb_run_name="run",
    # data
    dataset="openwebtext",
    data_root="data",             # datasets live in data_root/dataset (see prepare.py)
    gradient_accumulation_steps=32,  # global: split across DDP ranks
    batch_size=16,                # micro-batch size per rank; 16 x 1024 (block_size) x 32 = 524,288 tokens a step
    # model: GPTConfig's fields with its defaults (n_ctx_layer=0 is plain GPT-2); vocab_size is the dataset's
    **{f.name: f.default for f in fields(GPTConfig) if f.name not in ("vocab_size", "bias")},
    bias=False,                   # no biases, the paper's (Table 1) and nanoGPT's recipe; GPTConfig's True is GPT-2's
    # AdamW
    learning_rate=1e-3,
    max_iters=17166,              # 17,166 x 524,288 = 9.0B tokens
    weight_decay=1e-1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,                # 0 disables clipping
    # learning rate schedule: linear warmup, then cosine decay to min_lr
    decay_lr=True,
    warmup_iters=715,             # GPT-3's 375M warm-up tokens
    lr_decay_iters=17166,
    min_lr=1e-4,
    # system
    backend="auto",               # DDP backend: 'auto' = nccl on CUDA, gloo on CPU
    device="auto",                # 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'
    dtype="auto",                 # 'auto' = bfloat16 where supported, float16 on older GPUs, float32 on CPU
    compile=True,                 # torch.compile the model
    seed=1337,                    # seeds the model init and, separately, the batch sampler
)

# The valid values of the options above that a bad value would crash or quietly spoil (config's
# checks; device and dtype: device.setup_device). The model's fields are GPTConfig's to check, and
# options that must agree check_config's.
CHECKS = dict(
    out_dir=NOT_EMPTY, eval_interval=at_least(1), log_interval=at_least(1), eval_iters=at_least(1),
    dataset=NOT_EMPTY, gradient_accumulation_steps=at_least(1), batch_size=at_least(1), block_size=at_least(1),
    learning_rate=above(0), max_iters=at_least(0), weight_decay=at_least(0), beta1=between(0, 1),
    beta2=between(0, 1), grad_clip=at_least(0, "0 disables clipping"),
    warmup_iters=at_least(0), lr_decay_iters=at_least(0), min_lr=at_least(0),
    backend=one_of("auto", "nccl", "gloo", "mpi", "ucc", "xccl"), seed=SEED,
)

# data_hash before any batch: the fingerprint of the batches drawn so far, chained batch by batch
# (and kept across resumes). Two runs with equal data_hash at an iteration saw the same data up to it.
NO_BATCHES = hashlib.sha256().hexdigest()


def train(config):
    """Train as `config` (a dict of DEFAULTS' keys) says. Returns a summary: iter_num (where it
    stopped), best_val_loss, val_loss (the last evaluation's), data_hash, params (param_breakdown)."""
    check_config(config)
    c = config

    # ---- processes and device
    p = setup_processes(c)
    tokens_per_iter = c["gradient_accumulation_steps"] * c["batch_size"] * c["block_size"]
    if p.master:
        print(f"tokens per iteration: {tokens_per_iter:,} ({c['gradient_accumulation_steps']} micro-batches "
              f"of {c['batch_size']} x {c['block_size']}, {p.world_size} process(es)) on {p.device}, {p.ptdtype}")

    # ---- data
    meta, train_data, val_data = load_data(c, p.master)
    if p.master:  # only once the data is there: a run that cannot start leaves no empty out_dir behind
        with writing(c["out_dir"]):
            os.makedirs(c["out_dir"], exist_ok=True)

    # ---- model, optimizer and batch sampler: new, or as the run in out_dir left them
    ckpt_path = os.path.join(c["out_dir"], "ckpt.pt")
    raw_model, optimizer, scaler, data_gen, progress = build_or_resume(c, p, meta, ckpt_path, tokens_per_iter)
    iter_num, best_val_loss, tokens_seen, data_hash = progress
    model = raw_model  # what evaluation runs; raw_model's weights are what a checkpoint saves
    if c["compile"]:
        if p.master:
            print("compiling the model... (takes a minute)")
        model = torch.compile(raw_model)
    # what training runs: under torchrun wrapped in DDP, which averages the gradients across ranks
    train_model = DDP(model, device_ids=[p.local_rank] if p.device_type == "cuda" else None) if p.ddp else model
    run_log = RunLog(c) if p.master else None
    # SIGTERM (a cluster preempting the job) and SIGINT (Ctrl-C): the loop finishes its step, saves and stops
    stop_signals = []
    previous_handlers = {sig: signal.signal(sig, lambda signum, _: stop_signals.append(signal.Signals(signum).name))
                         for sig in (signal.SIGTERM, signal.SIGINT)}

    # ---- the training loop
    flops_per_token, last_val = raw_model.flops_per_token(c["block_size"]), None
    clock = StepClock(flops_per_token * c["block_size"] * (p.micro_steps * c["batch_size"]), p.device)
    try:
        while True:
            lr = get_lr(iter_num, c)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)  # P's own scale (predictor_lr_scale)

            # evaluate, and checkpoint
            if p.master and (iter_num % c["eval_interval"] == 0 or iter_num == c["max_iters"] or c["eval_only"]):
                last = c["eval_only"] or iter_num >= c["max_iters"]
                losses = estimate_loss(model, raw_model, train_data, val_data, c, p, last)
                last_val = losses["val_loss"]
                print(f"step {iter_num}: " + ", ".join(f"{name} {losses[k]:.4f}" for k, name in LOSS_NAMES.items()
                                                      if k in losses))
                run_log.write({"iter": iter_num, "tokens": tokens_seen, "flops": tokens_seen * flops_per_token,
                               **losses, "lr": lr, "data_hash": data_hash})
                if last_val < best_val_loss or c["always_save_checkpoint"]:
                    best_val_loss = min(best_val_loss, last_val)
                    if iter_num > 0:
                        save_training_state(ckpt_path, raw_model, optimizer, scaler, data_gen, config, meta,
                                            iter_num, best_val_loss, tokens_seen, data_hash)
                        print(f"saved checkpoint to {ckpt_path}")
                clock.restart()  # keep evaluation out of the next step's timing
            if c["eval_only"] or iter_num >= c["max_iters"]:
                break

            # one optimizer step over the global batch
            shape = (c["gradient_accumulation_steps"], c["batch_size"])
            offsets = sample_offsets(train_data, c["block_size"], shape, data_gen)
            data_hash = hashlib.sha256(bytes.fromhex(data_hash) + offsets.numpy().tobytes()).hexdigest()
            loss = train_step(train_model, raw_model, optimizer, scaler, train_data, offsets, iter_num, c, p)
            tokens_seen += tokens_per_iter

            # timing and logging
            dt = clock.lap(iter_num)
            if iter_num % c["log_interval"] == 0:
                if p.ddp:  # report the loss of the global batch, not just this rank's share
                    dist.all_reduce(loss, op=dist.ReduceOp.AVG)
                if p.master:
                    lossf, mfu, max_iters = loss.item(), clock.mfu(iter_num), c["max_iters"]
                    mfu_text = f", mfu {mfu * 100:.2f}%" if mfu is not None else ""
                    print(f"iter {iter_num}/{max_iters} ({(iter_num + 1) / max_iters:.1%}): loss {lossf:.4f}, "
                          f"lr {lr:.2e}, time {dt * 1000:.2f}ms, {tokens_per_iter / dt:,.0f} tok/s{mfu_text}, "
                          f"eta {format_duration(clock.eta(iter_num, max_iters))}")
                    run_log.write({"iter": iter_num, "tokens": tokens_seen, "flops": tokens_seen * flops_per_token,
                                   "train_loss": lossf, "lr": lr, "tokens_per_sec": tokens_per_iter / dt, "mfu": mfu})
            iter_num += 1

            # stop on a signal: save, and say how to resume
            stop = bool(stop_signals)
            if p.ddp:  # a signal on any rank stops every rank, at the same step
                flag = torch.tensor(float(stop), device=p.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item())
            if stop:
                if p.master:
                    save_training_state(ckpt_path, raw_model, optimizer, scaler, data_gen, config, meta,
                                        iter_num, best_val_loss, tokens_seen, data_hash)
                    name = stop_signals[0] if stop_signals else "a signal on another rank"
                    print(f"stopped by {name} at iteration {iter_num}; saved {ckpt_path}. "
                          f"Resume with the same command plus --init_from=resume")
                break
    finally:  # train() is also a library function: give the caller its handlers back
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)

    if p.master:
        run_log.close()
    return {"iter_num": iter_num, "best_val_loss": best_val_loss, "val_loss": last_val,
            "data_hash": data_hash, "params": raw_model.param_breakdown()}


# ---------------------------------------------------------------- the loop's steps, in the order it takes them

def get_lr(it, c):
    """Linear warmup for warmup_iters, cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not c["decay_lr"]:
        return c["learning_rate"]
    if it < c["warmup_iters"]:
        return c["learning_rate"] * (it + 1) / (c["warmup_iters"] + 1)
    if it > c["lr_decay_iters"]:
        return c["min_lr"]
    ratio = (it - c["warmup_iters"]) / (c["lr_decay_iters"] - c["warmup_iters"])
    return c["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c["learning_rate"] - c["min_lr"])


# estimate_loss's numbers (log.jsonl's keys) and how the evaluation line names them
LOSS_NAMES = {"train_loss": "train loss", "val_loss": "val loss", "context_gain": "gain g",
              "context_ratio": "‖ĉ‖/‖h‖", "context_grad_share": "h's gradient through ĉ",
              "val_loss_no_context": "val loss with ĉ = 0"}

GRADIENT_BATCHES = 4  # the val batches context_grad_share is measured on: each costs a backward pass


@torch.no_grad()
def estimate_loss(model, raw_model, train_data, val_data, c, p, last=False):
    """{'train_loss', 'val_loss'}, each the mean over c['eval_iters'] batches of (c['batch_size'],
    c['block_size']): the same batches at every evaluation, and 'val_loss_by_position', the val
    loss at each position of the window (a list). For a ContextLM also, on the val batches, the
    probes below: 'context_ratio', 'context_grad_share' (on the first GRADIENT_BATCHES), and at the
    last evaluation 'val_loss_no_context'; with context_scale='learned', 'context_gain', the gain g
    (its mean over the channels, if it has one for each). model runs the losses; raw_model the probes."""
    contextlm = raw_model.config.n_ctx_layer > 0
    keys = ["train_loss", "val_loss"] + ["context_ratio", "context_grad_share"] * contextlm + \
        ["val_loss_no_context"] * (contextlm and last)
    sizes = {"context_grad_share": min(c["eval_iters"], GRADIENT_BATCHES)}  # the others: every batch
    values = {k: torch.zeros(sizes.get(k, c["eval_iters"])) for k in keys}
    position_sum, position_count = torch.zeros(c["block_size"]), torch.zeros(c["block_size"])
    model.eval()
    for split, data in (("train", train_data), ("val", val_data)):
        gen = torch.Generator().manual_seed(0)
        for i in range(c["eval_iters"]):
            offsets = sample_offsets(data, c["block_size"], (c["batch_size"],), gen)
            X, Y = get_batch(data, offsets, c["block_size"], p.device)
            with p.autocast:
                logits, loss = model(X, Y)
                values[f"{split}_loss"][i] = loss.item()
                if split == "val":
                    token_loss = F.cross_entropy(logits.flatten(0, 1).float(), Y.flatten(), ignore_index=-1,
                                                 reduction="none")
                    position_sum += token_loss.view_as(Y).sum(0).cpu()
                    position_count += (Y != -1).sum(0).cpu()
                if split == "val" and contextlm:
                    values["context_ratio"][i] = context_ratio(raw_model, X)
                    if i < GRADIENT_BATCHES:
                        values["context_grad_share"][i] = context_gradient_share(raw_model, X, Y)
                    if last:
                        values["val_loss_no_context"][i] = loss_without_context(raw_model, X, Y)
    model.train()
    out = {k: v.mean().item() for k, v in values.items()}
    if hasattr(raw_model, "context_gain"):
        out["context_gain"] = raw_model.context_gain.mean().item()
    return out | {"val_loss_by_position": (position_sum / position_count.clamp_min(1)).tolist()}


# The research probes estimate_loss logs, each on a batch idx (B, T) of a ContextLM (the GPT
# itself, not a compiled or DDP wrapper), built from the model's steps (model.py numbers them).

@torch.no_grad()
def context_ratio(model, idx):
    """‖ĉ‖ / ‖h‖ where the context is added (step 6), a float: the mean over the positions of idx
    of how large the context is beside the token state it joins (docs/method.md, "Scale")."""
    pos = torch.arange(idx.size(1), device=idx.device)  # (T,)
    h = model.token_encoder(idx, pos)  # (B, T, C)
    context = model.add_context(h, model.predicted_context(h)) - h  # (B, T, C): what D receives beside h
    return (context.norm(dim=-1) / h.norm(dim=-1)).mean().item()


@torch.no_grad()
def context_gradient_share(model, idx, targets):
    """How much of the loss's gradient at the encoder's output h arrives through the context path
    (the chunk means, P, ĉ) rather than straight into D: ‖g_ctx‖ / (‖g_ctx‖ + ‖g_D‖) on idx,
    targets (B, T), a float in [0, 1]. h is used twice, once by each path, so a copy of it goes to
    each and each copy's gradient is that path's share (the scale add_context takes from h counts
    with D's path). No gradient is left on the model's parameters."""
    pos = torch.arange(idx.size(1), device=idx.device)
    h = model.token_encoder(idx, pos)
    with torch.enable_grad():
        h_direct, h_context = h.detach().requires_grad_(), h.detach().requires_grad_()
        x = model.add_context(h_direct, model.predicted_context(h_context))
        logits = model.lm_head(model.token_decoder(x, pos))  # (B, T, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        g_direct, g_context = torch.autograd.grad(loss, (h_direct, h_context))
    return (g_context.norm() / (g_context.norm() + g_direct.norm()).clamp_min(1e-30)).item()


@torch.no_grad()
def loss_without_context(model, idx, targets):
    """The ablation ĉ = 0: the mean cross-entropy (a float) of idx, targets (B, T; -1 ignored) when
    D reads h alone, which says how much the decoder relies on the context."""
    pos = torch.arange(idx.size(1), device=idx.device)
    logits = model.lm_head(model.token_decoder(model.token_encoder(idx, pos), pos))  # (B, T, vocab)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1).item()


def save_training_state(path, raw_model, optimizer, scaler, data_gen, config, meta,
                        iter_num, best_val_loss, tokens_seen, data_hash):
    """Write the checkpoint a run resumes from exactly (and sample.py and eval.py read)."""
    save_checkpoint({
        "model": raw_model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "model_args": asdict(raw_model.config),
        "iter_num": iter_num,
        "best_val_loss": best_val_loss,
        "tokens": tokens_seen,
        "data_hash": data_hash,
        "config": config,
        "meta": meta,
        "rng": {"data": data_gen.get_state()},  # dropout's needs no state: see train_step
    }, path)


def sample_offsets(data, block_size, shape, generator):
    """Where the rows of a batch begin, a LongTensor of `shape` drawn with `generator`: anywhere a
    whole row fits in text (a uint16 memmap), at the start of an example in instruction data
    (Examples), so that a response is never seen without its prompt."""
    if isinstance(data, Examples):
        starts = torch.from_numpy(data.bounds[:, 0])
        return starts[torch.randint(len(starts), shape, generator=generator)]
    return torch.randint(len(data) - block_size, shape, generator=generator)


def train_step(model, raw_model, optimizer, scaler, train_data, offsets, iter_num, c, p):
    """One optimizer step over the global batch whose rows start at `offsets`,
    (gradient_accumulation_steps, batch_size): rank r takes micro-batches r, r + world_size, ...
    Returns this rank's loss, the mean over its micro-batches (a 0-dim tensor on p.device).
    model: what runs forward (compiled, DDP-wrapped); raw_model: the module underneath."""
    # dropout draws from a stream fixed by (seed, iteration, rank): a resumed run makes the same
    # draws on every rank as an uninterrupted one, with no RNG state to save
    # (mod 2**64, what manual_seed takes: the same stream as without for every seed that fitted before)
    torch.manual_seed((((c["seed"] << 32) + iter_num) * p.world_size + p.rank) % 2**64)
    rows = offsets[p.rank::p.world_size]  # (micro_steps, batch_size): this rank's micro-batches
    X, Y = get_batch(train_data, rows[0], c["block_size"], p.device)
    loss_sum = torch.zeros((), device=p.device)
    for micro_step in range(p.micro_steps):
        # in DDP, gradients are averaged across ranks on the last micro-step only
        sync = nullcontext() if not p.ddp or micro_step == p.micro_steps - 1 else model.no_sync()
        with sync:
            with p.autocast:
                _, loss = model(X, Y)
                loss = loss / p.micro_steps
            # fetch the next micro-batch while the GPU runs this forward pass (it draws no random numbers)
            if micro_step + 1 < p.micro_steps:
                X, Y = get_batch(train_data, rows[micro_step + 1], c["block_size"], p.device)
            scaler.scale(loss).backward()
        loss_sum += loss.detach()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), c["grad_clip"] or float("inf"))
    if not scaler.is_enabled() and not torch.isfinite(grad_norm):
        # stop before anything is saved: the last good checkpoint stays as it was
        raise UserError(f"non-finite loss or gradient at iteration {iter_num} (loss {loss_sum.item():.4g}): "
                        f"stopped without saving; {os.path.join(c['out_dir'], 'ckpt.pt')} holds the last good "
                        "state. Lower --learning_rate or check the data")
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def get_batch(data, offsets, block_size, device):
    """Inputs and next-token targets, (len(offsets), block_size) each, from those offsets. In
    instruction data (Examples) every target but the response of the row's own example is -1."""
    if isinstance(data, Examples):
        x, y = data.batch(offsets.numpy(), block_size)
    else:
        rows = torch.stack([torch.from_numpy(data[i:i + block_size + 1].astype(np.int64)) for i in offsets.tolist()])
        x, y = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()  # one read per row: targets are inputs shifted
    if str(device).startswith("cuda"):  # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


class StepClock:
    """Times the training steps, for the log: lap() gives a step's duration (evaluation left out),
    mfu() a running model FLOPs utilization, eta() the time left at the pace since this process's
    first step (compilation left out, evaluations in: they recur until the end). flops_per_step:
    the model FLOPs (forward and backward) of this rank's share of a step."""

    def __init__(self, flops_per_step, device):
        self.flops_per_step = flops_per_step
        self.peak = peak_flops(device)  # None where unknown: no MFU
        self.running_mfu = None
        self.t0, self.dt, self.first = time.time(), None, None

    def restart(self):
        self.t0 = time.time()

    def lap(self, iter_num):
        """The seconds since the last lap or restart: step iter_num has just ended."""
        t1 = time.time()
        self.dt, self.t0 = t1 - self.t0, t1
        if self.first is None:
            self.first = (t1, iter_num)
        return self.dt

    def mfu(self, iter_num):
        """The running MFU after the lap of step iter_num (None before step 5, or without a known peak)."""
        if self.peak is not None and iter_num >= 5:  # let compilation and warm-up pass first
            step_mfu = self.flops_per_step / self.dt / self.peak
            self.running_mfu = step_mfu if self.running_mfu is None else 0.9 * self.running_mfu + 0.1 * step_mfu
        return self.running_mfu

    def eta(self, iter_num, max_iters):
        """Seconds until the last step (max_iters - 1) ends, at the lap of step iter_num."""
        start, start_iter = self.first
        pace = (self.t0 - start) / (iter_num - start_iter) if iter_num > start_iter else self.dt
        return pace * max(0, max_iters - iter_num - 1)


def format_duration(seconds):
    """'42s', '5m12s', '3h07m' or '2d05h'."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# ---------------------------------------------------------------- setup and checks, in the order train() calls them

def check_config(config):
    """Refuse, in one line and before any work, what CHECKS cannot see option by option: a new
    model's fields together (GPTConfig), and a learning-rate schedule get_lr cannot follow."""
    c = config
    if c["init_from"] == "scratch":  # (a resumed or pretrained model's shape is checked as it loads)
        try:
            GPTConfig(**{k: c[k] for k in MODEL_KEYS if k in c})
        except ValueError as e:  # GPTConfig names the field: say it as the option that set it
            raise UserError(f"invalid model configuration: --{e}")
    if c["decay_lr"] and c["min_lr"] > c["learning_rate"]:
        raise UserError(f"--min_lr={c['min_lr']} is above --learning_rate={c['learning_rate']}: the schedule decays "
                        "from learning_rate down to min_lr (or use --decay_lr=False)")
    # the decay starts at warmup_iters and ends at lr_decay_iters: a run that gets there needs one in between
    if c["decay_lr"] and c["lr_decay_iters"] <= c["warmup_iters"] <= c["max_iters"]:
        raise UserError(f"--warmup_iters={c['warmup_iters']} leaves no decay before "
                        f"--lr_decay_iters={c['lr_decay_iters']}: make lr_decay_iters larger than warmup_iters")


def setup_processes(c):
    """Where this process trains, as a namespace: ddp (launched by torchrun), rank, local_rank,
    world_size, master (rank 0, the one process that logs and writes checkpoints), micro_steps
    (the micro-batches this rank runs per step), device, device_type, ptdtype, autocast.
    Under torchrun, joins the process group."""
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, local_rank, world_size = 0, 0, 1
    device, device_type, ptdtype, autocast = setup_device(c["device"], c["dtype"])
    if ddp:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        if c["gradient_accumulation_steps"] % world_size:
            raise UserError(f"gradient_accumulation_steps={c['gradient_accumulation_steps']} is not divisible by "
                            f"the {world_size} DDP processes: make it a multiple of {world_size}")
        if device_type == "cuda":
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        backend = c["backend"] if c["backend"] != "auto" else ("nccl" if device_type == "cuda" else "gloo")
        if not dist.is_initialized():  # compare.py trains several runs in one process group
            dist.init_process_group(backend=backend)
    return SimpleNamespace(ddp=ddp, rank=rank, local_rank=local_rank, world_size=world_size, master=rank == 0,
                           micro_steps=c["gradient_accumulation_steps"] // world_size,
                           device=device, device_type=device_type, ptdtype=ptdtype, autocast=autocast)


def load_data(c, verbose):
    """(meta.json, train split, val split) of the dataset. The splits are uint16 memmaps of token
    ids or, for instruction data (meta.json names a "template"), dataset.Examples: rows start at
    examples and only responses are targets. verbose: say how many examples fit in a row."""
    meta = load_meta(c["data_root"], c["dataset"])
    splits = []
    for name in ("train", "val"):
        if "template" in meta:
            data = open_examples(c["data_root"], c["dataset"], name, c["block_size"])
            if verbose:
                print(f"{name}: {len(data.bounds):,} examples ({data.cut:,} longer than block_size={c['block_size']}, "
                      f"cut; {data.left_out:,} whose prompt fills it, left out)")
        else:
            data = open_split(c["data_root"], c["dataset"], name)
            if len(data) <= c["block_size"]:  # a window is block_size inputs and their next tokens
                path = os.path.join(c["data_root"], c["dataset"], f"{name}.bin")
                raise UserError(f"the {name} split of '{c['dataset']}' ({path}) has {len(data)} tokens, too few for "
                                f"block_size={c['block_size']}: lower --block_size")
        splits.append(data)
    return meta, *splits


def build_or_resume(c, p, meta, ckpt_path, tokens_per_iter):
    """(model on p.device, optimizer, gradient scaler, batch sampler's generator, progress): new,
    or with c['init_from']='resume' all as the run in ckpt_path left them. progress is (iter_num,
    best_val_loss, tokens seen, data_hash)."""
    torch.manual_seed(c["seed"] + p.rank)  # the model's initialisation
    # The sampler has its own generator, seeded identically on every rank: runs that differ only
    # in the model draw exactly the same batches, and DDP ranks share out one global batch.
    data_gen = torch.Generator().manual_seed(c["seed"])
    model, checkpoint = build_model(c, meta, ckpt_path)
    progress = (0, float("inf"), 0, NO_BATCHES)
    if checkpoint is not None:
        iter_num = checkpoint["iter_num"]
        if "data_hash" not in checkpoint and p.master:  # written before train.py kept the fingerprint
            print(f"note: {ckpt_path} has no data_hash; the batch fingerprint restarts at iteration {iter_num}")
        progress = (iter_num, checkpoint["best_val_loss"], checkpoint.get("tokens", iter_num * tokens_per_iter),
                    checkpoint.get("data_hash", NO_BATCHES))
    model.to(p.device)
    if p.master:
        n = model.param_breakdown()
        print(f"parameters: {n['token'] / 1e6:.2f}M token pathway + {n['predictor'] / 1e6:.2f}M context predictor")
    # fp16 needs loss scaling; bf16 and fp32 do not (the scaler is then a no-op)
    scaler = torch.amp.GradScaler(p.device_type, enabled=(p.ptdtype == torch.float16))
    betas = (c["beta1"], c["beta2"])
    optimizer = model.configure_optimizers(c["weight_decay"], c["learning_rate"], betas, p.device_type)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        data_gen.set_state(checkpoint["rng"]["data"])
    return model, optimizer, scaler, data_gen, progress


def build_model(c, meta, ckpt_path):
    """(model on the CPU, the checkpoint it was resumed from or None), as c['init_from'] says:
    'scratch', 'resume' (ckpt_path, whose training state is checked, with the config and the
    tokenizer of the run), pretrained weights: GPT-2 ('gpt2', ..., 'gpt2-xl'), Pythia
    ('pythia-70m', ..., 'pythia-1.4b', 'EleutherAI/pythia-...') or a local Hugging Face folder of
    either, or a train.py run to fine-tune (its out_dir holding ckpt.pt, or a .pt file; weights
    only, with the dataset's tokenizer)."""
    # BPE vocabularies are padded up to a multiple of 64 for faster matmuls: GPT-2's 50257 ids and
    # the NeoX tokenizer's 50277 both become 50304, the size of Pythia's own embedding
    vocab_size = -(-meta["vocab_size"] // 64) * 64 if meta["tokenizer"] in ("gpt2", "neox") else meta["vocab_size"]
    model_args = {k: c[k] for k in MODEL_KEYS if k in c} | {"vocab_size": vocab_size}
    init_from, resume = c["init_from"], c["init_from"] == "resume"
    if not (init_from == "scratch" or resume or is_run(init_from) or is_pretrained(init_from)):
        raise UserError(f"init_from={init_from!r}: not scratch, resume, a GPT-2 or Pythia name like gpt2-medium or "
                        "pythia-160m, or a local Hugging Face folder, and no train.py run to fine-tune there (a run's "
                        "out_dir holding ckpt.pt, or a .pt file)")
    try:
        if init_from == "scratch":
            return GPT(GPTConfig(**model_args)), None
        if not resume and not is_run(init_from):  # pretrained weights, with a predictor as the config says
            check_pretrained_tokenizer(init_from, meta, c["dataset"])
            override = {k: c[k] for k in ("dropout", "chunk_size", "n_ctx_layer", "n_enc_layer")}
            model, _, _ = load_run(init_from, override)
            if meta["vocab_size"] > model.config.vocab_size:
                raise UserError(f"'{c['dataset']}' has {meta['vocab_size']} token ids, more than the "
                                f"vocab_size={model.config.vocab_size} of {init_from}")
        else:  # a train.py run: dropout is the one model field its config may change
            path = ckpt_path if resume else init_from
            model, run_meta, checkpoint = load_run(path, {"dropout": c["dropout"]}, hf=False)
            how = f" (python prepare.py {c['dataset']} --ckpt={init_from})" if "template" in meta else ""
            check_same_tokenizer(run_meta, meta, path, "the dataset", "resume on the dataset the run was trained on"
                                 if resume else f"prepare '{c['dataset']}' with its tokenizer{how}")
            if resume:
                check_resume(checkpoint, model_args, path)
                return model, checkpoint
            # fine-tuning: the run's weights and architecture, a fresh optimizer, schedule and iteration count
            if c["block_size"] > model.config.block_size:
                raise UserError(f"block_size={c['block_size']} is longer than the {model.config.block_size} "
                                f"positions of {init_from}: use --block_size={model.config.block_size}")
        if c["block_size"] < model.config.block_size:
            model.crop_block_size(c["block_size"])
        return model, None
    except ValueError as e:  # an invalid model configuration
        raise UserError(f"invalid model configuration: {e}")


# how to prepare a dataset in each BPE, for the error below
PREPARE_HINT = {"gpt2": "`python prepare.py openwebtext` (or shakespeare, wikitext, ...)",
                "neox": "`python prepare.py pile` (or NAME --tokenizer=neox)"}


def check_pretrained_tokenizer(init_from, meta, dataset):
    """Pretrained weights read token ids as their own tokenizer wrote them: the dataset must be in
    the same one. GPT-2 weights need a GPT-2 BPE dataset; Pythia (GPT-NeoX) weights a neox
    dataset whose vocabulary is that of the tokenizer in the weights' repository or folder."""
    wanted = pretrained_tokenizer(init_from)
    if meta["tokenizer"] != wanted["tokenizer"]:
        raise UserError(f"init_from={init_from} reads {wanted['tokenizer']} token ids, but '{dataset}' is tokenized "
                        f"with {meta['tokenizer']}: prepare a dataset with {PREPARE_HINT[wanted['tokenizer']]}")
    if not same_tokenizer(meta, wanted):
        raise UserError(f"'{dataset}' was tokenized with the neox tokenizer of {meta.get('tokenizer_path')}, not "
                        f"with {init_from}'s own: prepare it with --tokenizer_path={wanted['tokenizer_path']}")


def as_written(config):
    """A run's saved config with each setting added since it was written at its value then (its
    legacy value, else its default): the config the run trained with."""
    return DEFAULTS | FIELDS_BEFORE_THEY_EXISTED | config


def check_resume(checkpoint, model_args, path):
    """A run resumes with its training state, and with the config it was trained with: compared
    with the run's own config, not its model_args, since a run's architecture may come from the
    weights it started from (GPT-2's, Pythia's, a run it fine-tunes), which the config does not
    say; a field added to GPTConfig after the run was written has the meaning it had then."""
    if missing := [k for k in ("optimizer", "scaler", "iter_num", "best_val_loss", "rng") if k not in checkpoint]:
        raise UserError(f"{path} has no training state ({', '.join(missing)} missing): it can be "
                        "sampled and evaluated, not resumed; start a new run with --init_from=scratch")
    trained = as_written(checkpoint.get("config", checkpoint["model_args"]))
    trained = {f.name: trained.get(f.name, f.default) for f in fields(GPTConfig)}
    differ = [k for k, v in model_args.items() if k not in ("dropout", "vocab_size") and trained[k] != v]
    if differ:
        raise UserError(f"{path} was trained with "
                        + ", ".join(f"{k}={trained[k]!r} (config says {model_args[k]!r})" for k in differ)
                        + ": resume with the same config (" + " ".join(f"--{k}={trained[k]}" for k in differ) + ")")


class RunLog:
    """out_dir/log.jsonl, one JSON row per line (what plot.py and compare.py read), and the same
    rows to Weights & Biases when wandb_log is on. Only the master process keeps one."""

    def __init__(self, c):
        self.wandb_run = None
        if c["wandb_log"]:
            try:
                import wandb
            except ImportError:
                raise UserError("wandb_log=True needs wandb: pip install wandb (or --wandb_log=False)")
            self.wandb_run = wandb.init(project=c["wandb_project"], name=c["wandb_run_name"], config=c)
        self.path = os.path.join(c["out_dir"], "log.jsonl")
        resume = c["init_from"] == "resume"  # a resumed run goes on in its log; a new one starts its own
        if not resume and os.path.exists(self.path):
            print(f"note: {c['out_dir']} holds an earlier run: this new one replaces its log.jsonl, and its ckpt.pt at "
                  "the first checkpoint (--init_from=resume would continue it)")
        with writing(self.path):
            self.file = open(self.path, "a" if resume else "w")

    def write(self, row):
        with writing(self.path):
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=row["iter"])

    def close(self):
        self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


# ---------------------------------------------------------------- shutdown

def end_ddp():
    """Free the process group before the interpreter exits. torch's lazy imports inside train()
    leave frames in reference cycles that keep train()'s DDP wrapper, and with it the gloo/NCCL
    backend, alive; freed during interpreter shutdown instead, gloo's threads can abort the
    process ("terminate called without an active exception"). Collect the cycles first."""
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()


def main():
    train(parse_config(DEFAULTS, sys.argv[1:], CHECKS))
    end_ddp()


if __name__ == "__main__":
    run_main(main)
