"""eval.py and plot.py, offline on CPU: sliding-window perplexity equals a slow loop of single
forwards over exactly the contexts the window promises; LAMBADA last-word accuracy on hand-made
examples; the recomputed attention probabilities reproduce the layer's real output; the
scripts' outputs (table, JSON, PNGs) from tiny train.py runs; one-line errors."""

import json
import math
import os
import string
from dataclasses import asdict

import numpy as np
import pytest
import torch
from conftest import context_start, run_in_process, run_script, sharp_model
from torch.nn import functional as F

import eval as eval_script
import plot
import train
from checkpoint import save_checkpoint
from configurator import UserError
from model import GPTConfig


V = 50
CHARS = list((string.ascii_letters + string.digits)[:V])  # a character vocabulary for the checkpoint
NOCTX = torch.no_grad()


def sharp(seed=0, **kw):
    """conftest.sharp_model with this file's shape: a wrong context or position is obvious."""
    cfg = dict(block_size=8, vocab_size=V, n_layer=3, n_head=2, n_embd=16, chunk_size=3, n_ctx_layer=2, n_enc_layer=1)
    return sharp_model(cfg | kw, seed)


def last_logits(model, context):
    """Next-token logits (vocab,) after the 1-D tensor `context`, one plain forward."""
    with torch.no_grad():
        return model(context[None])[0][0, -1]


# ---------------------------------------------------------------- 1. sliding-window perplexity

def reference_nll(model, ids, block_size, stride):
    """Sum over every target ids[t], t >= 1, of -log p(ids[t] | ids[start:t]), one forward each."""
    total = 0.0
    for t in range(1, len(ids)):
        logits = last_logits(model, ids[context_start(t, len(ids), block_size, stride):t])
        total += F.cross_entropy(logits[None], ids[t:t + 1]).item()
    return total, len(ids) - 1


def test_window_schedule_by_hand():
    # 20 ids, block 8, stride 4: targets 1-8, then 9-12, 13-16, and the tail 17-19 from a window
    # that ends at the last id (it moves by 3, not 4, and keeps the full 8 tokens)
    assert eval_script.window_schedule(20, 8, 4) == [(0, 8), (4, 4), (8, 4), (11, 3)]
    assert eval_script.window_schedule(20, 8, 8) == [(0, 8), (8, 8), (11, 3)]
    assert eval_script.window_schedule(6, 8, 4) == [(0, 5)]  # shorter than a window: one, all scored
    assert eval_script.window_schedule(1, 8, 4) == []
    for n in (2, 9, 10, 23, 40):
        for stride in (1, 3, 4, 7, 8):
            windows = eval_script.window_schedule(n, 8, stride)
            L = min(8, n - 1)
            scored = [t for start, k in windows for t in range(start + L - k + 1, start + L + 1)]
            assert scored == list(range(1, n))  # every target once, in order
            assert all(0 <= start and start + L <= n - 1 for start, _ in windows)


@pytest.mark.parametrize("n_ctx_layer", [2, 0])
@pytest.mark.parametrize("n_ids", [2, 6, 9, 10, 30])
def test_sliding_window_matches_direct_loop(n_ids, n_ctx_layer):
    model = sharp(n_ctx_layer=n_ctx_layer)
    ids = torch.randint(V, (n_ids,), generator=torch.Generator().manual_seed(n_ids))
    for stride in (1, 3, 4, 7, 8):  # 8 = block_size: non-overlapping windows
        expected, count = reference_nll(model, ids, 8, stride)
        for batch_size in (1, 3):
            total, n = eval_script.sliding_window_nll(model, ids, 8, stride, batch_size, "cpu", NOCTX)
            assert n == count == n_ids - 1
            assert total == pytest.approx(expected, rel=1e-5), (stride, batch_size)
            assert math.exp(total / n) == pytest.approx(math.exp(expected / count), rel=1e-5)
    if n_ids > 9:  # the window's context matters: scoring every target from ids[0] only differs
        truncated = sum(F.cross_entropy(last_logits(model, ids[max(0, t - 1):t])[None], ids[t:t + 1]).item()
                        for t in range(1, n_ids))
        assert abs(truncated - expected) > 1e-3


