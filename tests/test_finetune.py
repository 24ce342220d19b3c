"""Acceptance tests of instruction tuning (docs/finetuning.md): prepare.py alpaca masks exactly
the prompts; a batch of instruction data scores each example's response as the example alone
would; train.py --init_from=DIR fine-tunes a train.py checkpoint (from its weights, lowering the
masked loss, resumable exactly) into one that sample.py and eval.py load; sample.py --template
stops at end-of-text; MT-Bench answers in the format FastChat's judge reads; one-line errors.

Tiny models on GPT-2 BPE, CPU, offline; the instruction data is written here (INSTRUCTIONS)."""

import glob
import json
import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from configurator import parse_config
from variants import BACKBONES, backbone_fields
from dataset import Tokenizer, alpaca_prompt, load_meta, open_examples, open_split
from train import get_batch, sample_offsets
import eval as eval_script
import prepare
import sample
import train
from conftest import ROOT, assert_one_line_error, cli, read_log, run_train, sharp_model, tiny_args, weights
from engine import Engine

EOT = "<|endoftext|>"
WORDS = ["apple", "river", "stone", "cloud", "music", "garden", "window", "candle", "forest", "bridge"]
# two kinds of question, with and without an input, answered in a way a tiny model learns in
# a few seconds; and one instruction that spells out the end-of-text token's text (it must stay
# text: only the code ends an example)
INSTRUCTIONS = ([{"instruction": f"Is {w} a word?", "output": "Yes."} for w in WORDS]
                + [{"instruction": "Is this a word?", "input": w[::-1], "output": "No."} for w in WORDS]
                + [{"instruction": f"Write {EOT} as text.", "input": "", "output": f"It is {EOT}."}])
