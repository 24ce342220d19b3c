"""
Train ContextLM, or with --n_ctx_layer=0 the plain GPT-2 baseline, with the same script.

Single process (a laptop, one GPU):
    python train.py config/train_shakespeare_char.py
    python train.py config/train_contextlm_owt.py --batch_size=8 --compile=False
DDP on one node with 8 GPUs:
    torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_owt.py
DDP on 2 nodes (run on each, with --node_rank=0 on the master at IP 123.456.123.456):
    torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 \
        --master_port=1234 train.py config/train_contextlm_owt.py
(If the nodes have no Infiniband, prepend NCCL_IB_DISABLE=1.)

Configuration: the defaults below, then config files, then --key=value overrides, in order.
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
from dataclasses import asdict
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from common import (MODEL_KEYS, UserError, get_batch, load_checkpoint, load_meta, model_from_checkpoint,
                    model_from_hf, open_split, parse_config, peak_flops, run_main, save_checkpoint, setup_device)
from model import GPT, GPTConfig

DEFAULTS = dict(
    # I/O
    out_dir="out",
    eval_interval=2000,
    log_interval=1,
    eval_iters=200,
    eval_only=False,              # evaluate once and exit
    always_save_checkpoint=True,  # else only when val loss improves
    init_from="scratch",          # 'scratch', 'resume' (from out_dir/ckpt.pt) or 'gpt2*'
    wandb_log=False,
    wandb_project="contextlm",
    wandb_run_name="run",
    # data
    dataset="openwebtext",
    data_root="data",             # datasets live in data_root/dataset (see prepare.py)
    gradient_accumulation_steps=5 * 8,  # global: split across DDP ranks
    batch_size=12,                # micro-batch size per rank
    block_size=1024,
    # model (GPTConfig; n_ctx_layer=0 is plain GPT-2)
    n_layer=12,
    n_head=12,
    n_embd=768,
    dropout=0.0,
    bias=False,
    chunk_size=4,
    n_ctx_layer=2,
    n_enc_layer=0,
    # AdamW
    learning_rate=6e-4,
    max_iters=600000,
    weight_decay=1e-1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,                # 0 disables clipping
    # learning rate schedule: linear warmup, then cosine decay to min_lr
    decay_lr=True,
    warmup_iters=2000,
    lr_decay_iters=600000,
    min_lr=6e-5,
    # system
    backend="auto",               # DDP backend: 'auto' = nccl on CUDA, gloo on CPU
    device="auto",                # 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'
    dtype="auto",                 # 'auto' = bfloat16 where supported, float16 on older GPUs, float32 on CPU
    compile=True,                 # torch.compile the model
    seed=1337,                    # seeds the model init and, separately, the batch sampler
)


def get_lr(it, c):
    """Linear warmup for warmup_iters, cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not c.decay_lr:
        return c.learning_rate
    if it < c.warmup_iters:
        return c.learning_rate * (it + 1) / (c.warmup_iters + 1)
    if it > c.lr_decay_iters:
        return c.min_lr
    ratio = (it - c.warmup_iters) / (c.lr_decay_iters - c.warmup_iters)
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c.learning_rate - c.min_lr)