@pytest.mark.parametrize("n_ctx_layer", [2, 0])
def test_loss_by_position_matches_direct_loop(n_ctx_layer):
    """Position t of each non-overlapping window ids[s:s + 9] predicts ids[s + t + 1] from exactly
    ids[s:s + t + 1]; the tail that does not fill a window is left out."""
    model = sharp(n_ctx_layer=n_ctx_layer)
    ids = torch.randint(V, (30,), generator=torch.Generator().manual_seed(5))  # 3 windows of 8 + 1, 5 left over
    expected = [sum(F.cross_entropy(last_logits(model, ids[s:s + t + 1])[None], ids[s + t + 1:s + t + 2]).item()
                    for s in (0, 8, 16)) / 3 for t in range(8)]
    for batch_size in (1, 2):
        loss, n = eval_script.loss_by_position(model, ids, 8, batch_size, "cpu", NOCTX)
        assert n == 3 and loss == pytest.approx(expected, rel=1e-5)
    # the mean over positions is the perplexity of non-overlapping windows (stride = block_size)
    total, count = eval_script.sliding_window_nll(model, ids[:25], 8, 8, 4, "cpu", NOCTX)
    assert sum(loss) / 8 == pytest.approx(total / count, rel=1e-5)
    # a planted off-by-one (position t scored against the token after its target) is far off
    shifted = [sum(F.cross_entropy(last_logits(model, ids[s:s + t + 1])[None], ids[s + t + 2:s + t + 3]).item()
                   for s in (0, 8, 16)) / 3 for t in range(8)]
    assert max(abs(a - b) for a, b in zip(loss, shifted)) > 0.5
    with pytest.raises(UserError, match="block_size \\+ 1 = 9 tokens"):
        eval_script.loss_by_position(model, ids[:8], 8, 2, "cpu", NOCTX)


# ---------------------------------------------------------------- 2. LAMBADA last words

def lambada_examples(model):
    """Three examples laid back to back, as prepare.py lays them out, and their known outcome:
    1. a context longer than block_size (8) and a two-token word that is the model's greedy
       choice given the last tokens that fit in the window: right;
    2. a word whose first token is greedy but whose second is not: wrong;
    3. a one-token word that is not the argmax: wrong."""
    gen = torch.Generator().manual_seed(1)
    ctx1, ctx2, ctx3 = (torch.randint(V, (n,), generator=gen) for n in (11, 5, 3))
    # the window is the last 8 tokens of context + word[:-1], i.e. ctx1[-7:] + [a]: word[0] is
    # predicted from ctx1[-7:], word[1] from ctx1[-7:] + [a]
    a = last_logits(model, ctx1[-7:]).argmax().item()
    b = last_logits(model, torch.cat([ctx1[-7:], torch.tensor([a])])).argmax().item()
    c = last_logits(model, ctx2).argmax().item()
    d = (last_logits(model, torch.cat([ctx2, torch.tensor([c])])).argmax().item() + 1) % V
    e = (last_logits(model, ctx3).argmax().item() + 1) % V
    ids, examples = [], []
    for ctx, word in ((ctx1, [a, b]), (ctx2, [c, d]), (ctx3, [e])):
        start = len(ids)
        ids += ctx.tolist()
        examples.append([start, len(ids), len(ids) + len(word)])
        ids += word
    return torch.tensor(ids), examples


def reference_last_word(model, ids, examples, block_size):
    """([right or not, per example], summed NLL of the last words), one plain forward per
    last-word token, from the tokens before it that fit in the example's window."""
    right, nll = [], 0.0
    for start, target_start, end in examples:
        window_start = max(start, end - 1 - block_size)
        logits = [last_logits(model, ids[window_start:t]) for t in range(target_start, end)]
        right.append(all(lg.argmax().item() == ids[t].item() for lg, t in zip(logits, range(target_start, end))))
        nll += sum(F.cross_entropy(lg[None], ids[t:t + 1]).item() for lg, t in zip(logits, range(target_start, end)))
    return right, nll