# fine-tuning a tiny model on rows long enough for every prompt here (the longest is 46 tokens)
FT = dict(block_size=64, batch_size=4, gradient_accumulation_steps=1, learning_rate=3e-2, max_iters=60,
          eval_interval=20, lr_decay_iters=60)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data_root holding shakespeare (GPT-2 BPE, to pretrain on) and alpaca, prepared from
    INSTRUCTIONS with a quarter of them held out as val."""
    root = tmp_path_factory.mktemp("ft_data")
    source = write_jsonl(root / "instructions.jsonl", INSTRUCTIONS)
    prepare.main(["shakespeare", f"--data_root={root}"])
    prepare.main(["alpaca", f"--data_root={root}", f"--source={source}", "--val_fraction=0.25"])
    return str(root)


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    """out_dir of a tiny ContextLM trained by train.py for 10 iterations on shakespeare."""
    out = tmp_path_factory.mktemp("pretrained")
    run_train(tiny_args(data, out, dataset="shakespeare", block_size=64, max_iters=10, eval_interval=10))
    return str(out)


@pytest.fixture(scope="module")
def finetuned(data, pretrained, tmp_path_factory):
    """out_dir of `pretrained` fine-tuned on alpaca for 60 iterations (evaluated every 20)."""
    out = tmp_path_factory.mktemp("finetuned")
    run_train(tiny_args(data, out, dataset="alpaca", init_from=pretrained, **FT))
    return str(out)


def gpt2():
    return Tokenizer({"tokenizer": "gpt2"})


def split_examples(data_root, split, dataset="alpaca", block_size=10_000):
    return open_examples(data_root, dataset, split, block_size)


def masked_nll(model, examples, start, block_size):
    """(summed NLL, count) of the response of the example starting at `start`, computed directly:
    the example alone (its first block_size + 1 tokens), from position 0, nothing after it."""
    _, target_start, end = examples.bounds[list(examples.bounds[:, 0]).index(start)]
    ids = torch.from_numpy(examples.ids[start:min(end, start + block_size + 1)].astype(np.int64))
    logits, _ = model(ids[None, :-1], all_logits=True)  # (1, T, vocab)
    first = target_start - start - 1  # the position that predicts the first response token
    return F.cross_entropy(logits[0, first:], ids[first + 1:], reduction="sum").item(), len(ids) - 1 - first


# ---------------------------------------------------------------- 1. the prepared data

def test_prepared_data_masks_exactly_the_prompts(data):
    """Every example is stored as its Alpaca prompt, then its output and end-of-text; the
    targets a training batch counts (y != -1), decoded row by row, are exactly the responses
    and their end-of-text, and nothing of a prompt. A quarter of the examples is val, none in both."""
    meta = load_meta(data, "alpaca")
    assert (meta["tokenizer"], meta["template"], meta["eot_token"]) == ("gpt2", "alpaca", 50256)
    assert meta["vocab_size"] == 50257
    assert (meta["train_examples"], meta["val_examples"]) == (16, 5)
    tok = gpt2()
    by_prompt = {alpaca_prompt(r["instruction"], r.get("input", "")): r["output"] for r in INSTRUCTIONS}
    seen = []
    for split in ("train", "val"):
        examples = split_examples(data, split)
        bounds, ids = examples.bounds, examples.ids
        assert len(bounds) == meta[f"{split}_examples"] and bounds.dtype == np.int64
        # back to back, from the first token to the last
        assert bounds[0, 0] == 0 and bounds[-1, 2] == len(ids) == meta[f"{split}_tokens"]
        assert (bounds[1:, 0] == bounds[:-1, 2]).all() and (bounds[:, 0] < bounds[:, 1]).all()
        for start, target_start, end in bounds:
            prompt, response = tok.decode(ids[start:target_start].tolist()), tok.decode(ids[target_start:end].tolist())
            assert response == by_prompt[prompt] + EOT
            assert ids[start:end].tolist().count(50256) == 1  # the end: the spelled-out one stayed text
            seen.append(prompt)

        # what training counts: every example's row, through train.py's batch function
        offsets = torch.from_numpy(bounds[:, 0])
        x, y = get_batch(examples, offsets, 64, "cpu")
        for (start, target_start, end), xs, ys in zip(bounds, x.tolist(), y.tolist()):
            assert xs[:end - start - 1] == ids[start:end - 1].tolist()  # the row is the example, from its start
            counted = [t for t in ys if t != -1]
            assert tok.decode(counted) == by_prompt[tok.decode(ids[start:target_start].tolist())] + EOT
            # and they are the row's last targets of the example, in place
            assert ys[target_start - start - 1:end - start - 1] == counted
    assert sorted(seen) == sorted(by_prompt)  # every example once, in train or val


def test_neox_tokenizer_from_a_checkpoint(tmp_path, neox_tokenizer_dir):
    """--ckpt takes the tokenizer of the checkpoint to fine-tune: here Pythia's GPT-NeoX BPE
    (a tiny stand-in), whose end-of-text is id 0; meta.json says where the tokenizer lives."""
    neox_meta = {"tokenizer": "neox", "tokenizer_path": str(neox_tokenizer_dir), "vocab_size": 300}
    ckpt = tmp_path / "neox_run"
    ckpt.mkdir()
    save_checkpoint({"model": {}, "model_args": {}, "meta": neox_meta}, str(ckpt / "ckpt.pt"))
    source = write_jsonl(tmp_path / "instructions.jsonl", INSTRUCTIONS)
    prepare.main(["alpaca", f"--data_root={tmp_path}", f"--source={source}", f"--ckpt={ckpt}", "--val_fraction=0.25"])

    meta = load_meta(str(tmp_path), "alpaca_neox")  # next to a GPT-2 copy, as prepare.py names them
    tok = Tokenizer(meta)
    assert (meta["tokenizer"], meta["tokenizer_path"], meta["eot_token"]) == ("neox", str(neox_tokenizer_dir), 0)
    assert meta["vocab_size"] == tok.vocab_size
    outputs = {r["output"] + EOT for r in INSTRUCTIONS}
    for split in ("train", "val"):
        examples = split_examples(str(tmp_path), split, "alpaca_neox")
        for start, target_start, end in examples.bounds:
            assert tok.decode(examples.ids[target_start:end].tolist()) in outputs
            assert examples.ids[start:end].tolist().count(0) == 1


def test_pythia_config_finetunes_a_pythia_run(tmp_path, neox_tokenizer_dir):
    """config/finetune_alpaca_pythia.py, as its comment says to use it: a Pythia-block run
    pretrained on NeoX BPE (a tiny stand-in), its Alpaca data prepared with --ckpt, then the
    config with --init_from at that run (sizes shrunk for a CPU). The fine-tuned model is the
    run's (Pythia block, NeoX tokenizer) and its masked val loss falls."""
    root, pretrained, out = str(tmp_path), str(tmp_path / "pythia_run"), str(tmp_path / "alpaca_run")
    prepare.main(["shakespeare", f"--data_root={root}", "--tokenizer=neox", f"--tokenizer_path={neox_tokenizer_dir}"])
    # this BPE of 302 ids spells Alpaca's prompt in ~150 tokens: rows of 256
    run_train(tiny_args(root, pretrained, dataset="shakespeare_neox", block_size=256, max_iters=10,
                        eval_interval=10, **backbone_fields("pythia")))
    source = write_jsonl(tmp_path / "instructions.jsonl", INSTRUCTIONS)
    prepare.main(["alpaca", f"--data_root={root}", f"--source={source}", f"--ckpt={pretrained}",
                  "--val_fraction=0.25"])
    config = os.path.join(ROOT, "config", "finetune_alpaca_pythia.py")
    small = dict(FT, block_size=256, max_iters=40, eval_interval=20, lr_decay_iters=40, warmup_iters=2, eval_iters=2,
                 compile=False, device="cpu", dtype="float32", log_interval=1)
    run_train([config, f"--init_from={pretrained}", f"--out_dir={out}", f"--data_root={root}"]
              + [f"--{k}={v}" for k, v in small.items()])

    checkpoint = load_checkpoint(out)
    assert checkpoint["config"]["dataset"] == "alpaca_neox" and checkpoint["meta"]["tokenizer"] == "neox"
    assert {k: checkpoint["model_args"][k] for k in BACKBONES["pythia"]} == BACKBONES["pythia"]
    first, *_, last = read_log(out)[1]
    assert last["val_loss"] < first["val_loss"] - 0.5, (first["val_loss"], last["val_loss"])


