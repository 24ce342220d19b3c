"""Acceptance tests of the data and training pipeline (train.py): a short run learns and writes
the documented files, resuming is exact, DDP on CPU matches one process, torch.compile trains,
bad input gets a one-line error, and the shipped config files are valid.

Tiny runs on shakespeare_char, CPU, float32 (conftest.TINY). train.train() runs in-process where
no subprocess is needed; subprocesses are for what only they show (torchrun, the compiled model,
the CLI itself)."""

import ast
import dataclasses
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from configurator import UserError, parse_config
from train import MODEL_KEYS
import train
from conftest import (ROOT, assert_one_line_error, cli, read_log, run_script, run_train, signal_handlers_kept,
                      tiny_args, weights)
from model import GPTConfig


# ---------------------------------------------------------------- 1. a short run learns

TRAIN_KEYS = {"iter", "tokens", "flops", "train_loss", "lr", "tokens_per_sec", "mfu"}
EVAL_KEYS = {"iter", "tokens", "flops", "train_loss", "val_loss", "lr", "data_hash", "context_ratio",
             "context_grad_share", "val_loss_by_position", "context_gain"}


def test_short_run_lowers_val_loss_and_writes_documented_files(char_data, tmp_path):
    out = tmp_path / "out"
    summary = run_train(tiny_args(char_data, out, max_iters=8, eval_interval=4, lr_decay_iters=8))

    train_rows, eval_rows = read_log(out)
    assert [r["iter"] for r in train_rows] == list(range(8))
    assert [r["iter"] for r in eval_rows] == [0, 4, 8]
    assert all(set(r) == TRAIN_KEYS for r in train_rows), train_rows[0]
    assert all(set(r) == EVAL_KEYS for r in eval_rows[:-1]), eval_rows[0]
    assert set(eval_rows[-1]) == EVAL_KEYS | {"val_loss_no_context"}  # the zero-context ablation, last eval only
    assert eval_rows[0]["context_ratio"] == 0.0 < eval_rows[-1]["context_ratio"] < 3  # the gain starts at 0
    # with ĉ tied to h's scale, ‖ĉ‖/‖h‖ is |g| at every position: the log carries g itself
    assert eval_rows[0]["context_gain"] == 0.0
    assert eval_rows[-1]["context_ratio"] == pytest.approx(abs(eval_rows[-1]["context_gain"]), rel=1e-4)
    assert train_rows[-1]["tokens"] == 8 * 2 * 4 * 32  # iterations x micro-batches x batch x block
    # from ln(65) = 4.17 (uniform over the characters) to clearly better
    assert eval_rows[-1]["val_loss"] < eval_rows[0]["val_loss"] - 0.3, eval_rows
    assert summary["iter_num"] == 8 and summary["val_loss"] == eval_rows[-1]["val_loss"]

    checkpoint = load_checkpoint(str(out))
    assert checkpoint["iter_num"] == 8 and checkpoint["meta"]["tokenizer"] == "char"
    assert checkpoint["model_args"]["n_layer"] == 2 and checkpoint["model_args"]["vocab_size"] == 65
    model_from_checkpoint(checkpoint)  # the weights fit the architecture they claim