def test_lambada_last_word_by_hand():
    """Accuracy and summed last-word NLL equal a direct loop, batched or not."""
    model = sharp()
    ids, examples = lambada_examples(model)
    right, nll = reference_last_word(model, ids, examples, 8)
    assert right == [True, False, False]
    for batch_size in (1, 3):  # 3: one padded batch of different lengths
        got_right, got_nll = eval_script.lambada_last_word(model, ids, examples, 8, batch_size, "cpu", NOCTX)
        assert got_right == 1 and got_nll == pytest.approx(nll, rel=1e-5)
    # the second example's first token alone is right (the third's is not): judging the first
    # token only would have counted the second example right; its NLL is the first token's only
    first_token_only = [[s, t, t + 1] for s, t, _ in examples[1:]]
    got_right, got_nll = eval_script.lambada_last_word(model, ids, first_token_only, 8, 2, "cpu", NOCTX)
    assert got_right == 1 and got_nll == pytest.approx(reference_last_word(model, ids, first_token_only, 8)[1],
                                                       rel=1e-5)
    assert got_nll < nll


def test_lambada_prepared_by_prepare_py(tmp_path):
    """eval.py on what prepare.py lambada writes (GPT-2 BPE, offsets in meta.json), against a
    direct loop: each last-word token predicted from exactly the tokens before it in the window."""
    import prepare
    texts = ["The cat sat on the mat and looked at the dog", "She opened the door and saw her brother",
             "A long time ago in a galaxy far far away there lived a Jedi knight named Skywalker"]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    data_root = str(tmp_path / "data")
    prepare.main(["lambada", f"--source={tmp_path / 'src'}", f"--data_root={data_root}", "--num_proc=1"])
    meta = json.load(open(os.path.join(data_root, "lambada", "meta.json")))
    ids = np.fromfile(os.path.join(data_root, "lambada", "test.bin"), dtype=np.uint16)
    ids = torch.from_numpy(ids.astype(np.int64))
    B = 12  # shorter than the third example: its context is cropped
    model = sharp(vocab_size=50304, block_size=B, n_embd=8)
    # make " dog", the first example's one-token last word, the favourite wherever the final
    # LayerNorm's bias dominates: the first example is right, the other two are not
    start, target_start, end = meta["examples"][0]
    assert end - target_start == 1
    with torch.no_grad():
        u = torch.randn(8, generator=torch.Generator().manual_seed(4))
        model.transformer.ln_f.bias.copy_(u)
        model.lm_head.weight[ids[target_start]] = u
    right, nll = reference_last_word(model, ids, meta["examples"], B)
    assert right == [True, False, False]
    got_right, got_nll = eval_script.lambada_last_word(model, ids, meta["examples"], B, 2, "cpu", NOCTX)
    assert got_right == 1 and got_nll == pytest.approx(nll, rel=1e-5)
    ckpt_dir = tmp_path / "bpe"
    ckpt_dir.mkdir()
    save_checkpoint({"model": model.state_dict(), "model_args": asdict(model.config),
                     "meta": {"tokenizer": "gpt2", "vocab_size": 50257}}, str(ckpt_dir / "ckpt.pt"))
    out = tmp_path / "r.json"
    assert run_in_process(eval_script.main, f"--ckpt={ckpt_dir}", "--datasets=lambada", f"--data_root={data_root}",
                          "--device=cpu", f"--json={out}") == 0
    result = json.loads(out.read_text())[str(ckpt_dir)]["lambada"]
    assert result["tokens"] == len(ids) - 1 and result["acc"] == pytest.approx(1 / 3) and result["examples"] == 3
    assert result["word_ppl"] == pytest.approx(math.exp(nll / 3), rel=1e-5)  # per word, as lm-evaluation-harness


# ---------------------------------------------------------------- 3. the scripts end to end

def write_dataset(data_root, name, split, ids, **meta):
    os.makedirs(os.path.join(data_root, name), exist_ok=True)
    np.asarray(ids, dtype=np.uint16).tofile(os.path.join(data_root, name, f"{split}.bin"))
    meta = {"tokenizer": "char", "vocab_size": V, "chars": CHARS, f"{split}_tokens": len(ids), **meta}
    with open(os.path.join(data_root, name, "meta.json"), "w") as f:
        json.dump(meta, f)


