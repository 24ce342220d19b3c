"""compare.py on CPU: the --quick study end to end (table, JSON, PNG, a progress line a run), the
time left it reports, the arms it builds, a rerun that reuses the finished runs and stops loudly
on mismatched batch fingerprints, proof that the arms of a seed train on identical batches, the
ablation grid with one flag, and bad input refused before any training."""

import hashlib
import json
import math
import re
import shutil

import pytest
import torch
from conftest import assert_one_line_error, cli, run_script

import compare
import train
from checkpoint import load_checkpoint
from configurator import UserError
from variants import BACKBONES
from plot import read_log

ARMS = ("gpt", "contextlm", "gpt+2L")


def quick_args(data_root, out_dir, *more):
    return ["--quick", f"--data_root={data_root}", f"--out_dir={out_dir}", *more]


@pytest.fixture(scope="module")
def quick_study(char_data, tmp_path_factory):
    """The CI study, run once as a user would: `python compare.py --quick`."""
    out = tmp_path_factory.mktemp("compare")
    proc = run_script("compare.py", *quick_args(char_data, out))
    return out, proc


def test_quick_study_writes_table_json_and_plot(quick_study):
    out, proc = quick_study
    results = json.loads((out / "results.json").read_text())
    table = (out / "results.md").read_text()
    assert table.strip() in proc.stdout  # printed as well as saved
    assert list(results["arms"]) == list(ARMS) and len(results["seeds"]) == 1
    seed = str(results["seeds"][0])
    for arm in ARMS:
        assert f"| {arm} |" in table
        # "final val loss" is the log's evaluation at iteration max_iters
        with open(out / f"{arm}-s{seed}" / "log.jsonl") as f:
            evals = [row for row in map(json.loads, f) if "val_loss" in row]
        final = results["arms"][arm]["final_val_loss"][seed]
        assert evals[-1]["iter"] == results["config"]["max_iters"] and evals[-1]["val_loss"] == final
        assert final < math.log(65)  # below chance: every arm actually trained
        assert results["arms"][arm]["val_ppl"] == pytest.approx(math.exp(final))
    assert "± n/a" in table  # one seed: no std
    # the paired comparisons and the efficiency views: one seed, so no interval, but every field
    tests = {(t["arm"], t["baseline"]): t for t in results["comparisons"]}
    assert list(tests) == [("contextlm", "gpt"), ("gpt+2L", "gpt"), ("contextlm", "gpt+2L")]
    for t in tests.values():
        assert t["final_val_loss"]["n"] == 1 and t["final_val_loss"]["low"] is None
        assert {"at_equal_flops", "at_equal_seconds", "tokens_to_reach_baseline", "flops_to_reach_baseline",
                "seconds_to_reach_baseline"} <= set(t)
    assert results["equal_budgets"]["flops"] == min(a["flops_curves"][seed][-1][0] for a in results["arms"].values())
    assert "| contextlm − gpt+2L | 1 |" in table and (out / "efficiency.png").read_bytes().startswith(b"\x89PNG")
    gpt, ctx, big = (results["arms"][arm] for arm in ARMS)
    assert ctx["params"]["token"] == gpt["params"]["token"] and ctx["params"]["predictor"] > 0
    assert big["params"]["predictor"] == 0  # the parameter-matched GPT: 2 more token layers instead
    assert big["params"]["token"] == pytest.approx(ctx["params"]["token"] + ctx["params"]["predictor"], rel=0.02)
    assert ctx["delta_vs_gpt"] == pytest.approx(ctx["final_val_loss"][seed] - gpt["final_val_loss"][seed])
    # the reviewers' question, answered under the table: contextlm against the parameter-matched GPT
    vs_big = ctx["final_val_loss"][seed] - big["final_val_loss"][seed]
    assert f"contextlm − gpt+2L, paired by seed: {vs_big:.4f} ± n/a (per seed: {vs_big:+.4f})" in table
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    # progress: one line a run, which of how many, time elapsed and (after a trained run) left
    assert "3 runs: 0 finished earlier, 3 to train" in proc.stdout
    for i, arm in enumerate(ARMS, 1):
        left = r", about [\dhms]+ left" if i > 1 else ""
        assert re.search(rf"^\[run {i}/3\] {re.escape(arm)}-s{seed} in {re.escape(str(out / f'{arm}-s{seed}'))} "
                         rf"\([\dhms]+ elapsed{left}\): trained in \d+s, final val loss \d\.\d{{4}}$", proc.stdout, re.M), arm


