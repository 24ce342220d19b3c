"""
Sample from a trained ContextLM (or a GPT-2) with KV-cache decoding.

    python sample.py                                          # the most recent ./out*/ckpt.pt
    python sample.py --out_dir=out-shakespeare-char
    python sample.py --out_dir=out-contextlm-owt --start="The meaning of life is" --num_samples=3
    python sample.py --out_dir=out-contextlm-owt --start=FILE:prompt.txt --temperature=0
    python sample.py --init_from=gpt2-xl --start="Hello"      # OpenAI's weights (needs transformers)
    python sample.py --init_from=path/to/hf-gpt2-dir          # a local Hugging Face GPT-2 folder
"""

import glob
import os
import sys
import time

import torch

from common import (SEED, Tokenizer, UserError, at_least, checkpoint_tokenizer, load_checkpoint, model_from_checkpoint,
                    model_from_hf, or_none, parse_config, run_main, setup_device)

DEFAULTS = dict(
    init_from="resume",   # 'resume' (out_dir/ckpt.pt), a GPT-2 name, or a local Hugging Face directory
    out_dir="",           # '' = the most recently written ./out*/ckpt.pt (where train.py's runs go)
    start="\n",           # the prompt, or FILE:path to read it from a file
    num_samples=3,        # sampled together, as one batch
    max_new_tokens=500,
    temperature=0.8,      # 0 = greedy; < 1 sharper, > 1 more random
    top_k=200,            # keep only the top_k most likely tokens (None = all)
    seed=1337,
    device="auto",
    dtype="auto",
    compile=False,        # torch.compile the per-token decoding step
)

# the valid values of the options above that need a check (common's; the prompt: read_prompt)
CHECKS = dict(
    num_samples=at_least(1), max_new_tokens=at_least(1),
    temperature=at_least(0, "0 = greedy"),  # a negative one would quietly favour the least likely tokens
    top_k=or_none(at_least(1), "None = all"), seed=SEED,
)


# the README's first command: it trains the model that `python sample.py` then finds
FIRST_RUN = "python prepare.py shakespeare_char && python train.py config/train_shakespeare_char.py"


def latest_run():
    """The run directory of the most recently written ./out*/ckpt.pt (train.py's out_dirs are
    out, out-shakespeare-char, ...), said on stderr; a one-line error naming a first run if none."""
    found = glob.glob(os.path.join("out*", "ckpt.pt"))
    if not found:
        raise UserError(f"no checkpoint to sample from in ./out*/ckpt.pt: train one first "
                        f"(`{FIRST_RUN}`), or pass --out_dir=DIR or --init_from=gpt2")
    path = max(found, key=os.path.getmtime)
    print(f"sampling from {path}, the most recent checkpoint; --out_dir=DIR picks another", file=sys.stderr)
    return os.path.dirname(path)


def load_model(init_from, out_dir, device):
    """(model, tokenizer) from a train.py checkpoint (out_dir's, or with out_dir '' the most
    recent one) or from GPT-2 weights."""
    if init_from == "resume":
        out_dir = out_dir or latest_run()
        checkpoint = load_checkpoint(out_dir)
        model = model_from_checkpoint(checkpoint, out_dir)
        tokenizer = checkpoint_tokenizer(checkpoint, out_dir)
    else:
        model = model_from_hf(init_from, {"n_ctx_layer": 0})  # OpenAI's GPT-2 has no predictor
        tokenizer = Tokenizer({"tokenizer": "gpt2"})
    return model.eval().to(device), tokenizer


def read_prompt(start):
    if start.startswith("FILE:"):
        path = start[len("FILE:"):]
        try:
            with open(path, encoding="utf-8") as f:
                start = f.read()
        except OSError as e:
            raise UserError(f"cannot read the prompt file {path}: {e.strerror}")
    if not start:
        raise UserError("the prompt is empty: pass --start=TEXT or --start=FILE:path with some text")
    return start


def main():
    c = parse_config(DEFAULTS, sys.argv[1:], CHECKS)
    prompt = read_prompt(c["start"])
    device, _, _, autocast = setup_device(c["device"], c["dtype"])
    torch.manual_seed(c["seed"])
    model, tokenizer = load_model(c["init_from"], c["out_dir"], device)
    if c["compile"]:
        model.decode_step = torch.compile(model.decode_step, dynamic=True)

    ids = tokenizer.encode(prompt)
    x = torch.tensor([ids] * c["num_samples"], dtype=torch.long, device=device)
    t0 = time.time()
    with torch.no_grad(), autocast:
        y = model.generate(x, c["max_new_tokens"], temperature=c["temperature"], top_k=c["top_k"],
                           vocab_size=tokenizer.vocab_size)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.time() - t0
    for row in y.tolist():
        print(tokenizer.decode(row))
        print("---------------")
    n = c["num_samples"] * c["max_new_tokens"]
    print(f"{n} tokens in {dt:.2f}s: {n / dt:,.0f} tokens/s ({c['num_samples']} samples of "
          f"{c['max_new_tokens']} tokens, KV-cache decoding on {device})", file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