def test_train_function_restores_signal_handlers(char_data, tmp_path):
    """train(config) is also a library function (notebooks, this test suite): the preemption
    handlers it installs must not outlive it, or Ctrl-C stops working in the caller."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with signal_handlers_kept():  # whatever happens, leave this process usable
        train.train(parse_config(train.DEFAULTS, tiny_args(char_data, tmp_path, max_iters=1)))
        after = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    assert after == before


STEP_LINE = re.compile(r"iter (\d+)/(\d+) \((\d+\.\d)%\): loss (\d+\.\d{4}), lr (\S+), time \d+\.\d\dms, "
                       r"[\d,]+ tok/s, eta (\d+s|\d+m\d\ds)")


def test_log_lines_say_how_far_and_how_long(char_data, tmp_path, capsys):
    """Each training step's stdout line says which step of how many, the fraction done once it
    ends and the time left, beside the numbers of its log.jsonl row; after the last, 0s."""
    status, out, err = cli(capsys, train, *tiny_args(char_data, tmp_path, max_iters=4, eval_interval=2))
    assert status == 0, err
    lines = [line for line in out.splitlines() if line.startswith("iter ")]
    rows = read_log(tmp_path)[0]
    assert len(lines) == len(rows) == 4
    for line, row in zip(lines, rows):
        m = STEP_LINE.fullmatch(line)
        assert m, line
        assert (int(m[1]), int(m[2])) == (row["iter"], 4)
        assert m[3] == f"{(row['iter'] + 1) / 4 * 100:.1f}"  # 25.0, 50.0, 75.0, 100.0
        assert m[4] == f"{row['train_loss']:.4f}" and m[5] == f"{row['lr']:.2e}"
    assert lines[-1].endswith(", eta 0s")


def test_eta_leaves_compilation_out_and_evaluations_in(monkeypatch):
    """StepClock on a fake clock: a 30 s first step (compiling), then 2 s steps and a 4 s
    evaluation. The ETA uses the first step alone until there is a second, then the pace since
    the first, evaluations included (they recur); a step's dt leaves the evaluation out."""
    now = [0.0]
    monkeypatch.setattr(train, "time", SimpleNamespace(time=lambda: now[0]))
    clock = train.StepClock(flops_per_step=None, device="cpu")
    timeline = [(30, None), (2, None), (2, "eval 4"), (2, None)]
    expected = [(30, 30 * 9), (2, 2 * 8), (2, (2 + 4 + 2) / 2 * 7), (2, (2 + 4 + 2 + 2) / 3 * 6)]
    for it, ((step, event), (dt, eta)) in enumerate(zip(timeline, expected)):
        if event:
            now[0] += 4
            clock.restart()
        now[0] += step
        assert clock.lap(it) == dt
        assert clock.eta(it, max_iters=10) == pytest.approx(eta)
        assert clock.mfu(it) is None  # no known peak FLOP/s on a CPU
    assert clock.eta(9, max_iters=10) == 0


def test_format_duration():
    cases = {0: "0s", 59.4: "59s", 60: "1m00s", 312: "5m12s", 3599: "59m59s", 3600: "1h00m", 7260: "2h01m",
             86399: "23h59m", 86400: "1d00h", 3 * 86400 + 5 * 3600 + 59: "3d05h"}
    assert {s: train.format_duration(s) for s in cases} == cases


# ---------------------------------------------------------------- 2. resuming is exact

def test_resume_is_exact(char_data, tmp_path):
    """2N iterations in one go == N, then --init_from=resume up to 2N: the same per-iteration
    losses and bit-identical weights. dropout > 0, so its random draws must line up too."""
    N = 4
    args = dict(lr_decay_iters=2 * N, eval_interval=N, dropout=0.1)
    run_train(tiny_args(char_data, tmp_path / "a", max_iters=2 * N, **args))
    run_train(tiny_args(char_data, tmp_path / "b", max_iters=N, **args))
    run_train(tiny_args(char_data, tmp_path / "b", max_iters=2 * N, init_from="resume", **args))

    losses_a = {r["iter"]: r["train_loss"] for r in read_log(tmp_path / "a")[0]}
    losses_b = {r["iter"]: r["train_loss"] for r in read_log(tmp_path / "b")[0]}
    assert sorted(losses_b) == list(range(2 * N))
    # exactly equal: the same process, the same operations in the same order on the same inputs
    assert [losses_b[i] for i in range(N, 2 * N)] == [losses_a[i] for i in range(N, 2 * N)]
    # and the data fingerprint carries over: the resumed run saw the same batches as the other
    assert read_log(tmp_path / "b")[1][-1]["data_hash"] == read_log(tmp_path / "a")[1][-1]["data_hash"]
    assert load_checkpoint(str(tmp_path / "b"))["iter_num"] == 2 * N
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_takes_the_new_dropout(char_data, tmp_path):
    """dropout may change on resume (train.py leaves it out of the architecture check): resuming
    with --dropout=0.0 must train without dropout, not silently with the checkpoint's 0.1."""
    run_train(tiny_args(char_data, tmp_path / "first", max_iters=2, eval_interval=2, dropout=0.1))
    losses = {}
    for dropout in (0.1, 0.0):
        out = tmp_path / f"dropout{dropout}"
        shutil.copytree(tmp_path / "first", out)
        run_train(tiny_args(char_data, out, max_iters=3, eval_interval=2, dropout=dropout, init_from="resume"))
        losses[dropout] = read_log(out)[0][-1]
        assert losses[dropout]["iter"] == 2
        assert load_checkpoint(str(out))["model_args"]["dropout"] == dropout
    assert losses[0.0]["train_loss"] != losses[0.1]["train_loss"]


