"""Acceptance tests of export.py, issue 25 (docs/export.md): a run written as a Hugging Face folder
loads with AutoModelForCausalLM alone (in a process where this repository cannot be imported) and
gives our logits to 1e-5, on GPT-2's block and Pythia's, ContextLM and GPT, at lengths that are
and are not multiples of w; its generate() gives our greedy tokens, past block_size too, and
with padded batches; a GPT exports as a stock GPT2LMHeadModel or GPTNeoXForCausalLM that
from_pretrained reads back as the same weights; the tokenizers are the run's; lm-evaluation-
harness's hf model scores the folder as eval.py --tasks scores the run; sample.py and eval.py
read the folder as the run; a folder is replaced whole or not at all (the one-line refusals are
rows of tests/test_bad_input.py). Tiny models, CPU, offline."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from conftest import assert_one_line_error, cli, run_in_process, sharp_model, write_task
from torch.nn import functional as F

from checkpoint import EXPORT_MODEL_TYPE, EXPORT_TOKENIZER, model_from_hf, pretrained_tokenizer, save_checkpoint
from configurator import why_not_own
from variants import BACKBONES
from dataset import Tokenizer, load_meta, same_tokenizer
import eval as eval_script
import export
import sample
from engine import Engine
from pretrained import from_pretrained
from model import GPT

CHARS = list(" \n" + "abcdefghijklmnopqrstuvwxyz" + "?.")
CHAR_META = {"tokenizer": "char", "vocab_size": len(CHARS), "chars": CHARS}
GPT2_META = {"tokenizer": "gpt2", "vocab_size": 50257}
PYTHIA = BACKBONES["pythia"] | dict(bias=True)
# a tiny ContextLM whose chunks (w=3) do not divide its window (16)
SMALL = dict(block_size=16, vocab_size=len(CHARS), n_layer=2, n_head=2, n_embd=16, chunk_size=3, n_ctx_layer=2,
             n_enc_layer=1)
LENGTHS = (16, 7, 6, 1)  # the window, and lengths that are and are not multiples of w


def export_run(root, model, meta, *args):
    """model written as a train.py run in root/run, exported by export.py to root/hf: (run, hf)."""
    run, hf = root / "run", root / "hf"
    run.mkdir(parents=True)
    save_checkpoint({"model": model.state_dict(), "model_args": asdict(model.config), "meta": meta},
                           str(run / "ckpt.pt"))
    assert run_in_process(export.main, f"--out_dir={run}", f"--hf_dir={hf}", *args) == 0
    return run, hf


def assert_export_own(hf):
    """Every file in the folder is one export.py knows it writes (EXPORT_FILES), its config.json
    its own: --overwrite=True may replace the folder."""
    assert why_not_own(str(hf), export.EXPORT_FILES, ("config.json", export.is_export_config)) is None, os.listdir(hf)


def load_hf(hf):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(hf, trust_remote_code=True).eval()


def max_logit_difference(model, hf_model, idx):
    """The largest |our logit - theirs| over every position of idx (B, T), float32."""
    with torch.no_grad():
        ours, theirs = model(idx, all_logits=True)[0], hf_model(idx).logits
    assert theirs.shape == ours.shape and theirs.abs().max() > 1  # spread logits: the tolerance means something
    return (ours - theirs).abs().max().item()


def assert_greedy_equal(model, hf_model, prompt, n, vocab_size, eot=None):
    """generate() of the folder's model (greedy, as its generation_config.json says) gives the tokens
    of our generate(temperature=0) over the tokenizer's ids."""
    ours = Engine(model).generate(prompt, n, temperature=0, vocab_size=vocab_size, stop_token=eot)
    theirs = hf_model.generate(prompt, max_new_tokens=n, do_sample=False)
    assert theirs.tolist() == ours.tolist()
    return ours


# ---------------------------------------------------------------- 1. equal logits, greedy tokens

