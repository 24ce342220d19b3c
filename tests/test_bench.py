"""bench.py on a minute shape: the JSON's schema, the plot, the markdown on stdout, the bare
`--quick` flag (config/bench_quick.py), the three models shared with compare.py, bad input, and
Pythia's shapes and block (--backbone). No timing assertions: only that every figure is there and
sane."""

import json
import math
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import bench  # noqa: E402
from configurator import UserError, expand_quick, parse_config  # noqa: E402
from variants import BACKBONES  # noqa: E402
from conftest import run_script  # noqa: E402

# Overrides put after --quick: they must win over its preset. A shape small enough for seconds,
# big enough (a few MB of weights, optimizer state and activations) that its memory shows.
MINUTE = ["--n_layer=2", "--n_head=2", "--n_embd=64", "--block_size=64", "--vocab_size=256", "--batch_size=4",
          "--steps_per_round=1", "--gen_lengths=(5, 12)", "--prompt_len=3", "--gen_batch_size=2"]
MODELS = ["gpt", "contextlm", "gpt+2L"]  # bench.py's default n_ctx_layer=2


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`python bench.py --quick` with the minute shape: (CompletedProcess, results, out_dir)."""
    out_dir = tmp_path_factory.mktemp("bench")
    proc = run_script("bench.py", "--quick", *MINUTE, f"--out_dir={out_dir}")
    with open(out_dir / "bench.json") as f:
        return proc, json.load(f), out_dir


def positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_training_results(quick_run):
    _, results, _ = quick_run
    training = results["training"]
    assert list(training) == MODELS
    for name, row in training.items():
        for key in ("params_token", "flops_per_token", "tokens_per_sec", "throughput_ratio",
                    "peak_memory_bytes", "memory_ratio"):
            assert positive(row[key]), (name, key, row[key])
        assert len(row["tokens_per_sec_rounds"]) == 3  # train_rounds from the --quick preset
        assert all(positive(x) for x in row["tokens_per_sec_rounds"])
        assert row["mfu"] is None  # no known peak FLOP/s on a CPU
    assert training["gpt"]["throughput_ratio"] == 1.0 and training["gpt"]["memory_ratio"] == 1.0
    # the three models: same token layers, + a predictor, + as many layers as the predictor has
    gpt, ctx, matched = (training[name] for name in MODELS)
    assert (gpt["n_layer"], gpt["n_ctx_layer"], gpt["params_predictor"]) == (2, 0, 0)
    assert (ctx["n_layer"], ctx["n_ctx_layer"], ctx["params_token"]) == (2, 2, gpt["params_token"])
    assert positive(ctx["params_predictor"])
    assert (matched["n_layer"], matched["params_predictor"]) == (4, 0)
    # P's blocks are the matched GPT's 2 more blocks; the context's gain (one number) has no match
    assert matched["params_token"] == ctx["params_token"] + ctx["params_predictor"] - 1
    assert gpt["flops_per_token"] < ctx["flops_per_token"] < matched["flops_per_token"]


def test_decoding_results(quick_run):
    """A row per model, batch size (--gen_batch_size=2, and 1) and length: steady tokens/s with
    the cache and without, and the first cached call's time with its extra over a steady one."""
    _, results, _ = quick_run
    rows = results["decoding"]
    assert sorted((r["model"], r["batch_size"], r["length"]) for r in rows) == sorted(
        (name, B, n) for name in ("gpt", "contextlm") for B in (2, 1) for n in (5, 12))
    for r in rows:
        for key in ("cache_tokens_per_sec", "recompute_tokens_per_sec", "speedup", "ratio_to_gpt", "first_call_s"):
            assert positive(r[key]), (r, key)
        assert r["speedup"] == pytest.approx(r["cache_tokens_per_sec"] / r["recompute_tokens_per_sec"])
        # the first call took first_call_s, a steady one batch * length / tokens/s
        steady = r["batch_size"] * r["length"] / r["cache_tokens_per_sec"]
        assert r["first_call_extra_s"] == pytest.approx(r["first_call_s"] - steady)
        if r["model"] == "gpt":
            assert r["ratio_to_gpt"] == 1.0


def test_settings_and_targets(quick_run):
    _, results, _ = quick_run
    assert results["torch"] and results["device"] and results["device_type"] == "cpu"
    assert results["dtype"] == "float32" and results["compile"] is False and results["threads"] == 1  # from --quick
    # --quick's preset, with the arguments after it winning
    assert results["settings"]["shape"] == "tiny"
    assert results["shape"] == dict(
        name="custom", n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=256, batch_size=4,
        n_ctx_layer=2, chunk_size=4, n_enc_layer=0, bias=False)
    assert results["settings"]["gen_rounds"] == 3 and results["settings"]["gen_lengths"] == [5, 12]
    assert len(results["targets"]) == 7
    for t in results["targets"]:
        at_most = "memory" in t["target"] or "first" in t["target"]
        # the first call's extra seconds are a difference of times: on a CPU, eager, noise around 0
        assert (math.isfinite(t["measured"]) if "first" in t["target"] else positive(t["measured"]))
        assert t["met"] == (t["measured"] <= t["threshold"] if at_most else t["measured"] >= t["threshold"])