@pytest.fixture(scope="module")
def sharp_setup(tmp_path_factory):
    """A checkpoint of sharp() with a character tokenizer, and a data_root holding 'tiny' (a val
    split) and 'tinylambada' (the three examples above in test.bin, with their offsets)."""
    root = tmp_path_factory.mktemp("sharp")
    model = sharp()
    ckpt_dir = root / "sharp-ctx"
    ckpt_dir.mkdir()
    save_checkpoint({"model": model.state_dict(), "model_args": asdict(model.config),
                     "meta": {"tokenizer": "char", "vocab_size": V, "chars": CHARS}}, str(ckpt_dir / "ckpt.pt"))
    data_root = str(root / "data")
    tiny = torch.randint(V, (300,), generator=torch.Generator().manual_seed(2))
    write_dataset(data_root, "tiny", "val", tiny.tolist())
    ids, examples = lambada_examples(model)
    write_dataset(data_root, "tinylambada", "test", ids.tolist(), examples=examples)
    return model, str(ckpt_dir), data_root, tiny, ids


def test_eval_script_table_and_json(sharp_setup, tmp_path):
    model, ckpt_dir, data_root, tiny, lambada_ids = sharp_setup
    out = tmp_path / "results.json"
    proc = run_script("eval.py", f"--ckpt={ckpt_dir}", "--datasets=tiny,tinylambada", f"--data_root={data_root}",
                      "--stride=3", "--batch_size=4", "--device=cpu", f"--json={out}")
    results = json.loads(out.read_text())[ckpt_dir]
    for name, ids in (("tiny", tiny), ("tinylambada", lambada_ids)):
        total, n = reference_nll(model, ids, 8, 3)
        assert results[name]["tokens"] == n == len(ids) - 1
        assert results[name]["ppl"] == pytest.approx(math.exp(total / n), rel=1e-5)
    assert "acc" not in results["tiny"] and results["tinylambada"]["acc"] == pytest.approx(1 / 3)
    _, nll = reference_last_word(model, lambada_ids, lambada_examples(model)[1], 8)
    assert results["tinylambada"]["word_ppl"] == pytest.approx(math.exp(nll / 3), rel=1e-5)
    # Table 2 as the paper lays it out: one ppl column per dataset, LAMBADA's being its per-word
    # last-word ppl (its token-level ppl stays in the JSON), and their mean; then one line per column
    header, row, *notes = proc.stdout.strip().splitlines()
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    assert header.split(" | ")[0].strip() == "model" and header.split(" | ")[-1] == "avg ppl"
    assert [c.strip() for c in header.split(" | ")[1:-1]] == ["tiny ppl", "tinylambada word ppl", "tinylambada acc"]
    cells = [c.strip() for c in row.split(" | ")]
    assert cells[0] == f"sharp-ctx ({n_params:.4g}M)"
    assert float(cells[1]) == pytest.approx(results["tiny"]["ppl"], abs=0.006)
    assert float(cells[2]) == pytest.approx(results["tinylambada"]["word_ppl"], abs=0.006) and cells[3] == "33.33%"
    avg = (results["tiny"]["ppl"] + results["tinylambada"]["word_ppl"]) / 2
    assert float(cells[-1]) == pytest.approx(avg, abs=0.006)
    assert abs(avg - (results["tiny"]["ppl"] + results["tinylambada"]["ppl"]) / 2) > 0.01  # not the token-level mix
    assert [n.split(":")[0].strip() for n in notes] == ["tiny", "tinylambada", "avg ppl"]
    assert "token-level perplexity of the val split, sliding window (stride 3)" in notes[0]
    assert "per word" in notes[1] and "word ppl for LAMBADA" in notes[2]