CASES = {  # name: (GPTConfig fields over SMALL, what the folder holds)
    "contextlm gpt2": (dict(tie_embeddings=False), "ContextLMForCausalLM"),
    "contextlm gpt2, no encoder, tied": (dict(n_enc_layer=0), "ContextLMForCausalLM"),
    "contextlm pythia": (PYTHIA, "ContextLMForCausalLM"),
    "gpt gpt2": (dict(n_ctx_layer=0), "GPT2LMHeadModel"),
    "gpt gpt2, no biases": (dict(n_ctx_layer=0, bias=False), "GPT2LMHeadModel"),
    "gpt pythia": (PYTHIA | dict(n_ctx_layer=0), "GPTNeoXForCausalLM"),
    "gpt pythia, full rotary, sequential, tied, no biases": (PYTHIA | dict(
        n_ctx_layer=0, rotary_pct=1.0, parallel_residual=False, tie_embeddings=True, bias=False), "GPTNeoXForCausalLM"),
    "gpt, learned positions, parallel": (dict(n_ctx_layer=0, parallel_residual=True), "ContextLMForCausalLM"),
}


@pytest.mark.parametrize("case", CASES)
def test_exported_model_gives_our_logits_and_tokens(case, tmp_path):
    """Each case's folder holds what it should (a stock model and no code, or the remote code),
    loads through AutoModelForCausalLM, and gives our logits at every position to 1e-5 at each
    length in LENGTHS, with labels our shifted cross-entropy, and our greedy tokens: past
    block_size for a ContextLM, whose generate() recomputes the window, up to it for a stock one."""
    fields, expected = CASES[case]
    model = sharp_model(SMALL | fields, seed=len(case))
    _, hf = export_run(tmp_path, model, CHAR_META)
    config = json.loads((hf / "config.json").read_text())
    assert config["architectures"] == [expected] and config[EXPORT_TOKENIZER] == CHAR_META
    remote = expected == "ContextLMForCausalLM"
    assert ("auto_map" in config) == remote and (hf / "model.py").exists() == remote
    assert not (hf / "tokenizer.json").exists()  # characters: no tokenizer
    assert_export_own(hf)
    hf_model = load_hf(hf)
    assert type(hf_model).__name__ == expected
    idx = torch.randint(0, len(CHARS), (2, 16), generator=torch.Generator().manual_seed(0))
    for T in LENGTHS:
        assert max_logit_difference(model, hf_model, idx[:, :T]) <= 1e-5, T
    with torch.no_grad():
        logits = model(idx, all_logits=True)[0]
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten())
        assert hf_model(idx, labels=idx).loss.item() == pytest.approx(loss.item(), abs=1e-5)
    prompt = idx[:1, :4]
    assert_greedy_equal(model, hf_model, prompt, 20 if remote else 12, len(CHARS))


def test_padded_batches_are_each_row_alone(tmp_path):
    """A ContextLM folder's forward and generate() take a batch of prompts padded on the left (as
    generate() wants) or the right: each row's logits and tokens are those of the row alone."""
    model = sharp_model(SMALL | dict(tie_embeddings=False), seed=3)
    _, hf = export_run(tmp_path, model, CHAR_META)
    hf_model = load_hf(hf)
    a, b = torch.tensor([[5, 9, 2, 7, 1, 3, 8]]), torch.tensor([[4, 6, 2]])
    pad = torch.zeros(1, 4, dtype=torch.long)
    with torch.no_grad():
        for x, mask, rows in [(torch.cat([a, torch.cat([pad, b], 1)]), [[1] * 7, [0] * 4 + [1] * 3], slice(4, 7)),
                              (torch.cat([a, torch.cat([b, pad], 1)]), [[1] * 7, [1] * 3 + [0] * 4], slice(0, 3))]:
            logits = hf_model(x, attention_mask=torch.tensor(mask)).logits
            torch.testing.assert_close(logits[0], model(a, all_logits=True)[0][0], rtol=0, atol=1e-5)
            torch.testing.assert_close(logits[1, rows], model(b, all_logits=True)[0][0], rtol=0, atol=1e-5)
        left_padded = torch.cat([a, torch.cat([pad, b], 1)])
        out = hf_model.generate(left_padded, attention_mask=torch.tensor([[1] * 7, [0] * 4 + [1] * 3]),
                                max_new_tokens=12, do_sample=False, pad_token_id=0)
    for row, prompt in zip(out, (a, b)):
        expected = Engine(model).generate(prompt, 12, temperature=0)[0]
        assert row[-len(expected):].tolist() == expected.tolist()