def test_progress_says_which_run_and_the_time_left(char_data, tmp_path, monkeypatch, capsys):
    """The time left is the mean time of the runs trained so far times the runs still to train;
    a run reused from earlier costs nothing. Training is replaced by a stand-in taking 90 s."""
    c = compare.study_config(quick_args(char_data, tmp_path, "--seeds=2"))
    monkeypatch.setattr(compare, "finished", lambda cfg: {} if cfg["out_dir"].endswith("contextlm-s1337") else None)
    monkeypatch.setattr(compare, "train_run", lambda cfg, master: {"wall_s": 90.0})
    monkeypatch.setattr(compare, "collect", lambda cfg, done: {"final": 2.5})
    compare.run_all(c, compare.arms_of(c), [1337, 1338], master=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "6 runs: 1 finished earlier, 5 to train"
    left = ["", ", about 6m00s left", ", about 6m00s left", ", about 4m30s left", ", about 3m00s left",
            ", about 1m30s left"]
    runs = [f"{arm}-s{seed}" for seed in (1337, 1338) for arm in ARMS]
    for i, (line, run, left) in enumerate(zip(lines[1:], runs, left, strict=True), 1):
        status = "finished earlier, reused" if run == "contextlm-s1337" else "trained in 90s"
        assert line == f"[run {i}/6] {run} in {tmp_path / run} (0s elapsed{left}): {status}, final val loss 2.5000"
    assert train.format_duration(59.6) == "1m00s" and train.format_duration(3725) == "1h02m"


def fields(arms):
    """{arm: (n_layer, n_ctx_layer, chunk_size, n_enc_layer)}."""
    keys = ("n_layer", "n_ctx_layer", "chunk_size", "n_enc_layer")
    return {name: tuple(f[k] for k in keys) for name, f in arms.items()}


def test_arms_are_the_study_models_and_the_ablation_varies_contextlm():
    c = compare.parse_config(compare.DEFAULTS, ["--n_layer=4", "--n_ctx_layer=2", "--chunk_size=4", "--n_enc_layer=0"])
    assert fields(compare.arms_of(c)) == {"gpt": (4, 0, 4, 0), "contextlm": (4, 2, 4, 0), "gpt+2L": (6, 0, 4, 0)}
    grid = compare.arms_of(c | dict(ablation=True, chunk_sizes=[2, 4]))
    assert fields(grid) == {"gpt": (4, 0, 4, 0), "contextlm-w2-enc0": (4, 2, 2, 0), "contextlm": (4, 2, 4, 0),
                            "contextlm-w2-enc2": (4, 2, 2, 2), "contextlm-w4-enc2": (4, 2, 4, 2)}


def test_rerun_reuses_runs_and_fails_loudly_on_different_batches(quick_study, char_data, tmp_path, capsys):
    out, _ = quick_study
    study = tmp_path / "study"
    shutil.copytree(out, study)
    logs = {arm: study / f"{arm}-s1337" / "log.jsonl" for arm in ARMS}
    before = {arm: path.read_text() for arm, path in logs.items()}
    compare.main(quick_args(char_data, study))  # in-process: nothing to train
    assert capsys.readouterr().out.count("finished earlier, reused") == 3
    assert {arm: path.read_text() for arm, path in logs.items()} == before

    # a run whose config differs (here: the learning rate) is not "finished" for this study
    c = compare.study_config(quick_args(char_data, study))
    cfg = compare.run_config(c, "gpt", compare.arms_of(c)["gpt"], 1337)
    assert compare.finished(cfg) is not None and compare.finished(cfg | {"learning_rate": 0.5}) is None
    assert compare.changed_settings(cfg | {"learning_rate": 0.5}) == {"learning_rate": (cfg["learning_rate"], 0.5)}
    assert compare.finished(cfg | {"data_root": str(char_data) + "/."}) is not None  # the same folder, spelt otherwise
    # a run written before a setting existed trained as its value then: the default, or the legacy value
    record = study / "gpt-s1337" / "run.json"
    written = record.read_text()
    run = json.loads(written)
    for key, legacy in (("context_gain_weight_decay", None), ("context_scale", "none")):
        run["config"].pop(key)
        record.write_text(json.dumps(run))
        expected = {} if legacy is None else {key: (legacy, cfg[key])}
        assert compare.changed_settings(cfg) == expected, key
    record.write_text(written)
    # a study with other settings says which finished runs it trains again, and why, before it does
    compare.main(quick_args(char_data, study, "--max_iters=12", "--eval_interval=4", "--arms=['gpt']"))
    [line] = [line for line in capsys.readouterr().out.splitlines() if "trained again" in line]
    assert line.startswith("  gpt-s1337 finished with other settings, trained again: ")
    assert "eval_interval 10 -> 4" in line and "max_iters 30 -> 12" in line and "learning_rate" not in line
    shutil.rmtree(study / "gpt-s1337")
    shutil.copytree(out / "gpt-s1337", study / "gpt-s1337")

    # one arm whose batch fingerprint differs at the last evaluation: the study must refuse to report
    rows = [json.loads(line) for line in before["contextlm"].splitlines()]
    [*_, last] = [row for row in rows if "val_loss" in row]
    last["data_hash"] = hashlib.sha256(b"other batches").hexdigest()
    logs["contextlm"].write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(UserError, match="'gpt' and 'contextlm' did not draw the same training batches"):
        compare.main(quick_args(char_data, study))


def test_arms_of_a_seed_train_on_identical_batches(char_data, tmp_path, monkeypatch):
    """Hash the actual training tensors each arm's run draws (wrapping train.get_batch), for
    every arm at one seed and for gpt at the next seed, which must differ."""
    c = compare.study_config(quick_args(char_data, tmp_path, "--max_iters=3", "--eval_iters=1"))
    hashes = []
    real_get_batch = train.get_batch

    def hashing_get_batch(data, offsets, block_size, device):
        x, y = real_get_batch(data, offsets, block_size, device)
        if torch.is_grad_enabled():  # training batches only: evaluation runs under no_grad
            hashes[-1]["n"] += 1
            hashes[-1]["sha"].update(x.numpy().tobytes() + y.numpy().tobytes())
        return x, y

    monkeypatch.setattr(train, "get_batch", hashing_get_batch)
    arms = compare.arms_of(c)
    runs = [(name, 1337) for name in arms] + [("gpt", 1338)]
    for name, seed in runs:
        hashes.append({"n": 0, "sha": hashlib.sha256()})
        compare.train_run(compare.run_config(c, name, arms[name], seed), master=True)
    seen = {run: (h["n"], h["sha"].hexdigest()) for run, h in zip(runs, hashes)}
    logged = {(name, seed): read_log(tmp_path / f"{name}-s{seed}")[1][-1]["data_hash"] for name, seed in runs}
    assert all(n == 3 for n, _ in seen.values()), seen  # one batch per iteration (no accumulation)
    assert len({seen[(name, 1337)] for name in arms}) == 1
    assert len({logged[(name, 1337)] for name in arms}) == 1
    assert seen[("gpt", 1338)] != seen[("gpt", 1337)] and logged[("gpt", 1338)] != logged[("gpt", 1337)]


def test_ablation_runs_with_one_flag_and_reuses_the_main_runs(quick_study, char_data):
    out, _ = quick_study
    results = (out / "results.md").read_text()
    # chunk sizes 2 and 4 x encoder depths 0 and 1 (n_layer // 2); 64 > block_size is skipped
    proc = run_script("compare.py", *quick_args(char_data, out, "--ablation=True", "--chunk_sizes=[2, 4, 64]"))
    assert "chunk_size=64 skipped" in proc.stdout
    assert proc.stdout.count("finished earlier, reused") == 2  # gpt and contextlm (w=4, enc=0)
    ablation = json.loads((out / "ablation.json").read_text())
    arms = ["gpt", "contextlm-w2-enc0", "contextlm", "contextlm-w2-enc1", "contextlm-w4-enc1"]
    assert list(ablation["arms"]) == arms
    assert [(a["model"]["chunk_size"], a["model"]["n_enc_layer"]) for a in ablation["arms"].values()][1:] == \
        [(2, 0), (4, 0), (2, 1), (4, 1)]
    table = (out / "ablation.md").read_text()
    assert all(f"| {arm} |" in table for arm in arms)
    assert (out / "ablation.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "results.md").read_text() == results  # the main table is left alone


def test_missing_dataset_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="python prepare.py shakespeare"):
        compare.main(quick_args(tmp_path, tmp_path / "out", "--dataset=shakespeare"))


@pytest.mark.parametrize("args, message", [(["--n_ctx_layer=0"], "--n_ctx_layer=0: must be at least 1"),
                                           (["--seeds=0"], "train at least one seed")])
def test_bad_study_is_refused_before_training(char_data, tmp_path, args, message):
    with pytest.raises(UserError, match=message):
        compare.main(quick_args(char_data, tmp_path / "out", *args))
    assert not (tmp_path / "out").exists()


def folder_bytes(folder):
    """{path under folder: its bytes, or None for a folder}: all a folder holds, to compare."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


EARLIER_STUDY = '{"study": "main", "config": {"learning_rate": 0.5}, "seeds": [1337], "arms": {}}'
DAMAGED_STUDY = '{"study": "main", "config": {}, "seeds": [1337], "arms": {"gpt": {"model": {}}}}'
EVAL_RESULTS = '{"out": {"shakespeare_char": {"ppl": 3.5}}}'
CONTEXTLM = "--arms=['contextlm']"
# Issue 34: each was found only after every run had trained (hours at a real study's size), or the
# run's folder or the report it replaced was not compare.py's. {case: (files planted in the study's
# folder {out}, the arguments, what the one line says)}
BEFORE_TRAINING = {
    "earlier missing": ({}, [CONTEXTLM, "--earlier={out}/missing.json"],
                        ["missing.json: not a results.json that compare.py wrote (FileNotFoundError"]),
    "earlier not JSON": ({"e.json": "gpt: 1.2"}, [CONTEXTLM, "--earlier={out}/e.json"],
                         ["e.json: not a results.json that compare.py wrote (JSONDecodeError"]),
    "earlier eval.py's": ({"e.json": EVAL_RESULTS}, [CONTEXTLM, "--earlier={out}/e.json"],
                          ["not a results.json that compare.py wrote (KeyError: 'config')"]),
    "earlier arm damaged": ({"e.json": DAMAGED_STUDY}, [CONTEXTLM, "--earlier={out}/e.json"],
                            ["not a results.json that compare.py wrote (KeyError: 'params')"]),
    "earlier other settings": ({"e.json": EARLIER_STUDY}, [CONTEXTLM, "--earlier={out}/e.json"],
                               ["cannot be paired with this study: its learning_rate=0.5"]),
    "earlier is the report": ({"results.json": EARLIER_STUDY}, [CONTEXTLM, "--earlier={out}/results.json"],
                              ["is the report this study writes: give another --out_dir"]),
    "arms without gpt": ({}, [CONTEXTLM], ["without gpt", "give --earlier=PATH"]),
    "report eval.py's": ({"results.json": EVAL_RESULTS}, [],
                         ["results.json is not a report that compare.py wrote", "give another --out_dir"]),
    "run a train.py run": ({"gpt-s1337/ckpt.pt": "weights", "gpt-s1337/log.jsonl": "{}\n"}, [],
                           ["gpt-s1337 is not a run that compare.py started (it has no train.log): move it away"]),
    "run with a user's file": ({"contextlm-s1337/train.log": "", "contextlm-s1337/notes.txt": "mine"}, [],
                               ["contextlm-s1337 is not a run that compare.py started (it holds notes.txt)"]),
}


@pytest.mark.parametrize("case", BEFORE_TRAINING)
def test_inputs_and_outputs_are_checked_before_any_run_trains(case, char_data, tmp_path, capsys, monkeypatch):
    """Each case is one line before the first run trains (training fails the test), and every file
    in the study's folder is as it was."""
    out = tmp_path / "study"
    out.mkdir()
    files, args, needles = BEFORE_TRAINING[case]
    for name, text in files.items():
        write(out / name, text)
    before = folder_bytes(tmp_path)
    monkeypatch.setattr(compare, "train_run", lambda cfg, master: pytest.fail(f"{cfg['out_dir']} trained"))
    status, _, err = cli(capsys, compare, *quick_args(char_data, out, *(a.format(out=out) for a in args)))
    assert_one_line_error(status, err, *needles)
    assert folder_bytes(tmp_path) == before


def test_a_run_is_cleared_only_if_compare_started_it(char_data, tmp_path):
    """train_run starts a run over: it clears the run's folder only when compare.py started it
    (train.log) and it holds nothing but a run's files, then trains; a train.py run of the user's,
    or a file of the user's beside a partial run, is refused and left byte for byte."""
    c = compare.study_config(quick_args(char_data, tmp_path, "--max_iters=2", "--eval_interval=2",
                                        "--warmup_iters=1"))
    cfg = compare.run_config(c, "gpt", compare.arms_of(c)["gpt"], 1337)
    run = tmp_path / "gpt-s1337"
    write(run / "ckpt.pt", "a user's checkpoint")
    write(run / "log.jsonl", "{}\n")
    for why in ("it has no train.log", "it holds notes.txt"):
        before = folder_bytes(run)
        with pytest.raises(UserError, match=re.escape(f"is not a run that compare.py started ({why})")):
            compare.train_run(cfg, master=True)
        assert folder_bytes(run) == before
        write(run / "train.log", "step 0\n")
        write(run / "notes.txt", "mine")
    (run / "notes.txt").unlink()
    compare.train_run(cfg, master=True)  # a partial run of compare.py's: cleared, trained again
    assert sorted(p.name for p in run.iterdir()) == ["ckpt.pt", "log.jsonl", "run.json", "train.log"]
    assert compare.finished(cfg) is not None and (run / "ckpt.pt").read_bytes().startswith(b"PK")


def test_quick_study_on_pythias_block(char_data, tmp_path, capsys):
    """`compare.py --quick --backbone=pythia`: every arm trains on Pythia's block (BACKBONES,
    as bench.py's --backbone), which the runs' configs and checkpoints show (no position table,
    an untied head), and the table says so."""
    compare.main(quick_args(char_data, tmp_path, "--backbone=pythia", "--max_iters=4", "--eval_interval=2",
                            "--always_save_checkpoint=True"))
    assert "pythia block" in (tmp_path / "results.md").read_text()
    seed = json.loads((tmp_path / "results.json").read_text())["seeds"][0]
    for arm in ARMS:
        run = tmp_path / f"{arm}-s{seed}"
        config = json.loads((run / "run.json").read_text())["config"]
        assert {k: config[k] for k in BACKBONES["pythia"]} == BACKBONES["pythia"]
        ckpt = load_checkpoint(str(run))
        assert {k: ckpt["model_args"][k] for k in BACKBONES["pythia"]} == BACKBONES["pythia"]
        assert "transformer.wpe.weight" not in ckpt["model"]
        assert not torch.equal(ckpt["model"]["lm_head.weight"], ckpt["model"]["transformer.wte.weight"])
    with pytest.raises(UserError, match="backbone='llama': must be one of '', gpt2, pythia"):
        compare.study_config(quick_args(char_data, tmp_path, "--backbone=llama"))


# ---------------------------------------------------------------- the statistics, on known answers

@pytest.mark.parametrize("df, t", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (7, 2.3646), (30, 2.0423), (10**6, 1.9600)])
def test_t_quantile_matches_the_table(df, t):
    assert compare.t_quantile(0.975, df) == pytest.approx(t, abs=1e-3)