def test_run_from_before_context_scale_resumes_with_the_old_option(char_data, tmp_path):
    """A run written before context_scale existed (its model_args and config without the field)
    was a run with P's output added as is: resuming it under today's default is refused in one
    line that names --context_scale=none, and with it the run goes on exactly as the same run
    written with the field."""
    run_train(tiny_args(char_data, tmp_path / "new", max_iters=2, eval_interval=2, context_scale="none"))
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    ckpt = torch.load(tmp_path / "old" / "ckpt.pt", weights_only=True)
    for fields in (ckpt["model_args"], ckpt["config"]):
        del fields["context_scale"], fields["context_gain_init"]
    torch.save(ckpt, tmp_path / "old" / "ckpt.pt")
    with pytest.raises(UserError, match=r"context_scale='none' \(config says 'learned'\): resume with the "
                                               r"same config \(--context_scale=none\)$"):
        run_train(tiny_args(char_data, tmp_path / "old", max_iters=4, eval_interval=2, init_from="resume"))
    losses = []
    for run in ("new", "old"):
        run_train(tiny_args(char_data, tmp_path / run, max_iters=4, eval_interval=2, init_from="resume",
                            context_scale="none"))
        losses.append([(r["iter"], r["train_loss"]) for r in read_log(tmp_path / run)[0] if r["iter"] >= 2])
    assert losses[0] == losses[1] and [it for it, _ in losses[0]] == [2, 3]


# ---------------------------------------------------------------- 3. DDP on CPU