def test_stock_export_reads_back_as_the_same_weights(tmp_path):
    """from_pretrained reads a stock folder back as exactly the GPT that was exported: the
    export is gpt2_weights and neox_weights run backwards."""
    for backbone, fields in (("gpt2", {}), ("pythia", PYTHIA)):
        # (GPTConfig's defaults where the fields mean nothing without a predictor, as from_pretrained leaves them)
        model = sharp_model(SMALL | fields | dict(n_ctx_layer=0, chunk_size=4, n_enc_layer=0), seed=1)
        _, hf = export_run(tmp_path / backbone, model, CHAR_META)
        back = from_pretrained(str(hf), dict(n_ctx_layer=0))
        assert asdict(back.config) == asdict(model.config)
        expected = model.state_dict()
        assert back.state_dict().keys() == expected.keys()
        assert all(torch.equal(v, expected[k]) for k, v in back.state_dict().items())


# ---------------------------------------------------------------- 2. BPE tokenizers, and a process without this repo

TEXTS = ["Hello, world! It's 2026.", "  two  spaces\nand a new line <|endoftext|> after", "First Citizen: hear me"]


@pytest.fixture(scope="module")
def gpt2_export(tmp_path_factory):
    """A ContextLM on GPT-2 BPE (vocabulary padded to 50304, head tied), exported: (model, run, hf)."""
    model = sharp_model(SMALL | dict(vocab_size=50304, n_embd=16), seed=2)
    return model, *export_run(tmp_path_factory.mktemp("gpt2_export"), model, GPT2_META)


def test_gpt2_export_loads_without_this_repository(gpt2_export, tmp_path):
    """In a Python whose cwd and sys.path do not hold this repository (python -I, run elsewhere),
    transformers alone loads the folder: the tokenizer gives tiktoken's ids, the model our logits.
    The tied head is saved once and tied again; generation never picks the 47 padding ids."""
    model, _, hf = gpt2_export
    out = tmp_path / "out.pt"
    code = f"""
import importlib.util, torch
assert importlib.util.find_spec("model") is None and importlib.util.find_spec("checkpoint") is None  # not this repo
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({str(hf)!r})
model = AutoModelForCausalLM.from_pretrained({str(hf)!r}, trust_remote_code=True).eval()
assert model.model.lm_head.weight is model.model.transformer.wte.weight
ids = [tokenizer(text).input_ids for text in {TEXTS!r}]
with torch.no_grad():
    logits = model(torch.tensor([ids[0]])).logits
torch.save(dict(ids=ids, logits=logits), {str(out)!r})
"""
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = torch.load(out, weights_only=True)
    tokenizer = Tokenizer(GPT2_META)
    assert got["ids"] == [tokenizer.encode(text) for text in TEXTS]
    with torch.no_grad():
        expected = model(torch.tensor([got["ids"][0]]), all_logits=True)[0]
    torch.testing.assert_close(got["logits"], expected, rtol=0, atol=1e-5)
    from safetensors.torch import load_file
    assert "model.lm_head.weight" not in load_file(hf / "model.safetensors")
    generation = json.loads((hf / "generation_config.json").read_text())
    assert generation["suppress_tokens"] == list(range(50257, 50304)) and generation["eos_token_id"] == 50256
    assert pretrained_tokenizer(str(hf)) == {"tokenizer": "gpt2"}
    assert EXPORT_MODEL_TYPE == load_hf(hf).config.model_type == "contextlm"
    assert_export_own(hf)


def test_neox_export_has_the_run_tokenizer(neox_tokenizer_dir, tmp_path):
    """A ContextLM on Pythia's block and NeoX BPE: its folder's tokenizer encodes and decodes as
    the run's, sample.py and eval.py read it from the folder as the same vocabulary, and the
    model gives our logits and greedy tokens."""
    from transformers import AutoTokenizer
    meta = {"tokenizer": "neox", "vocab_size": 302, "tokenizer_path": str(neox_tokenizer_dir)}
    model = sharp_model(SMALL | PYTHIA | dict(vocab_size=320), seed=4)
    _, hf = export_run(tmp_path, model, meta)
    ours, theirs = Tokenizer(meta), AutoTokenizer.from_pretrained(hf)
    for text in TEXTS:
        ids = ours.encode(text)
        assert theirs(text).input_ids == ids and theirs.decode(ids) == ours.decode(ids)
    exported = pretrained_tokenizer(str(hf))
    assert exported == {"tokenizer": "neox", "tokenizer_path": str(hf)} and same_tokenizer(exported, meta)
    assert_export_own(hf)
    hf_model = load_hf(hf)
    idx = torch.tensor([ours.encode(TEXTS[2])])
    assert max_logit_difference(model, hf_model, idx) <= 1e-5
    assert_greedy_equal(model, hf_model, idx[:, :3], 20, 302, eot=ours.eot_token)