# ---------------------------------------------------------------- 2. batches of examples

def test_batch_loss_is_each_example_alone(data):
    """The loss of a batch of instruction rows (get_batch) equals the responses' NLL
    computed one example at a time, alone from position 0 (masked_nll), to 1e-5: for a ContextLM
    whose chunks start at the example, with rows that run into the next example, past the end
    of the split (padding), and examples cut by the row's length. Planted: counting the tokens
    after a row's own example would change the loss."""
    examples = split_examples(data, "train")
    T = int((examples.bounds[:, 1] - examples.bounds[:, 0]).max()) + 1  # every prompt fits in a row
    assert (examples.bounds[:, 2] - examples.bounds[:, 0] > T + 1).any()  # and some examples do not
    model = sharp_model(dict(block_size=T, vocab_size=50304, n_layer=2, n_head=2, n_embd=16, chunk_size=3,
                             n_ctx_layer=1), seed=0)
    offsets = torch.from_numpy(examples.bounds[:, 0])
    x, y = get_batch(examples, offsets, T, "cpu")
    assert x[-1, -1] == 0 and offsets[-1] + T > len(examples)  # the last row reads past the end: padding
    with torch.no_grad():
        _, loss = model(x, y)
        direct = [masked_nll(model, examples, start, T) for start in examples.bounds[:, 0].tolist()]
    assert loss.item() == pytest.approx(sum(n for n, _ in direct) / sum(k for _, k in direct), abs=1e-5)
    assert (y != -1).sum().item() == sum(k for _, k in direct)

    # planted: the tokens after a row's own response count too (as in a window of plain text)
    last = (torch.arange(T) * (y != -1)).argmax(dim=1, keepdim=True)  # (B, 1): a row's last counted target
    after = torch.arange(T - 1) > last  # (B, T - 1): the targets after it, whose next tokens x holds
    leaky = y.clone()
    leaky[:, :-1][after] = x[:, 1:][after]
    with torch.no_grad():
        _, leaky_loss = model(x, leaky)
    assert after.any() and abs(leaky_loss.item() - loss.item()) > 1e-2