def test_eval_errors(sharp_setup, tmp_path, capsys):
    _, ckpt_dir, data_root, _, _ = sharp_setup
    cases = [
        ([f"--ckpt={ckpt_dir}", "--datasets=wikitext"], "python prepare.py wikitext"),
        ([f"--ckpt={tmp_path / 'nowhere'}", "--datasets=tiny"], "python train.py --out_dir="),
        ([f"--ckpt={ckpt_dir}", "--datasets=tiny", "--stride=9"], "stride <= block_size"),
    ]
    write_dataset(str(tmp_path), "tiny", "val", [1, 2, 3], tokenizer="gpt2")  # same ids, another tokenizer
    cases.append(([f"--ckpt={ckpt_dir}", "--datasets=tiny", f"--data_root={tmp_path}"],
                  "reads char tokens (50 ids), but 'tiny' is gpt2 tokens"))
    write_dataset(str(tmp_path), "shuffled", "val", [1, 2, 3], chars=CHARS[::-1])  # same ids, other characters
    cases.append(([f"--ckpt={ckpt_dir}", "--datasets=shuffled", f"--data_root={tmp_path}"],
                  "and 'shuffled' have different vocabularies of char tokens (50 ids)"))
    for args, fix in cases:
        if not any(a.startswith("--data_root") for a in args):
            args = args + [f"--data_root={data_root}"]
        assert run_in_process(eval_script.main, *args, "--device=cpu") == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and fix in err, err


# ---------------------------------------------------------------- 4. plots

@pytest.fixture(scope="module")
def runs(char_data, tmp_path_factory):
    """Two tiny train.py runs on shakespeare_char, ContextLM (one encoder layer) and GPT-2, the
    first one resumed so that its log.jsonl repeats iteration 4."""
    root = tmp_path_factory.mktemp("runs")
    base = dict(train.DEFAULTS, dataset="shakespeare_char", data_root=char_data, batch_size=2, block_size=16,
                n_layer=2, n_head=2, n_embd=16, max_iters=4, eval_interval=2, eval_iters=2,
                gradient_accumulation_steps=1, warmup_iters=1, lr_decay_iters=6, compile=False, device="cpu")
    ctx, gpt = str(root / "contextlm"), str(root / "gpt2")
    train.train(dict(base, out_dir=ctx, n_ctx_layer=2, n_enc_layer=1))
    train.train(dict(base, out_dir=ctx, n_ctx_layer=2, n_enc_layer=1, init_from="resume", max_iters=6))
    train.train(dict(base, out_dir=gpt, n_ctx_layer=0))
    return ctx, gpt


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n" and 1000 < os.path.getsize(path) < 100_000


def test_eval_rows_keep_the_last_row_per_iteration(runs, tmp_path):
    ctx, _ = runs
    raw = [json.loads(line) for line in open(os.path.join(ctx, "log.jsonl"))]
    assert [r["iter"] for r in raw if "val_loss" in r] == [0, 2, 4, 4, 6]  # the resume repeated 4
    rows = plot.eval_rows(ctx)
    assert [r["iter"] for r in rows] == [0, 2, 4, 6]
    assert rows[2] == [r for r in raw if "val_loss" in r][3]
    # a run resumed from an older checkpoint: iterations 4-6 logged again, the later rows win;
    # training rows (no val_loss) and a line cut short by a crash are left out
    log = tmp_path / "log.jsonl"
    lines = [{"iter": i, "tokens": 10 * i, "flops": 100 * i, "val_loss": 5.0 - i / 10} for i in (0, 2, 4, 6)]
    lines += [{"iter": 5, "train_loss": 1.0}] + [{"iter": i, "tokens": 10 * i, "flops": 100 * i, "val_loss": 1.0 + i}
                                                 for i in (4, 6, 8)]
    log.write_text("\n".join(json.dumps(r) for r in lines) + '\n{"iter": 9, "val_lo\n')
    assert [(r["iter"], r["val_loss"]) for r in plot.eval_rows(str(tmp_path))] == \
        [(0, 5.0), (2, 4.8), (4, 5.0), (6, 7.0), (8, 9.0)]


def last_eval_rows(run_dir):
    """The evaluation rows of run_dir/log.jsonl read here, directly: the last row of an iteration wins."""
    rows = {}
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        for row in map(json.loads, f):
            if "val_loss" in row:
                rows[row["iter"]] = row
    return [rows[it] for it in sorted(rows)]