def test_paired_interval_is_the_hand_computation():
    """Deltas -0.01, -0.02, -0.03, -0.04: mean -0.025, std sqrt(1/6000), half-width t(0.975, 3) *
    std / 2 = 3.1824 * 0.012910 / 2 = 0.020542 (hand), so the interval excludes zero; planted: one
    more seed at +0.05 widens it past zero."""
    a = {"final_val_loss": {"1": 1.0, "2": 1.0, "3": 1.0, "4": 1.0}}
    b = {"final_val_loss": {"1": 1.01, "2": 1.02, "3": 1.03, "4": 1.04}}
    d = compare.paired(a, b, "final_val_loss")
    assert d["n"] == 4 and d["mean"] == pytest.approx(-0.025) and d["std"] == pytest.approx(math.sqrt(1 / 6000))
    assert d["low"] == pytest.approx(-0.025 - 0.020542, abs=1e-5)
    assert d["high"] == pytest.approx(-0.025 + 0.020542, abs=1e-5)
    assert d["excludes_zero"] is True
    a["final_val_loss"]["5"], b["final_val_loss"]["5"] = 1.05, 1.0
    assert compare.paired(a, b, "final_val_loss")["excludes_zero"] is False
    one = compare.interval([0.3])
    assert one["mean"] == 0.3 and one["low"] is None and compare.excludes(one, 0.0) is None