def test_text_batches_are_unchanged(char_data):
    """Plain text keeps its sampler exactly: offsets anywhere a whole row fits, drawn as before."""
    data = open_split(char_data, "shakespeare_char", "train")
    drawn = sample_offsets(data, 32, (2, 4), torch.Generator().manual_seed(7))
    assert torch.equal(drawn, torch.randint(len(data) - 32, (2, 4), generator=torch.Generator().manual_seed(7)))


# ---------------------------------------------------------------- 3. fine-tuning a checkpoint

def test_finetuning_starts_from_the_checkpoint_and_lowers_the_masked_loss(data, pretrained, finetuned, tmp_path,
                                                                          capsys):
    """The first evaluation of the fine-tuning run is the pretrained checkpoint's masked loss on
    the same val batches, computed directly (to 1e-5), and not a fresh model's; the masked loss
    then falls; the checkpoint keeps the pretrained architecture, and eval.py reads it."""
    c = parse_config(train.DEFAULTS, tiny_args(data, finetuned, dataset="alpaca", **FT))
    model = model_from_checkpoint(load_checkpoint(pretrained)).eval()
    val = split_examples(data, "val", block_size=c["block_size"])
    gen, batches = torch.Generator().manual_seed(0), []  # estimate_loss's draws
    with torch.no_grad():
        for _ in range(c["eval_iters"]):
            offsets = sample_offsets(val, c["block_size"], (c["batch_size"],), gen)
            nll = [masked_nll(model, val, start, c["block_size"]) for start in offsets.tolist()]
            batches.append(sum(n for n, _ in nll) / sum(k for _, k in nll))
    first, *_, last = read_log(finetuned)[1]
    assert first["iter"] == 0 and first["val_loss"] == pytest.approx(sum(batches) / len(batches), abs=1e-5)

    scratch = run_train(tiny_args(data, tmp_path, dataset="alpaca", eval_only=True, **FT))
    assert abs(scratch["val_loss"] - first["val_loss"]) > 0.1  # the weights were not left at their init
    assert last["iter"] == 60 and last["val_loss"] < first["val_loss"] - 3.0, (first, last)

    checkpoint = load_checkpoint(finetuned)
    assert checkpoint["model_args"] == load_checkpoint(pretrained)["model_args"]
    assert checkpoint["meta"]["template"] == "alpaca" and checkpoint["iter_num"] == 60
    status, out, err = cli(capsys, eval_script, f"--ckpt={finetuned}", "--datasets=alpaca", f"--data_root={data}",
                           "--device=cpu")
    assert status == 0 and "alpaca ppl" in out, err


def test_finetuning_resumes_exactly(data, pretrained, tmp_path):
    """A fine-tuning run stopped after 2 of 4 iterations and resumed (--init_from=resume, its
    config saying other model keys than the weights it started from) ends bit-identical to one
    that ran straight through."""
    args = dict(FT, max_iters=4, eval_interval=2, lr_decay_iters=4, n_layer=5, dropout=0.1)  # n_layer: not used
    run_train(tiny_args(data, tmp_path / "straight", dataset="alpaca", init_from=pretrained, **args))
    run_train(tiny_args(data, tmp_path / "halves", dataset="alpaca", init_from=pretrained, **args | dict(max_iters=2)))
    run_train(tiny_args(data, tmp_path / "halves", dataset="alpaca", init_from="resume", **args))
    straight, halves = weights(tmp_path / "straight"), weights(tmp_path / "halves")
    assert all(torch.equal(straight[k], halves[k]) for k in straight)
    assert read_log(tmp_path / "halves")[1][-1]["data_hash"] == read_log(tmp_path / "straight")[1][-1]["data_hash"]


# ---------------------------------------------------------------- 4. sampling and MT-Bench answers