def test_plot_curves(runs, tmp_path):
    """What was drawn: in each panel, each run's val_loss against iter, tokens and flops exactly
    as its log.jsonl has them (the resumed run's second iteration 4), labelled as asked; in a
    fourth, the ContextLM's context_ratio against iter (the GPT has none)."""
    out = tmp_path / "curves.png"
    run_script("plot.py", "curves", f"--runs={','.join(runs)}", "--labels=ContextLM,GPT-2", f"--out={out}")
    assert is_png(out)
    fig = plot.plot_curves(dict(plot.CURVES_DEFAULTS, runs=",".join(runs), labels="ContextLM,GPT-2",
                                out=str(tmp_path / "in_process.png")))
    assert [ax.get_xlabel() for ax in fig.axes] == ["iterations", "training tokens", "training FLOPs", "iterations"]
    assert [r["iter"] for r in last_eval_rows(runs[0])] == [0, 2, 4, 6]
    for ax, key in zip(fig.axes, ("iter", "tokens", "flops")):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["ContextLM", "GPT-2"]
        for line, run in zip(lines, runs, strict=True):
            rows = last_eval_rows(run)
            assert list(line.get_xdata()) == [r[key] for r in rows]
            assert list(line.get_ydata()) == [r["val_loss"] for r in rows]
    ratio_lines = fig.axes[3].get_lines()
    assert [line.get_label() for line in ratio_lines] == ["ContextLM"]
    rows = last_eval_rows(runs[0])
    assert list(ratio_lines[0].get_xdata()) == [r["iter"] for r in rows]
    assert list(ratio_lines[0].get_ydata()) == [r["context_ratio"] for r in rows]


def test_plot_attention(runs, tmp_path):
    """What was drawn: per checkpoint, the mean over heads of layer 0's attention probabilities
    for the prompt (rows sum to 1, nothing above the diagonal), its characters as tick labels."""
    from checkpoint import load_checkpoint, model_from_checkpoint
    out = tmp_path / "attention.png"
    proc = run_script("plot.py", "attention", f"--ckpt={','.join(runs)}", "--prompt=First Citizen:",
                      "--layer=0", f"--out={out}", "--device=cpu")
    assert is_png(out) and "wrote" in proc.stdout
    fig = plot.plot_attention(dict(plot.ATTENTION_DEFAULTS, ckpt=",".join(runs), prompt="First Citizen:", layer=0,
                                   out=str(tmp_path / "in_process.png"), device="cpu"))
    panels = [ax for ax in fig.axes if ax.get_images()]  # the others are colour bars
    labels = list("First␣Citizen:")  # character tokens, the space made visible
    for ax, run, kind in zip(panels, runs, ("encoder", "decoder"), strict=True):
        drawn = ax.get_images()[0].get_array()
        checkpoint = load_checkpoint(run)
        ids = torch.tensor([[checkpoint["meta"]["chars"].index(ch) for ch in "First Citizen:"]])
        expected = plot.attention_weights(model_from_checkpoint(checkpoint).eval(), ids, 0)[0].mean(dim=0).numpy()
        assert drawn.shape == (14, 14) and np.allclose(drawn, expected, atol=1e-6)
        assert np.allclose(drawn.sum(axis=1), 1, atol=1e-5) and (np.triu(drawn, 1) == 0).all()
        assert [t.get_text() for t in ax.get_xticklabels()] == labels == [t.get_text() for t in ax.get_yticklabels()]
        assert ax.get_title().startswith(f"{os.path.basename(run)}: token layer 0 of 0..1 ({kind})")