def power_law(budgets, a=10.0, b=0.2):
    return [[c, a * c ** -b] for c in budgets]


def test_reach_ratio_is_the_analytic_ratio_on_power_laws():
    """Baseline L(C) = 10 C^-0.2; the arm L(k C), k = 1.25 times as efficient, so it reaches the
    baseline's final loss at 1/k = 0.8 of its FLOPs, between two of its evaluations (the log-log
    interpolation is exact for a power law). Seed 2: the arm is worse (k = 0.9): not reached."""
    budgets = [1e12 * i for i in range(1, 11)]
    start = [[0, 20.0]]  # the evaluation at iteration 0, before any training
    base = start + power_law(budgets)
    better = start + [[c, 10.0 * (1.25 * c) ** -0.2] for c in budgets]
    worse = start + [[c, 10.0 * (0.9 * c) ** -0.2] for c in budgets]
    r = compare.reach_ratio({"1": better, "2": worse}, {"1": base, "2": base})
    assert r["per_seed"]["1"] == pytest.approx(0.8, rel=1e-9) and r["per_seed"]["2"] is None
    assert r["reached"] == 1 and r["mean"] == pytest.approx(0.8)
    assert compare.budget_to_reach(better, base[-1][1]) == pytest.approx(8e12)
    assert compare.budget_to_reach(worse, base[-1][1]) is None
    # a noisy curve that dips below the target, then rises: the first crossing counts
    dip = [[0, 9], [1, 4], [2, 2], [4, 3], [8, 1]]
    assert compare.budget_to_reach(dip, 2.5) == pytest.approx(2 ** (math.log(2.5 / 4) / math.log(0.5)))
    never = compare.reach_ratio({"1": worse, "2": worse}, {"1": base, "2": base})
    assert compare.ratio_cell(never) == "not reached (0/2 seeds)"