def test_markdown_and_plot(quick_run):
    proc, results, out_dir = quick_run
    assert "| model |" in proc.stdout and "## Decoding" in proc.stdout and "## Targets" in proc.stdout
    for name in MODELS:
        assert f"| {name} |" in proc.stdout
    assert "training round 3/3" in proc.stderr  # progress goes to stderr
    png = out_dir / "bench.png"
    assert png.stat().st_size > 1000
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_quick_is_its_config_file_in_place():
    quick = os.path.join(ROOT, "config", "bench_quick.py")
    argv = expand_quick(["--seed=3", "--gen_rounds=1", "--quick", "--gen_rounds=7"], "bench")
    assert argv == ["--seed=3", "--gen_rounds=1", quick, "--gen_rounds=7"]
    config = parse_config(bench.DEFAULTS, argv)
    assert config["shape"] == "tiny" and config["gen_rounds"] == 7 and config["seed"] == 3
    assert parse_config(bench.DEFAULTS, expand_quick(["--gen_rounds=1", "--quick"], "bench"))["gen_rounds"] == 3
    assert expand_quick(["--quick=True"], "bench") == [quick] and expand_quick(["--quick=False"], "bench") == []
    # what the README promises: the bare flag runs within one window
    quick = bench.resolve(parse_config(bench.DEFAULTS, expand_quick(["--quick"], "bench")))
    assert quick["prompt_len"] + max(quick["gen_lengths"]) <= quick["block_size"]
    assert quick["n_layer"] == bench.SHAPES["tiny"]["n_layer"] and quick["json"] == os.path.join("bench", "bench.json")


def test_the_three_models_are_the_studys():
    """The models compare.py trains (model_variants), in the shape asked for."""
    c = bench.resolve(parse_config(bench.DEFAULTS, expand_quick(["--quick", "--n_layer=3", "--n_ctx_layer=1",
                                                                 "--chunk_size=2", "--n_enc_layer=1"], "bench")))
    args = bench.model_args_of(c)
    assert list(args) == ["gpt", "contextlm", "gpt+1L"]
    assert [(a["n_layer"], a["n_ctx_layer"], a["chunk_size"], a["n_enc_layer"]) for a in args.values()] == \
        [(3, 0, 2, 0), (3, 1, 2, 1), (4, 0, 2, 0)]
    for a in args.values():
        assert {k: a[k] for k in ("n_head", "n_embd", "block_size", "vocab_size", "bias")} == \
            {k: c[k] for k in ("n_head", "n_embd", "block_size", "vocab_size", "bias")} and a["dropout"] == 0.0


@pytest.mark.parametrize("args,message", [
    (["--shape=gpt3"], "unknown shape"),
    (["--n_ctx_layer=0"], "n_ctx_layer"),
    (["--gen_lengths=(2000,)"], "shorten --gen_lengths"),
    (["--gen_lengths=()"], "gen_lengths"),
    (["--n_head=5"], "divisible"),
    (["--batch_size=-1"], "batch_size"),
])
def test_bad_input(args, message):
    with pytest.raises(UserError, match=message):
        bench.resolve(parse_config(bench.DEFAULTS, args))


def test_bad_input_is_one_line():
    proc = run_script("bench.py", "--shape=gpt3", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: unknown shape 'gpt3'")


# ---------------------------------------------------------------- Pythia's block (issue 15)

def test_pythia_shapes_and_backbone():
    """--shape=pythia-<size> is Pythia's size (2048 positions, vocabulary 50304) on its block, and
    its gpt has Pythia's published parameter count; --backbone puts any shape on either block
    (BACKBONES, as compare.py's --backbone); an unknown one is refused."""
    from model import GPT, GPTConfig
    c = bench.resolve(parse_config(bench.DEFAULTS, ["--shape=pythia-70m"]))
    assert (c["backbone"], c["n_layer"], c["n_head"], c["n_embd"], c["block_size"], c["vocab_size"]) == \
        ("pythia", 6, 8, 512, 2048, 50304)
    args = bench.model_args_of(c)
    assert all({k: a[k] for k in BACKBONES["pythia"]} == BACKBONES["pythia"] for a in args.values())
    with torch.device("meta"):
        assert GPT(GPTConfig(**args["gpt"] | dict(bias=True))).param_breakdown()["token"] == 70_426_624
    assert bench.resolve(parse_config(bench.DEFAULTS, ["--shape=pythia-70m", "--backbone=gpt2"]))["backbone"] == "gpt2"
    assert bench.resolve(parse_config(bench.DEFAULTS, expand_quick(["--quick"], "bench")))["backbone"] == "gpt2"
    with pytest.raises(UserError, match="unknown backbone 'neox'"):
        bench.resolve(parse_config(bench.DEFAULTS, ["--backbone=neox"]))


def test_quick_run_on_pythias_block(monkeypatch):
    """`bench.py --quick --backbone=pythia` on the minute shape (in this process, memory measured
    here too): the three models measured are Pythia-block models, each with the parameters of
    that model built directly (untied head, no position table), and decoding is timed."""
    from model import GPT, GPTConfig
    monkeypatch.setattr(bench, "in_fresh_process", lambda fn, *args: fn(*args))
    argv = expand_quick(["--quick", *MINUTE, "--backbone=pythia", "--train_rounds=1", "--gen_rounds=1"], "bench")
    results = bench.run_bench(parse_config(bench.DEFAULTS, argv))
    assert results["settings"]["backbone"] == "pythia" and list(results["training"]) == MODELS
    args = bench.model_args_of(results["settings"])
    for name, row in results["training"].items():
        model = GPT(GPTConfig(**args[name]))
        assert "wpe" not in model.transformer and model.lm_head.weight is not model.transformer.wte.weight
        assert (row["params_token"], row["params_predictor"]) == tuple(model.param_breakdown().values())
        assert positive(row["tokens_per_sec"])
    assert len(results["decoding"]) == 8 and all(positive(r["cache_tokens_per_sec"]) for r in results["decoding"])
    assert "pythia block" in bench.markdown(results)