def train(config):
    """Train as `config` (a dict of DEFAULTS' keys) says; returns a summary dict."""
    c = SimpleNamespace(**config)

    # ---- processes and devices
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, local_rank, world_size = 0, 0, 1
    device, device_type, ptdtype, autocast = setup_device(c.device, c.dtype)
    if ddp:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        if c.gradient_accumulation_steps % world_size:
            raise UserError(f"gradient_accumulation_steps={c.gradient_accumulation_steps} is not divisible by "
                            f"the {world_size} DDP processes: make it a multiple of {world_size}")
        if device_type == "cuda":
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        backend = c.backend if c.backend != "auto" else ("nccl" if device_type == "cuda" else "gloo")
        if not dist.is_initialized():  # compare.py trains several runs in one process group
            dist.init_process_group(backend=backend)
    master = rank == 0  # only the master process logs and writes checkpoints
    micro_steps = c.gradient_accumulation_steps // world_size
    tokens_per_iter = c.gradient_accumulation_steps * c.batch_size * c.block_size
    if master:
        print(f"tokens per iteration: {tokens_per_iter:,} ({c.gradient_accumulation_steps} micro-batches "
              f"of {c.batch_size} x {c.block_size}, {world_size} process(es)) on {device}, {ptdtype}")
        os.makedirs(c.out_dir, exist_ok=True)
    torch.manual_seed(c.seed + rank)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    # The sampler has its own generator, seeded identically on every rank: runs that differ only
    # in the model draw exactly the same batches, and DDP ranks share out one global batch.
    data_gen = torch.Generator().manual_seed(c.seed)

    # ---- data
    meta = load_meta(c.data_root, c.dataset)
    train_data = open_split(c.data_root, c.dataset, "train")
    val_data = open_split(c.data_root, c.dataset, "val")
    for name, data in (("train", train_data), ("val", val_data)):
        if len(data) <= c.block_size:
            raise UserError(f"the {name} split of '{c.dataset}' has {len(data)} tokens, too few for "
                            f"block_size={c.block_size}: lower --block_size")
    # GPT-2's 50257 BPE ids are padded to 50304, a multiple of 64, for faster matmuls
    vocab_size = 50304 if meta["tokenizer"] == "gpt2" else meta["vocab_size"]

    # ---- model and optimizer
    model_args = {k: config[k] for k in MODEL_KEYS if k in config} | {"vocab_size": vocab_size}
    checkpoint = None
    iter_num, best_val_loss, tokens_seen = 0, float("inf"), 0
    # fingerprint of every batch drawn so far, chained batch by batch (and kept across resumes):
    # two runs with equal data_hash at an iteration saw the same training data up to it
    data_hash = hashlib.sha256().hexdigest()
    ckpt_path = os.path.join(c.out_dir, "ckpt.pt")
    try:
        if c.init_from == "scratch":
            model = GPT(GPTConfig(**model_args))
        elif c.init_from == "resume":
            checkpoint = load_checkpoint(ckpt_path, device="cpu")
            missing = [k for k in ("optimizer", "scaler", "iter_num", "best_val_loss", "rng") if k not in checkpoint]
            if missing:
                raise UserError(f"{ckpt_path} has no training state ({', '.join(missing)} missing): it can be "
                                "sampled and evaluated, not resumed; start a new run with --init_from=scratch")
            mismatch = [f"{k}={checkpoint['model_args'][k]!r} (config says {v!r})" for k, v in model_args.items()
                        if k != "dropout" and checkpoint["model_args"].get(k) != v]
            if mismatch:
                raise UserError(f"{ckpt_path} was trained with {', '.join(mismatch)}: resume with the same config")
            checkpoint["model_args"]["dropout"] = c.dropout  # the one model field a resume may change
            model = model_from_checkpoint(checkpoint, ckpt_path)
            iter_num, best_val_loss = checkpoint["iter_num"], checkpoint["best_val_loss"]
            tokens_seen = checkpoint.get("tokens", iter_num * tokens_per_iter)
            if "data_hash" in checkpoint:
                data_hash = checkpoint["data_hash"]
            elif master:  # written before train.py kept the fingerprint in the checkpoint
                print(f"note: {ckpt_path} has no data_hash; the batch fingerprint restarts at iteration {iter_num}")
        elif c.init_from.startswith("gpt2"):
            if meta["tokenizer"] != "gpt2":
                raise UserError(f"init_from={c.init_from} needs a GPT-2 BPE dataset, '{c.dataset}' is {meta['tokenizer']}")
            override = {k: config[k] for k in ("dropout", "chunk_size", "n_ctx_layer", "n_enc_layer")}
            model = model_from_hf(c.init_from, override)
            if c.block_size < model.config.block_size:
                model.crop_block_size(c.block_size)
        else:
            raise UserError(f"init_from={c.init_from!r}: use scratch, resume, or a GPT-2 name like gpt2-medium")
    except ValueError as e:  # an invalid model configuration
        raise UserError(f"invalid model configuration: {e}")
    model_args = asdict(model.config)
    model.to(device)
    if master:
        n = model.param_breakdown()
        print(f"parameters: {n['token'] / 1e6:.2f}M token pathway + {n['predictor'] / 1e6:.2f}M context predictor")

    # fp16 needs loss scaling; bf16 and fp32 do not (the scaler is then a no-op)
    scaler = torch.amp.GradScaler(device_type, enabled=(ptdtype == torch.float16))
    optimizer = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device_type)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        data_gen.set_state(checkpoint["rng"]["data"])
        checkpoint = None  # free the memory

    raw_model = model
    if c.compile:
        if master:
            print("compiling the model... (takes a minute)")
        model = torch.compile(model)
    train_model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None) if ddp else model

    # ---- helpers that see the state above
    @torch.no_grad()
    def estimate_loss():
        """Mean loss over eval_iters batches of each split; the same batches at every evaluation."""
        out = {}
        model.eval()
        for split, data in (("train", train_data), ("val", val_data)):
            gen = torch.Generator().manual_seed(0)
            losses = torch.zeros(c.eval_iters)
            for k in range(c.eval_iters):
                offsets = torch.randint(len(data) - c.block_size, (c.batch_size,), generator=gen)
                X, Y = get_batch(data, offsets, c.block_size, device)
                with autocast:
                    _, loss = model(X, Y)
                losses[k] = loss.item()
            out[split] = losses.mean().item()
        model.train()
        return out

    def checkpoint_now():
        save_checkpoint({
            "model": raw_model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "model_args": model_args,
            "iter_num": iter_num,
            "best_val_loss": best_val_loss,
            "tokens": tokens_seen,
            "data_hash": data_hash,
            "config": config,
            "meta": meta,
            "rng": {"data": data_gen.get_state()},  # dropout's needs no state: see the loop
        }, ckpt_path)

    log_file = open(os.path.join(c.out_dir, "log.jsonl"), "a") if master else None

    def log(row):
        log_file.write(json.dumps(row) + "\n")
        log_file.flush()
        if wandb_run is not None:
            wandb_run.log(row, step=row["iter"])

    wandb_run = None
    if c.wandb_log and master:
        try:
            import wandb
        except ImportError:
            raise UserError("wandb_log=True needs wandb: pip install wandb (or --wandb_log=False)")
        wandb_run = wandb.init(project=c.wandb_project, name=c.wandb_run_name, config=config)

    # Preemption: SIGTERM / SIGINT finish the current step, save, and exit cleanly
    stop_signal = []
    previous_handlers = {sig: signal.signal(sig, lambda signum, frame: stop_signal.append(signal.Signals(signum).name))
                         for sig in (signal.SIGTERM, signal.SIGINT)}

    # ---- the training loop
    flops_per_token = raw_model.flops_per_token(c.block_size)
    peak = peak_flops(device)
    running_mfu, last_val = -1.0, None
    t0 = time.time()
    try:
        while True:
            lr = get_lr(iter_num, c)
            for group in optimizer.param_groups:
                group["lr"] = lr

            if master and (iter_num % c.eval_interval == 0 or iter_num == c.max_iters or c.eval_only):
                losses = estimate_loss()
                last_val = losses["val"]
                print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                log({"iter": iter_num, "tokens": tokens_seen, "flops": tokens_seen * flops_per_token,
                     "train_loss": losses["train"], "val_loss": losses["val"], "lr": lr,
                     "data_hash": data_hash})
                if losses["val"] < best_val_loss or c.always_save_checkpoint:
                    best_val_loss = min(best_val_loss, losses["val"])
                    if iter_num > 0:
                        checkpoint_now()
                        print(f"saved checkpoint to {ckpt_path}")
                t0 = time.time()  # keep evaluation out of the next step's timing
            if c.eval_only or iter_num >= c.max_iters:
                break

            # one optimizer step over the global batch; rank r takes micro-batches r, r + world, ...
            offsets = torch.randint(len(train_data) - c.block_size,
                                    (c.gradient_accumulation_steps, c.batch_size), generator=data_gen)
            data_hash = hashlib.sha256(bytes.fromhex(data_hash) + offsets.numpy().tobytes()).hexdigest()
            # dropout draws from a stream fixed by (seed, iteration, rank): a resumed run makes
            # the same draws on every rank as an uninterrupted one, with no RNG state to save
            torch.manual_seed(((c.seed << 32) + iter_num) * world_size + rank)
            loss_sum = torch.zeros((), device=device)
            for micro_step in range(micro_steps):
                X, Y = get_batch(train_data, offsets[micro_step * world_size + rank], c.block_size, device)
                # in DDP, gradients are averaged across ranks on the last micro-step only
                sync = nullcontext() if not ddp or micro_step == micro_steps - 1 else train_model.no_sync()
                with sync:
                    with autocast:
                        _, loss = train_model(X, Y)
                        loss = loss / micro_steps
                    scaler.scale(loss).backward()
                loss_sum += loss.detach()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), c.grad_clip or float("inf"))
            if not scaler.is_enabled() and not torch.isfinite(grad_norm):
                # stop before anything is saved: the last good checkpoint stays as it was
                raise UserError(f"non-finite loss or gradient at iteration {iter_num} (loss {loss_sum.item():.4g}): "
                                f"stopped without saving; {ckpt_path} holds the last good state. "
                                "Lower --learning_rate or check the data")
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            tokens_seen += tokens_per_iter

            # timing and logging
            t1 = time.time()
            dt, t0 = t1 - t0, t1
            if iter_num % c.log_interval == 0:
                if ddp:  # report the loss of the global batch, not just this rank's share
                    dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
                if master:
                    lossf = loss_sum.item()
                    mfu = None
                    if peak is not None:
                        step_mfu = raw_model.estimate_mfu(micro_steps * c.batch_size, dt, peak)  # this rank's share
                        if iter_num >= 5:  # let compilation and warm-up pass first
                            running_mfu = step_mfu if running_mfu < 0 else 0.9 * running_mfu + 0.1 * step_mfu
                        mfu = running_mfu if running_mfu >= 0 else None
                    mfu_text = f", mfu {mfu * 100:.2f}%" if mfu is not None else ""
                    print(f"iter {iter_num}: loss {lossf:.4f}, lr {lr:.2e}, time {dt * 1000:.2f}ms, "
                          f"{tokens_per_iter / dt:,.0f} tok/s{mfu_text}")
                    log({"iter": iter_num, "tokens": tokens_seen, "flops": tokens_seen * flops_per_token,
                         "train_loss": lossf, "lr": lr, "tokens_per_sec": tokens_per_iter / dt, "mfu": mfu})
            iter_num += 1

            stop = bool(stop_signal)
            if ddp:  # every rank stops at the same step
                flag = torch.tensor(float(stop), device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item())
            if stop:
                if master:
                    checkpoint_now()
                    name = stop_signal[0] if stop_signal else "a signal on another rank"
                    print(f"stopped by {name} at iteration {iter_num}; saved {ckpt_path}. "
                          f"Resume with the same command plus --init_from=resume")
                break
    finally:  # train() is also a library function: give the caller its handlers back
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)

    if master:
        log_file.close()
        if wandb_run is not None:
            wandb_run.finish()
    return {"iter_num": iter_num, "best_val_loss": best_val_loss, "val_loss": last_val,
            "data_hash": data_hash, "params": raw_model.param_breakdown()}


def end_ddp():
    """Free the process group before the interpreter exits. torch's lazy imports inside train()
    leave frames in reference cycles that keep train()'s DDP wrapper, and with it the gloo/NCCL
    backend, alive; freed during interpreter shutdown instead, gloo's threads can abort the
    process ("terminate called without an active exception"). Collect the cycles first."""
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()


def main():
    train(parse_config(DEFAULTS, sys.argv[1:]))
    end_ddp()


if __name__ == "__main__":
    run_main(main)