def test_loss_at_equal_budget_interpolates_in_log_log():
    curve = [[0, 11.0], [1e3, 4.0], [4e3, 1.0], [8e3, 0.9]]
    assert compare.loss_at(curve, 2e3) == pytest.approx(2.0)  # halfway in log budget: sqrt(4 * 1)
    assert compare.loss_at(curve, 4e3) == 1.0 and compare.loss_at(curve, 8e3) == 0.9
    assert compare.loss_at(power_law([1e12, 1e13]), 3e12) == pytest.approx(10.0 * 3e12 ** -0.2)
    with pytest.raises(ValueError):
        compare.loss_at(curve, 9e3)


def test_equal_time_names_a_run_whose_clock_was_disturbed(capsys):
    """A run suspended or starved early can evaluate first after more seconds than the fastest run
    trains in all: no equal-time point exists, so that column is n/a and the run to train again is
    named; the study's other figures stand (it does not fail after hours of training)."""
    def arm(seconds):
        return {"flops_curves": {"1": [[0, 9.0], [1e12, 3.0], [2e12, 2.0]]},
                "seconds_curves": {"1": [[t, loss] for t, loss in zip(seconds, (9.0, 3.0, 2.0))]}}
    summary = {"gpt": arm([0, 30, 60]), "contextlm": arm([0, 1000, 1030])}
    assert compare.equal_budgets(summary) == {"flops": 2e12, "seconds": None}
    assert re.search(r"contextlm, seed 1, trained 1000.00 s before its first evaluation.*delete that run's folder",
                     capsys.readouterr().out)
    assert summary["contextlm"]["loss_at_equal_seconds"] is None
    assert summary["contextlm"]["loss_at_equal_flops"] == {"1": 2.0}
    gap = compare.paired(summary["contextlm"], summary["gpt"], "loss_at_equal_seconds")
    assert compare.ci(gap) == "n/a" and gap["excludes_zero"] is None
    assert "| contextlm | 2e+12 | 1030 s | 2.0000 | n/a |" in compare.budget_lines(summary, {"flops": 2e12, "seconds": None})
    summary["contextlm"] = arm([0, 35, 70])
    assert compare.equal_budgets(summary) == {"flops": 2e12, "seconds": 60}
    assert summary["contextlm"]["loss_at_equal_seconds"]["1"] == pytest.approx(3.0 * (2 / 3) ** (math.log(60 / 35) / math.log(2)))


def test_training_seconds_add_up_the_step_times():
    """Steps 0..9 of 100 tokens at 50 tokens/s (2 s each), logged every 2nd step: each logged step
    stands for the steps since the last one. Evaluations at iterations 0, 4 and 10."""
    timing = [{"iter": i, "tokens": 100 * (i + 1), "tokens_per_sec": 50.0} for i in range(0, 10, 2)]
    evals = [{"iter": 0}, {"iter": 4}, {"iter": 10}]
    assert compare.training_seconds(timing, evals) == [0.0, 2.0 + 2 * 2.0, 2.0 + 4 * 2.0 * 2]