# ---------------------------------------------------------------- 3. lm-evaluation-harness's hf model

def test_harness_hf_model_scores_as_eval_py(gpt2_export, tmp_path, capsys):
    """lm_eval's `hf` model on the folder (pretrained=DIR,trust_remote_code=True) and eval.py --tasks
    on the run: the same acc and acc_norm on a local multiple-choice task, one question longer
    than the window (cut on the left by both)."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    _, run, hf = gpt2_export
    questions = [("Is it day or night?", ["day", "night", "dusk"]), ("Cats chase", ["mice", "dogs"]),
                 ("What do cats chase when they are bored at home on a long rainy afternoon?", ["mice", "yarn"]),
                 ("Red, green and", ["blue", "seven", "the"])]
    write_task(str(tmp_path), "tiny_mc", [{"question": q, "choices": c} for q, c in questions],
               output_type="multiple_choice", doc_to_text="{{question}}", doc_to_target=0,
               doc_to_choice="{{choices}}", metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}])
    results = tmp_path / "results.json"
    status, _, err = cli(capsys, eval_script, f"--ckpt={run}", "--tasks=tiny_mc", f"--include_path={tmp_path}",
                         "--device=cpu", "--batch_size=2", f"--json={results}")
    assert status == 0, err
    ours = json.loads(results.read_text())[str(run)]["tiny_mc"]
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={hf},trust_remote_code=True,dtype=float32",
                                  tasks=["tiny_mc"], task_manager=TaskManager(include_path=str(tmp_path),
                                                                              include_defaults=False),
                                  device="cpu", batch_size=2)
    theirs = out["results"]["tiny_mc"]
    assert out["n-samples"]["tiny_mc"]["effective"] == ours["n"] == 4
    assert (theirs["acc,none"], theirs["acc_norm,none"]) == (ours["acc"], ours["acc_norm"])
    assert 0 < ours["acc"] < 1 or 0 < ours["acc_norm"] < 1  # not a score any model would get


# ---------------------------------------------------------------- 4. sample.py and eval.py read the folder

def test_sample_and_eval_read_the_folder_as_the_run(char_data, tmp_path, capsys):
    """A character-level ContextLM's folder (its characters in config.json): sample.py
    --init_from=DIR prints what --out_dir=RUN prints, past block_size, and eval.py --ckpt=DIR
    scores what --ckpt=RUN scores."""
    meta = load_meta(char_data, "shakespeare_char")
    model = sharp_model(SMALL | dict(vocab_size=meta["vocab_size"], tie_embeddings=False), seed=6)
    run, hf = export_run(tmp_path, model, meta)
    args = ["--start=ROMEO:", "--temperature=0", "--num_samples=2", "--max_new_tokens=24", "--device=cpu"]
    printed = [cli(capsys, sample, source, *args) for source in (f"--out_dir={run}", f"--init_from={hf}")]
    assert printed[0][0] == printed[1][0] == 0 and printed[0][1] == printed[1][1]
    results = tmp_path / "results.json"
    status, _, err = cli(capsys, eval_script, f"--ckpt={run},{hf}", "--datasets=shakespeare_char",
                         f"--data_root={char_data}", "--max_tokens=300", "--device=cpu", f"--json={results}")
    assert status == 0, err
    scores = json.loads(results.read_text())
    assert scores[str(hf)]["shakespeare_char"]["ppl"] == scores[str(run)]["shakespeare_char"]["ppl"]
    loaded = model_from_hf(str(hf), {"n_ctx_layer": 0, "dropout": 0.1})  # an export keeps its predictor
    assert loaded.config.n_ctx_layer == 2 and loaded.config.dropout == 0.1


# ---------------------------------------------------------------- 5. bad input

def folder_bytes(folder):
    """{path under folder: its bytes, or None for a folder}: all a folder holds, to compare."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path, capsys, monkeypatch):
    """--overwrite=True replaces an earlier export only once the new one is complete: a write that
    fails halfway (the weights written, the tokenizer not) is one line and leaves the old folder as
    it was and no temporary folder; one that succeeds says what it wrote. (Each one-line refusal
    is a row of tests/test_bad_input.py.)"""
    model = sharp_model(SMALL, seed=7)
    run, hf = export_run(tmp_path, model, CHAR_META)
    before = folder_bytes(hf)

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "save_tokenizer", disk_full)
    status, _, err = cli(capsys, export, f"--out_dir={run}", f"--hf_dir={hf}", "--overwrite=True")
    assert_one_line_error(status, err, f"cannot write {hf} (No space left on device)", "nothing was written")
    assert folder_bytes(hf) == before and sorted(os.listdir(tmp_path)) == ["hf", "run"]
    monkeypatch.undo()
    status, out, err = cli(capsys, export, f"--out_dir={run}", f"--hf_dir={hf}", "--overwrite=True")
    assert status == 0, err
    assert sorted(os.listdir(hf)) == sorted(before) and sorted(os.listdir(tmp_path)) == ["hf", "run"]
    wrote, check, tokenizer = out.strip().splitlines()
    assert wrote.startswith(f"wrote {hf}: a ContextLM") and tokenizer.startswith("no tokenizer: a character-level")
    assert check == "loaded back by transformers, its logits are within 0 of the run's on 16 tokens"  # the same code


