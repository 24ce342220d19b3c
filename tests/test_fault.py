"""Acceptance tests of fault tolerance: preemption by SIGTERM saves and resumes exactly, a crash
during a checkpoint save leaves the previous checkpoint intact, a non-finite loss stops training
without saving, and checkpoints that are unsafe, truncated or for another architecture are
refused with a one-line error. Tiny runs on shakespeare_char, CPU, float32."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
import sample
import train
from conftest import ROOT, assert_one_line_error, cli, read_log, run_train, tiny_args, weights


@pytest.fixture(scope="module")
def good_run(char_data, tmp_path_factory):
    """(out_dir, args) of a finished 2-iteration run whose ckpt.pt was saved at iteration 2.
    Read it, don't change it: copy it (copy_run) to resume from it."""
    out = tmp_path_factory.mktemp("good")
    args = tiny_args(char_data, out, max_iters=2, eval_interval=2)
    run_train(args)
    return out, args


def copy_run(run, dest):
    shutil.copytree(run[0], dest)
    return dest, [*run[1], f"--out_dir={dest}"]  # a later --out_dir wins


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- 1. preemption

def test_sigterm_saves_and_resume_matches_an_uninterrupted_run(char_data, tmp_path):
    """SIGTERM mid-run: the step finishes, a checkpoint is saved, exit 0 with the command to
    resume; resuming to the original max_iters gives bit-identical weights to a run that was
    never stopped (dropout 0.1: the RNG state is saved and restored too)."""
    max_iters = 300  # a step takes ~5-10 ms: the signal comes with 1-3 s of training left
    args = tiny_args(char_data, tmp_path / "stopped", max_iters=max_iters, eval_interval=1000,
                     lr_decay_iters=max_iters, dropout=0.1, gradient_accumulation_steps=1)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_path = tmp_path / "stopped" / "log.jsonl"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:  # wait for training to be under way
        if os.path.exists(log_path):
            complete_lines = open(log_path).read().split("\n")[:-1]  # the last one may be half-written
            if any(json.loads(line)["iter"] >= 2 for line in complete_lines):
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stdout and "--init_from=resume" in stdout, stdout
    stopped_at = load_checkpoint(str(tmp_path / "stopped"))["iter_num"]
    assert 2 < stopped_at < max_iters, "the signal did not arrive mid-run"

    # resume as the message says: the same command plus --init_from=resume
    run_train([*args, "--init_from=resume"])
    run_train(tiny_args(char_data, tmp_path / "uninterrupted", max_iters=max_iters, eval_interval=1000,
                        lr_decay_iters=max_iters, dropout=0.1, gradient_accumulation_steps=1))

    resumed, uninterrupted = weights(tmp_path / "stopped"), weights(tmp_path / "uninterrupted")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    losses = {r["iter"]: r["train_loss"] for r in read_log(tmp_path / "stopped")[0]}
    reference = {r["iter"]: r["train_loss"] for r in read_log(tmp_path / "uninterrupted")[0]}
    assert losses == reference  # every iteration logged once, with the same loss


# ---------------------------------------------------------------- 2. a crash while saving

def test_crash_during_checkpoint_save_keeps_the_previous_one(good_run, tmp_path, monkeypatch):
    """torch.save dies half-way through writing (disk full, killed): the old ckpt.pt is still
    there byte for byte and loads, and no temporary file is left behind."""
    out, args = copy_run(good_run, tmp_path / "run")
    before = read_bytes(out / "ckpt.pt")
    real_save = torch.save

    def save_half_then_fail(obj, f, *a, **kw):
        buffer = io.BytesIO()
        real_save(obj, buffer, *a, **kw)
        f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):  # resuming saves at once (iteration 2 is an eval)
        run_train([*args, "--init_from=resume", "--max_iters=4"])
    monkeypatch.undo()

    assert sorted(os.listdir(out)) == ["ckpt.pt", "log.jsonl"]  # no ckpt.pt.tmp.<pid>
    assert read_bytes(out / "ckpt.pt") == before
    model_from_checkpoint(load_checkpoint(str(out)))


# ---------------------------------------------------------------- 3. a non-finite loss