def test_sample_with_the_template_stops_at_end_of_text(finetuned, capsys):
    """--template=alpaca asks --start in the Alpaca prompt, and each answer ends before its
    end-of-text token; greedy, the fine-tuned model answers and stops long before 60 tokens."""
    status, out, err = cli(capsys, sample, f"--out_dir={finetuned}", "--template=alpaca", "--temperature=0",
                           "--start=Is tree a word?", "--max_new_tokens=60", "--num_samples=2", "--device=cpu")
    assert status == 0, err
    texts = out.split("\n---------------\n")[:-1]
    prompt = alpaca_prompt("Is tree a word?")
    assert len(texts) == 2 and texts[0] == texts[1] and texts[0].startswith(prompt) and EOT not in texts[0]
    n_new = int(err.split(" samples of ")[1].split(" tokens")[0])
    assert n_new < 60 and texts[0] != prompt  # an answer, then end-of-text, long before 60 tokens


QUESTIONS = [{"question_id": 81, "category": "writing", "turns": ["Is tree a word?", "Is sky a word?"]},
             {"question_id": 125, "category": "math", "turns": ["Is lamp a word?", "Is it a word?"],
              "reference": ["Yes.", "Yes."]}]


def test_mtbench_answers(finetuned, tmp_path, capsys, monkeypatch):
    """The answer file for a two-question MT-Bench file: one JSON line a question with the fields
    FastChat's judge reads, read back as its load_model_answers does (the model named by the
    file); both turns answered, each generated until end-of-text at FastChat's temperature for
    the category, turn 2 asked after turn 1's question, answer and end-of-text."""
    calls = []
    real_generate = Engine.generate

    def recording_generate(self, idx, max_new_tokens, **kw):
        out = real_generate(self, idx, max_new_tokens, **kw)
        calls.append((idx[0].tolist(), out[0, idx.size(1):].tolist(), kw))
        return out

    monkeypatch.setattr(Engine, "generate", recording_generate)
    (tmp_path / "mt_bench").mkdir()
    questions = write_jsonl(tmp_path / "mt_bench" / "question.jsonl", QUESTIONS)
    status, _, err = cli(capsys, sample, f"--out_dir={finetuned}", "--template=alpaca", f"--mtbench={questions}",
                         "--max_new_tokens=40", "--device=cpu")
    assert status == 0, err

    # read as fastchat/llm_judge/common.py's load_model_answers reads model_answer/*.jsonl
    [path] = glob.glob(str(tmp_path / "mt_bench" / "model_answer" / "*.jsonl"))
    model_name = os.path.basename(path)[:-6]
    with open(path) as f:
        answers = {row["question_id"]: row for row in map(json.loads, f)}
    assert model_name == os.path.basename(finetuned) and sorted(answers) == [81, 125]
    tok, eot = gpt2(), 50256
    assert len(calls) == 4  # two turns of two questions
    for q, (call1, call2) in zip(QUESTIONS, zip(calls[::2], calls[1::2])):
        row = answers[q["question_id"]]
        assert set(row) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert row["model_id"] == model_name and isinstance(row["answer_id"], str) and isinstance(row["tstamp"], float)
        [choice] = row["choices"]
        assert choice["index"] == 0 and len(choice["turns"]) == 2
        temperature = sample.MTBENCH_TEMPERATURE[q["category"]]
        for turn, ((prompt, generated, kw), text) in enumerate(zip((call1, call2), choice["turns"])):
            assert kw["stop_token"] == eot and kw["temperature"] == temperature
            assert eot in generated and len(generated) < 40  # it ended there, early
            reply = generated[:generated.index(eot)]
            assert text == tok.decode(reply).strip()
            # turn 1 is what fine-tuning taught: a non-empty answer. After a conversation, which it
            # never saw in training, the tiny model may sample end-of-text at once: on some CPUs'
            # float rounding it does, so turn 2's answer may be empty
            assert text or turn == 1
        first_prompt, first_generated, _ = call1
        reply1 = first_generated[:first_generated.index(eot)]
        assert first_prompt == tok.encode(alpaca_prompt(q["turns"][0]))
        assert call2[0] == first_prompt + reply1 + [eot] + tok.encode(alpaca_prompt(q["turns"][1], intro=False))


# ---------------------------------------------------------------- 5. bad input