def test_plot_positions(runs, char_data, tmp_path):
    """eval.py --by_position on the two tiny runs (GPT-2 first), then plot.py positions. The mean
    loss over positions is the perplexity of non-overlapping windows of the same tokens."""
    ctx, gpt = runs
    out = tmp_path / "positions.json"
    proc = run_script("eval.py", f"--ckpt={gpt},{ctx}", "--datasets=shakespeare_char", f"--data_root={char_data}",
                      "--by_position=True", "--max_tokens=641", "--stride=16", "--device=cpu", f"--json={out}")
    results = json.loads(out.read_text())
    assert list(results) == [gpt, ctx]
    for run in (gpt, ctx):
        r = results[run]["shakespeare_char"]
        assert len(r["loss_by_position"]) == 16 and r["position_windows"] == 40  # (641 - 1) / 16
        assert math.exp(sum(r["loss_by_position"]) / 16) == pytest.approx(r["ppl"], rel=1e-5)
    header = next(line for line in proc.stdout.splitlines() if line.startswith("shakespeare_char: loss at context"))
    assert [c.strip() for c in header.split(" | ")[1:]] == ["1", "2-3", "4-7", "8-15", "16"]  # tokens of context
    png = tmp_path / "positions.png"
    run_script("plot.py", "positions", f"--json={out}", "--labels=GPT-2,ContextLM", f"--out={png}")
    assert is_png(png)
    assert plot.position_bins(16, 40) == [(t, t + 1) for t in range(16)]
    bins = plot.position_bins(1024, 40)  # log-spaced, covering every position once
    assert bins[0] == (0, 1) and bins[-1][1] == 1024 and all(a < b == c for (a, b), (c, _) in zip(bins, bins[1:]))
    assert len(bins) < 40 and bins[-1][1] - bins[-1][0] > 100


def test_attention_weights_reproduce_the_layer_output():
    model = sharp(n_layer=3, n_enc_layer=1, block_size=16)
    idx = torch.randint(V, (2, 13), generator=torch.Generator().manual_seed(3))
    for layer in range(3):  # the encoder layer, then decoder layers (whose input carries ĉ)
        attn = model.transformer.h[layer].attn
        weights = plot.attention_weights(model, idx, layer)
        B, H, T, _ = weights.shape
        assert (B, H, T) == (2, 2, 13) and weights.shape[-1] == 13
        assert torch.allclose(weights.sum(-1), torch.ones(B, H, T), atol=1e-6)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        assert (weights[..., ~causal] == 0).all() and (weights[..., causal] > 0).all()
        # the layer's real input and output, and its output rebuilt from the weights
        seen = []
        handle = attn.register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
        with torch.no_grad():
            model(idx)
        handle.remove()
        x, y = seen[0]
        with torch.no_grad():
            v = attn.c_attn(x).split(attn.n_embd, dim=2)[2].view(B, T, H, -1).transpose(1, 2)
            rebuilt = attn.c_proj((weights @ v).transpose(1, 2).reshape(B, T, attn.n_embd))
        assert torch.allclose(rebuilt, y, atol=1e-5)
        assert not torch.allclose(weights, torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None],
                                  atol=1e-2)  # not merely uniform over the past


def test_resolve_layer_and_plot_errors(runs, tmp_path, capsys):
    cfg = GPTConfig(n_layer=3, n_enc_layer=1)
    assert plot.resolve_layer(0, cfg) == (0, "encoder")
    assert plot.resolve_layer(1, cfg) == (1, "decoder")
    assert plot.resolve_layer(-1, cfg) == (2, "decoder")
    with pytest.raises(UserError, match="out of range"):
        plot.resolve_layer(3, cfg)
    cases = [
        (["curves", f"--runs={tmp_path}"], "python train.py --out_dir="),
        (["curves", f"--runs={','.join(runs)}", "--labels=one"], "one label per run"),
        (["attention", f"--ckpt={tmp_path}", "--prompt=hi"], "python train.py"),
        (["attention", f"--ckpt={runs[0]}", "--prompt=hi", "--layer=5"], "out of range"),
        (["attention", f"--ckpt={runs[0]}"], "--prompt=TEXT"),
        (["histogram"], "python plot.py {curves,attention,positions,inside}"),
        (["positions"], "--json=FILE written by `python eval.py --by_position=True"),
        (["positions", f"--json={tmp_path / 'none.json'}"], "give a file eval.py wrote"),
        (["positions", f"--json={tmp_path / 'one.json'}"], "for one run only: evaluate two or more checkpoints"),
        (["positions", f"--json={tmp_path / 'ppl.json'}"], "none: run eval.py with --by_position=True"),
    ]
    (tmp_path / "one.json").write_text(json.dumps({"gpt": {"owt": {"loss_by_position": [3.0, 2.0]}}}))
    (tmp_path / "ppl.json").write_text(json.dumps({"gpt": {"owt": {"ppl": 20.0}}}))
    for args, fix in cases:
        assert run_in_process(plot.main, *args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and fix in err, err