def test_non_finite_loss_stops_without_saving(good_run, tmp_path, capsys):
    """learning_rate=1e30: the first step throws the weights to ~1e30, the next forward overflows.
    Training stops at that iteration with exit 1, naming it, and ckpt.pt is left as it was."""
    out, args = copy_run(good_run, tmp_path / "run")
    before = read_bytes(out / "ckpt.pt")
    status, _, err = cli(capsys, train, *args, "--init_from=resume", "--learning_rate=1e30", "--decay_lr=False",
                         "--max_iters=20", "--eval_interval=1000")  # no evaluation, hence no save, on the way
    last_good = read_log(out)[0][-1]["iter"]  # the last step that completed and was logged
    assert last_good >= 2  # at least the one step with the huge learning rate was taken
    assert_one_line_error(status, err, f"non-finite loss or gradient at iteration {last_good + 1}",
                          "--learning_rate")
    assert read_bytes(out / "ckpt.pt") == before


# ---------------------------------------------------------------- 4. bad checkpoints

class WritesAFile:
    """Unpickling this calls open(path, 'w'): a stand-in for arbitrary code in a pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_bad_checkpoints_are_refused_with_one_line(good_run, tmp_path, capsys):
    good_ckpt = load_checkpoint(str(good_run[0]))

    # a pickle that runs code when loaded: refused by both scripts, and the code never runs
    marker = tmp_path / "pwned"
    out, args = copy_run(good_run, tmp_path / "unsafe")
    torch.save(good_ckpt | {"model_args": WritesAFile(str(marker))}, out / "ckpt.pt")
    for module, module_args in ((train, [*args, "--init_from=resume"]), (sample, [f"--out_dir={out}"])):
        status, _, err = cli(capsys, module, *module_args, "--device=cpu")
        assert_one_line_error(status, err, "refusing to load", str(out / "ckpt.pt"))
        assert not marker.exists()
    torch.load(out / "ckpt.pt", weights_only=False)  # the payload is real: plain unpickling runs it
    assert marker.exists()

    # a checkpoint cut in half (a copy that did not finish)
    out, args = copy_run(good_run, tmp_path / "truncated")
    data = read_bytes(out / "ckpt.pt")
    with open(out / "ckpt.pt", "wb") as f:
        f.write(data[:len(data) // 2])
    for module, module_args in ((train, [*args, "--init_from=resume"]), (sample, [f"--out_dir={out}"])):
        status, _, err = cli(capsys, module, *module_args, "--device=cpu")
        assert_one_line_error(status, err, str(out / "ckpt.pt"), "truncated or corrupt")

    # weights without training state (no optimizer, no iteration): not resumable, still usable
    out, args = copy_run(good_run, tmp_path / "weights_only")
    torch.save({k: good_ckpt[k] for k in ("model", "model_args", "meta", "config")}, out / "ckpt.pt")
    status, _, err = cli(capsys, train, *args, "--init_from=resume", "--device=cpu")
    assert_one_line_error(status, err, str(out / "ckpt.pt"), "optimizer, scaler, iter_num, best_val_loss, rng missing",
                          "--init_from=scratch")

    # a checkpoint from before data_hash was kept in it resumes, and says the fingerprint restarts
    out, args = copy_run(good_run, tmp_path / "no_hash")
    torch.save({k: v for k, v in good_ckpt.items() if k != "data_hash"}, out / "ckpt.pt")
    status, stdout, _ = cli(capsys, train, *args, "--init_from=resume", "--max_iters=3", "--device=cpu")
    assert status == 0 and "has no data_hash; the batch fingerprint restarts at iteration 2" in stdout
    assert load_checkpoint(str(out))["iter_num"] == 3

    # resuming with another architecture than the checkpoint's
    out, args = copy_run(good_run, tmp_path / "other_arch")
    status, _, err = cli(capsys, train, *args, "--init_from=resume", "--n_layer=3")
    assert_one_line_error(status, err, str(out / "ckpt.pt"), "n_layer=2 (config says 3)")
    # and a checkpoint whose weights disagree with its own model_args (sample.py has no config to compare)
    torch.save(good_ckpt | {"model_args": good_ckpt["model_args"] | {"n_layer": 3}}, out / "ckpt.pt")
    status, _, err = cli(capsys, sample, f"--out_dir={out}", "--device=cpu")
    assert_one_line_error(status, err, str(out), "weights do not fit")