def torchrun(*args):
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                             os.path.join(ROOT, "train.py"), *map(str, args)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_torchrun_two_processes(char_data, tmp_path):
    """2 gloo processes x 1 micro-batch each == 1 process x 2 micro-batches (the same global
    batch and seed): the same logged loss, gradients and weights after one step, and only rank 0
    writes. Tolerance 1e-5 on the loss and weights, 1e-6 on Adam's first moments (~1e-2 in
    size): the ranks add up in another order (measured here: no difference at all). The same
    launch with gradient_accumulation_steps=3 is refused, on every rank, before any work. With
    dropout on, 1 step + --init_from=resume + 1 step == 2 steps straight, bit for bit: rank 1's
    dropout draws line up across the restart too."""
    # no clipping: it would hide a gradient off by a factor (averaged vs summed over ranks)
    common_args = dict(max_iters=1, eval_interval=100, decay_lr=False, learning_rate=1e-3, grad_clip=0.0)
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    ddp = torchrun(*tiny_args(char_data, ddp_out, **common_args))
    bad = torchrun(*tiny_args(char_data, tmp_path / "bad", gradient_accumulation_steps=3))
    dropout_args = dict(eval_interval=1, always_save_checkpoint=True, dropout=0.1)
    straight = torchrun(*tiny_args(char_data, tmp_path / "straight", max_iters=2, **dropout_args))
    halves = torchrun(*tiny_args(char_data, tmp_path / "halves", max_iters=1, **dropout_args))
    run_train(tiny_args(char_data, single_out, **common_args))  # meanwhile, the reference
    (ddp_stdout, ddp_stderr), (_, bad_stderr) = ddp.communicate(timeout=300), bad.communicate(timeout=300)
    assert ddp.returncode == 0, ddp_stderr

    # rank 0 alone prints, logs and saves
    assert ddp_stdout.count("tokens per iteration") == 1 and "2 process(es)" in ddp_stdout
    assert sorted(os.listdir(ddp_out)) == ["ckpt.pt", "log.jsonl"]
    with open(ddp_out / "log.jsonl") as f:
        lines = f.read().splitlines()
    assert len(lines) == len(set(lines)) == 3  # eval at 0, the step, eval at 1
    (ddp_row,), _ = read_log(ddp_out)
    (single_row,), _ = read_log(single_out)
    assert ddp_row["tokens"] == single_row["tokens"] == 2 * 4 * 32
    assert ddp_row["train_loss"] == pytest.approx(single_row["train_loss"], abs=1e-5)

    ddp_ckpt, single_ckpt = load_checkpoint(str(ddp_out)), load_checkpoint(str(single_out))
    for k, w in single_ckpt["model"].items():
        torch.testing.assert_close(ddp_ckpt["model"][k], w, atol=1e-5, rtol=0, msg=k)
    # Adam's first update is ~lr * sign(grad), blind to the gradient's scale: compare the first
    # moments, (1 - beta1) * grad, to see that DDP averages (not sums) over ranks
    moments = [(s["exp_avg"], ddp_ckpt["optimizer"]["state"][i]["exp_avg"])
               for i, s in single_ckpt["optimizer"]["state"].items()]
    assert max(m.abs().max().item() for m, _ in moments) > 1e-4  # the step really had gradients
    for m_single, m_ddp in moments:
        torch.testing.assert_close(m_ddp, m_single, atol=1e-6, rtol=0)

    assert bad.returncode != 0
    errors = [line for line in bad_stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("gradient_accumulation_steps=3 is not divisible by the 2 DDP processes"
                                    in line for line in errors), bad_stderr
    assert 'train.py", line' not in bad_stderr  # torchrun reports the failure, train.py has no traceback
    assert not os.path.exists(tmp_path / "bad")

    for run in (halves, straight):
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    resumed = torchrun(*tiny_args(char_data, tmp_path / "halves", max_iters=2, init_from="resume", **dropout_args))
    _, resumed_stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, resumed_stderr
    assert load_checkpoint(str(tmp_path / "halves"))["iter_num"] == 2
    wa, wb = weights(tmp_path / "straight"), weights(tmp_path / "halves")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------- 4. torch.compile

def test_compiled_model_trains_like_eager(char_data, tmp_path):
    """compile=True (inductor, CPU) trains, checkpoints plain weight names, and logs the losses
    the eager model does, within 1e-4 (fused kernels reorder float sums). The slowest test here:
    it compiles a training and an evaluation graph, ~70 s with a cold inductor cache on 2 busy
    cores, ~25 s when the cache (/tmp/torchinductor_$USER) is warm."""
    args = dict(n_layer=1, n_head=1, n_embd=16, block_size=16, batch_size=2, gradient_accumulation_steps=1,
                eval_iters=1, max_iters=3, eval_interval=3)
    run_script("train.py", *tiny_args(char_data, tmp_path / "compiled", compile=True, **args))
    run_train(tiny_args(char_data, tmp_path / "eager", **args))

    compiled, eager = read_log(tmp_path / "compiled")[0], read_log(tmp_path / "eager")[0]
    assert [r["iter"] for r in compiled] == [0, 1, 2]
    for c, e in zip(compiled, eager):
        assert c["train_loss"] == pytest.approx(e["train_loss"], abs=1e-4)
    checkpoint = load_checkpoint(str(tmp_path / "compiled"))
    assert not any(k.startswith("_orig_mod.") for k in checkpoint["model"])
    model_from_checkpoint(checkpoint)


# ---------------------------------------------------------------- 5. bad input

def test_bad_input_gets_one_line_errors(char_data, tmp_path, capsys):
    # the real command line once: exit status 1, one line, no traceback
    proc = run_script("train.py", "--batch_size=abc", check=False)
    assert_one_line_error(proc.returncode, proc.stderr, "batch_size", "int", "'abc'")

    def check(args, *needles):
        status, _, err = cli(capsys, train, *args)
        return assert_one_line_error(status, err, *needles)

    base = tiny_args(char_data, tmp_path / "out", max_iters=1)
    check([*base, "--n_layers=3"], "unknown config key 'n_layers'", "did you mean n_layer")
    check([*base, "--dataset=nosuchset"], "python prepare.py nosuchset")
    check([*base, "--chunk_size=0"], "chunk_size=0")
    check([str(tmp_path / "missing_config.py"), *base], "missing_config.py", "not found")
    check([*base, "--block_size=2000000"], "block_size=2000000")  # longer than the val split
    # torchrun's environment with an accumulation that 2 processes cannot share (refused before
    # any process group is set up; test_torchrun_... shows the same through torchrun itself)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="2").items():
            mp.setenv(key, value)
        check([*base, "--gradient_accumulation_steps=3"], "gradient_accumulation_steps=3", "multiple of 2")
    assert not os.path.exists(tmp_path / "out" / "ckpt.pt")


# ---------------------------------------------------------------- 6. the shipped config files

# bench_*.py set bench.py's keys, not a model: tests/test_bench.py checks them (bench.resolve)
CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, "config", "*.py"))
                 if not os.path.basename(p).startswith("bench_"))


def script_defaults(path):
    """The DEFAULTS of the script a config file is for: compare_*.py -> compare.py, else train.py."""
    if os.path.basename(path).startswith("compare_"):
        import compare
        return compare.DEFAULTS
    return train.DEFAULTS


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_file_is_valid(path):
    """Every key is a key of its script with the right type (a typo fails here, not hours into
    a job), and the model it describes is a valid GPTConfig."""
    config = parse_config(script_defaults(path), [path])
    GPTConfig(**{k: config[k] for k in MODEL_KEYS if k in config})