def test_overwrite_replaces_only_a_folder_export_wrote(gpt2_export, tmp_path, capsys):
    """Issue 34: `--hf_dir=data --overwrite=True` replaced every prepared dataset in data/, and
    `--hf_dir=../other-project` a whole project. Now a folder holding anything export.py does not
    write (a subfolder, a file of the user's beside an export, a Hugging Face model that
    save_pretrained wrote, whose config.json does not name the run's tokenizer) is refused in one
    line naming the fix, and every byte of it is as it was; an empty folder is written into; an
    earlier export, of another kind too, is replaced whole: a GPT-2 export's tokenizer files go
    with it, nothing of it is left beside the character-level ContextLM written over it."""
    run, _ = export_run(tmp_path, sharp_model(SMALL, seed=8), CHAR_META)
    data = tmp_path / "data"
    (data / "shakespeare_char").mkdir(parents=True)
    (data / "shakespeare_char" / "meta.json").write_text('{"tokenizer": "char"}')
    (data / "tinyshakespeare.txt").write_text("First Citizen:\n")
    project = tmp_path / "other-project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "model.py").write_text("print('mine')\n")
    (project / "config.json").write_text("{}")
    card = tmp_path / "with-card"
    shutil.copytree(gpt2_export[2], card)
    (card / "README.md").write_text("# my model card\n")
    from transformers import GPT2Config, GPT2LMHeadModel
    stock = tmp_path / "stock"
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)).save_pretrained(stock)
    for folder, why in ((data, "it holds shakespeare_char/, tinyshakespeare.txt"),
                        (project, "it holds src/"), (card, "it holds README.md"),
                        (stock, "its config.json was written by something else")):
        before = folder_bytes(folder)
        for overwrite in (True, False):
            status, _, err = cli(capsys, export, f"--out_dir={run}", f"--hf_dir={folder}", f"--overwrite={overwrite}")
            assert_one_line_error(status, err, f"--hf_dir={folder} is not a folder that export.py wrote ({why}): "
                                  "choose another --hf_dir, or empty or remove it yourself")
            assert folder_bytes(folder) == before
    assert sorted(os.listdir(tmp_path)) == ["data", "hf", "other-project", "run", "stock", "with-card"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, export, f"--out_dir={run}", f"--hf_dir={empty}")[0] == 0
    earlier = tmp_path / "earlier"
    shutil.copytree(gpt2_export[2], earlier)
    status, _, err = cli(capsys, export, f"--out_dir={run}", f"--hf_dir={earlier}")
    assert_one_line_error(status, err, f"--hf_dir={earlier} is not empty", "--overwrite=True")
    assert (earlier / "vocab.json").exists()
    assert cli(capsys, export, f"--out_dir={run}", f"--hf_dir={earlier}", "--overwrite=True")[0] == 0
    assert folder_bytes(earlier) == folder_bytes(empty)  # the same run, written over the GPT-2 export