def test_bad_input_gets_one_line_errors(data, pretrained, char_data, tmp_path, capsys):
    def check(module, args, *needles):
        status, _, err = cli(capsys, module, *args)
        return assert_one_line_error(status, err, *needles)

    # prepare.py alpaca: a file of other records, no file, a character-level checkpoint, a tokenizer it lacks
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"text": "Once upon a time."}])
    root = f"--data_root={tmp_path}"
    check(prepare, ["alpaca", root, f"--source={texts}"], "example 0 is not an instruction", "it has text",
          "instruction, output and optionally input")
    check(prepare, ["alpaca", root, f"--source={tmp_path / 'missing.jsonl'}"], "missing.jsonl not found")
    (tmp_path / "broken.json").write_text('[{"instruction": "x", "output": ')
    check(prepare, ["alpaca", root, f"--source={tmp_path / 'broken.json'}"], "broken.json is not valid JSON")
    char_run = tmp_path / "char_run"
    run_train(tiny_args(char_data, char_run, max_iters=1, eval_interval=1))
    check(prepare, ["alpaca", root, f"--ckpt={char_run}"], "reads characters", "end-of-text")
    check(prepare, ["alpaca", root, "--tokenizer=bert"], "--tokenizer=bert", "gpt2 or neox")
    check(prepare, ["alpaca", root, f"--source={write_jsonl(tmp_path / 'one.jsonl', INSTRUCTIONS[:1])}"],
          "1 example(s): too few")
    assert not os.path.exists(tmp_path / "alpaca")

    # train.py --init_from: a directory that does not exist, a tokenizer other than the data's, too long a block
    base = tiny_args(data, tmp_path / "out", dataset="alpaca", **FT)
    check(train, [*base, f"--init_from={tmp_path / 'no_such_run'}"], "no_such_run", "no train.py run to fine-tune")
    check(train, [*base, f"--init_from={tmp_path / 'no_such_run' / 'ckpt.pt'}"], "no checkpoint at")
    check(train, [*base, f"--init_from={char_run}"],
          "reads char tokens (65 ids), but the dataset is gpt2 tokens (50257 ids)",
          f"python prepare.py alpaca --ckpt={char_run}")
    check(train, [*base, f"--init_from={pretrained}", "--block_size=65"], "block_size=65", "--block_size=64")
    assert not os.path.exists(tmp_path / "out" / "ckpt.pt")
    # resuming on data of another tokenizer
    check(train, [*tiny_args(data, char_run, dataset="alpaca", **FT), "--init_from=resume"],
          "reads char tokens (65 ids)", "resume on the dataset the run was trained on")

    # sample.py: MT-Bench without the template, a template it does not know, a file that is not MT-Bench's
    run = f"--out_dir={pretrained}"
    questions = write_jsonl(tmp_path / "question.jsonl", QUESTIONS[:1] + [{"question_id": 2, "text": "Hi"}])
    check(sample, [run, f"--mtbench={questions}"], "--template=alpaca")
    check(sample, [run, "--template=chatml"], "--template='chatml'", "alpaca")
    check(sample, [run, "--template=alpaca", f"--mtbench={questions}"], "question.jsonl:2 is not an MT-Bench question")
    check(sample, [run, "--template=alpaca", f"--mtbench={tmp_path / 'none.jsonl'}"], "cannot read", "none.jsonl")
    check(sample, [f"--out_dir={char_run}", "--template=alpaca", "--device=cpu"], "reads characters")


def test_shipped_examples_are_valid(tmp_path):
    """data/instructions_example.jsonl (the format of your own instruction file) prepares, and
    data/mt_bench_example.jsonl reads as MT-Bench questions: docs/finetuning.md uses both."""
    prepare.main(["alpaca", f"--data_root={tmp_path}", f"--source={ROOT}/data/instructions_example.jsonl",
                  "--val_fraction=0.2"])
    meta = load_meta(str(tmp_path), "alpaca")
    assert (meta["train_examples"], meta["val_examples"]) == (16, 4)
    questions = sample.read_questions(f"{ROOT}/data/mt_bench_example.jsonl")
    assert [len(q["turns"]) for q in questions] == [2, 2]