def test_bare_command_is_the_papers_contextlm_base_run(capsys, monkeypatch):
    """`python train.py` with no config trains what `python train.py config/train_contextlm_owt.py`
    does (the paper's Table 1 ContextLM-Base run), apart from the names of the run, and the file
    restates no default but the two that config/compare_owt.py takes from it (compare.py's own
    differ); and that run is the paper's: GPT-2 124M + a 2-layer predictor, w=4, lr 1e-3, ~0.5M-token
    steps, 9.0B tokens, no biases, every other model field GPTConfig's default."""
    names = ("out_dir", "wandb_run_name")
    path = os.path.join(ROOT, "config", "train_contextlm_owt.py")
    owt = parse_config(train.DEFAULTS, [path])
    assert {k: v for k, v in owt.items() if k not in names} == \
        {k: v for k, v in train.DEFAULTS.items() if k not in names}
    assert all(owt[k] != train.DEFAULTS[k] for k in names)  # the config names its run
    written = parse_config(dict.fromkeys(train.DEFAULTS), [path])  # the keys the file itself sets
    assert {k for k, v in written.items() if v is not None} == {*names, "dataset", "lr_decay_iters"}
    # the bare command line hands train() exactly the defaults, the config's the same with its names
    seen = []
    monkeypatch.setattr(train, "train", seen.append)
    monkeypatch.setattr(train, "end_ddp", lambda: None)
    assert cli(capsys, train)[0] == 0 and seen == [train.DEFAULTS]
    assert cli(capsys, train, path)[0] == 0 and seen[1] == owt
    c = train.DEFAULTS
    assert (c["n_layer"], c["n_head"], c["n_embd"], c["n_ctx_layer"], c["chunk_size"], c["n_enc_layer"]) == \
        (12, 12, 768, 2, 4, 0)
    assert {k: c[k] for k in MODEL_KEYS if k != "vocab_size"} == \
        {f.name: f.default for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"} | {"bias": False}
    assert "vocab_size" not in c  # the dataset's
    assert c["learning_rate"] == 1e-3 and c["lr_decay_iters"] == c["max_iters"]
    step = c["gradient_accumulation_steps"] * c["batch_size"] * c["block_size"]
    assert step == 524_288 and c["max_iters"] * step == pytest.approx(9.0e9, rel=1e-3)


def test_owt_configs_take_half_a_million_tokens_a_step():
    """The paper's batch: ~0.5M tokens per optimizer step, whatever the model size."""
    owt = [p for p in CONFIGS if "owt" in os.path.basename(p)]
    assert len(owt) >= 2, CONFIGS
    for path in owt:
        c = parse_config(script_defaults(path), [path])
        tokens = c["batch_size"] * c["block_size"] * c["gradient_accumulation_steps"]
        assert 480_000 <= tokens <= 530_000, (path, tokens)


def test_configs_named_in_docstrings_exist():
    """The usage lines at the top of the entry scripts run as written."""
    missing = []
    for script in sorted(glob.glob(os.path.join(ROOT, "*.py"))):
        with open(script) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        missing += [f"{os.path.basename(script)} names {name}" for name in re.findall(r"config/[\w.-]+\.py", doc)
                    if not os.path.isfile(os.path.join(ROOT, name))]
    assert not missing, f"config files that do not exist: {missing}"


def test_a_new_run_in_an_earlier_runs_out_dir_starts_its_own_log(char_data, tmp_path, capsys):
    """A new run (not --init_from=resume) in an out_dir that holds an earlier run says so and
    replaces that run's log.jsonl and ckpt.pt, its own files, rather than appending its rows to
    the earlier log (where plot.py would read two runs as one); a user's other files stay. A
    resumed run goes on in its log."""
    out = tmp_path / "run"
    run_train(tiny_args(char_data, out, max_iters=6, eval_interval=3))
    (out / "notes.txt").write_text("mine")
    status, stdout, err = cli(capsys, train, *tiny_args(char_data, out, max_iters=2, eval_interval=2, seed=7))
    assert status == 0, err
    assert "holds an earlier run" in stdout and "--init_from=resume" in stdout
    steps, evals = read_log(out)
    assert [r["iter"] for r in steps] == [0, 1] and [r["iter"] for r in evals] == [0, 2]  # the new run alone
    assert load_checkpoint(str(out))["config"]["seed"] == 7 and (out / "notes.txt").read_text() == "mine"
    status, stdout, err = cli(capsys, train, *tiny_args(char_data, out, max_iters=4, eval_interval=2, seed=7,
                                                        init_from="resume"))
    assert status == 0 and "holds an earlier run" not in stdout, err
    assert [r["iter"] for r in read_log(out)[1]] == [0, 2, 2, 4]  # resumed: appended
