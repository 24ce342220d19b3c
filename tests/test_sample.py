"""Acceptance tests of sample.py (KV-cache issue, points 3-4): it samples end to end from a
train.py checkpoint on characters and on GPT-2 BPE, and from a local Hugging Face GPT-2 folder,
greedy decoding is deterministic, prompts can come from a file, and bad input gets a one-line
error. Tiny models, CPU."""

import os
import shutil

import pytest
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from dataset import Tokenizer
from engine import Engine, decode_step
import prepare
import sample
from conftest import assert_one_line_error, cli, run_script, run_train, tiny_args

SEPARATOR = "\n---------------\n"  # what sample.py prints after each sample


@pytest.fixture(scope="module")
def char_ckpt(char_data, tmp_path_factory):
    """out_dir of a char-level model trained for 20 iterations (past uniform, far from good)."""
    out = tmp_path_factory.mktemp("char")
    run_train(tiny_args(char_data, out, max_iters=20, eval_interval=20))
    return out


@pytest.fixture(scope="module")
def bpe_ckpt(tmp_path_factory):
    """out_dir of a model trained for 2 iterations on shakespeare in GPT-2 BPE (vocab padded to 50304)."""
    data_root = tmp_path_factory.mktemp("bpe_data")
    prepare.main(["shakespeare", f"--data_root={data_root}"])
    out = tmp_path_factory.mktemp("bpe")
    run_train(tiny_args(data_root, out, dataset="shakespeare", max_iters=2, eval_interval=2))
    return out


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A local Hugging Face GPT-2 folder: the real vocabulary, a tiny random model."""
    from transformers import GPT2Config, GPT2LMHeadModel
    path = tmp_path_factory.mktemp("hf_gpt2")
    config = GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def samples(stdout, prompt, num_samples):
    """The samples sample.py printed, checked to continue the prompt."""
    texts = stdout.split(SEPARATOR)
    assert len(texts) == num_samples + 1 and texts[-1] == "", stdout
    assert all(t.startswith(prompt) and len(t) > len(prompt) for t in texts[:-1]), texts
    return texts[:-1]


def assert_speed_line(stderr):
    """The speed line: steady speed, and the first tokens' time (prefill, first decode step) apart."""
    assert "tokens/s steady" in stderr and "KV-cache decoding" in stderr, stderr
    assert "the first 2 tokens took" in stderr, stderr


def sample_twice(capsys, prompt, num_samples, *args):
    """sample.py run twice in this process: both succeed and print the same; the samples."""
    runs = [cli(capsys, sample, *args, f"--num_samples={num_samples}", "--device=cpu") for _ in range(2)]
    for status, _, err in runs:
        assert status == 0, err
        assert_speed_line(err)
    assert runs[0][1] == runs[1][1]
    return samples(runs[0][1], prompt, num_samples)


# ---------------------------------------------------------------- 1. end to end

def test_char_checkpoint_greedy_is_deterministic(char_ckpt):
    """The real command line, twice: the same greedy samples, each prompt + 40 characters (past
    block_size=32, so the window is cropped and prefilled again), and a speed line."""
    args = [f"--out_dir={char_ckpt}", "--start=ROMEO:", "--temperature=0", "--num_samples=2",
            "--max_new_tokens=40", "--device=cpu"]
    first, second = run_script("sample.py", *args), run_script("sample.py", *args)
    assert first.stdout == second.stdout
    texts = samples(first.stdout, "ROMEO:", 2)
    assert all(len(t) == len("ROMEO:") + 40 for t in texts)  # one character per token
    assert texts[0] == texts[1]  # greedy: the batch rows agree too
    assert_speed_line(first.stderr)


def test_char_checkpoint_prompt_from_file(char_ckpt, tmp_path, capsys):
    prompt = "ROMEO:\nWhat say you"
    (tmp_path / "prompt.txt").write_text(prompt, encoding="utf-8")
    texts = sample_twice(capsys, prompt, 3, f"--out_dir={char_ckpt}", f"--start=FILE:{tmp_path / 'prompt.txt'}",
                         "--max_new_tokens=10", "--seed=7")  # sampled, not greedy: reproducible by the seed
    assert all(len(t) == len(prompt) + 10 for t in texts)


def test_bpe_checkpoint(bpe_ckpt, capsys):
    sample_twice(capsys, "ROMEO:", 2, f"--out_dir={bpe_ckpt}", "--start=ROMEO:", "--temperature=0",
                 "--max_new_tokens=12")


def test_bpe_sampling_never_emits_padding_ids(bpe_ckpt, tmp_path, capsys):
    """train.py pads GPT-2's 50257 ids to 50304 for speed. The 47 extra ids are no tokens, yet
    a model that has not been trained long enough to rule them out gives them probability, and
    tiktoken cannot decode them. Here the checkpoint is edited so that the padding ids win
    outright: ln_f keeps only feature 0 and two padding ids get +-100 there, so greedy decoding
    picks one of them (whatever the sign of feature 0) unless sample.py keeps to real tokens."""
    checkpoint = load_checkpoint(str(bpe_ckpt))
    state = checkpoint["model"]
    with torch.no_grad():
        state["transformer.ln_f.weight"].zero_()[0] = 1.0
        if "transformer.ln_f.bias" in state:
            state["transformer.ln_f.bias"].zero_()
        state["transformer.wte.weight"][50257:50259, 0] = torch.tensor([100.0, -100.0])  # tied to lm_head
    os.makedirs(tmp_path / "edited")
    torch.save(checkpoint, tmp_path / "edited" / "ckpt.pt")
    status, out, err = cli(capsys, sample, f"--out_dir={tmp_path / 'edited'}", "--start=ROMEO:", "--temperature=0",
                           "--num_samples=1", "--max_new_tokens=4", "--device=cpu")
    assert status == 0, err
    samples(out, "ROMEO:", 1)


def test_local_hugging_face_gpt2_folder(hf_dir, capsys):
    sample_twice(capsys, "Hello, world", 2, f"--init_from={hf_dir}", "--start=Hello, world", "--temperature=0",
                 "--max_new_tokens=8")


def test_without_out_dir_the_most_recent_checkpoint(char_ckpt, char_data, tmp_path, monkeypatch, capsys):
    """`python sample.py` right after the README's first command samples from the model that run
    trained: with no --out_dir, the most recently written ./out*/ckpt.pt, named on stderr. Of two
    runs, the newer wins (their samples at one seed differ, so they show which one was used);
    with none, one line naming the command that trains one."""
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, sample, "--device=cpu")
    assert_one_line_error(status, err, "no checkpoint", "./out*/ckpt.pt",
                          "python prepare.py shakespeare_char && python train.py config/train_shakespeare_char.py")

    shutil.copytree(char_ckpt, "out-shakespeare-char")  # 20 steps
    run_train(tiny_args(char_data, "out-2-steps", max_iters=2, eval_interval=2))
    shutil.copytree(char_ckpt, "newest")  # not where train.py's runs go: ignored
    os.utime(os.path.join("newest", "ckpt.pt"), (3e9, 3e9))
    args = ["--start=ROMEO:", "--temperature=1.0", "--num_samples=1", "--max_new_tokens=40", "--device=cpu"]
    expected = {run: cli(capsys, sample, *args, f"--out_dir={run}")[1] for run in ("out-shakespeare-char",
                                                                                    "out-2-steps")}
    assert expected["out-shakespeare-char"] != expected["out-2-steps"]
    for newest, older in (("out-shakespeare-char", "out-2-steps"), ("out-2-steps", "out-shakespeare-char")):
        os.utime(os.path.join(older, "ckpt.pt"), (1e9, 1e9))
        os.utime(os.path.join(newest, "ckpt.pt"), (2e9, 2e9))
        status, out, err = cli(capsys, sample, *args)
        assert status == 0, err
        assert out == expected[newest]
        assert err.startswith(f"sampling from {os.path.join(newest, 'ckpt.pt')}, the most recent checkpoint; "
                              "--out_dir=DIR picks another\n"), err

    # and with no argument at all: the defaults' 3 samples of 500 characters
    status, out, err = cli(capsys, sample)
    assert status == 0 and err.startswith(f"sampling from {os.path.join('out-2-steps', 'ckpt.pt')}"), err
    assert all(len(t) == 1 + 500 for t in samples(out, "\n", 3))


def test_speed_line_tells_the_first_tokens_from_the_steady_speed():
    """The first tokens may take seconds (compiling, first-time setup on a GPU) that the steady
    speed must not hide: 3 samples of 102 tokens in 12 s, the first 2 done after 10 s, are 300
    tokens in the other 2 s. Without a decode step (every token a prefill), only the mean."""
    line = sample.speed_line(3, 102, 12.0, 10.0, "cuda")
    assert line.startswith("306 tokens in 12.00s (3 samples of 102 tokens, KV-cache decoding on cuda): "), line
    assert "150 tokens/s steady; the first 2 tokens took 10.00s" in line, line
    assert sample.speed_line(2, 5, 2.0, None, "cpu").endswith("KV-cache decoding on cpu): 5 tokens/s")


# ---------------------------------------------------------------- 2. bad input

def test_bad_input_gets_one_line_errors(char_ckpt, tmp_path, capsys):
    def check(args, *needles):
        status, _, err = cli(capsys, sample, *args, "--device=cpu")
        return assert_one_line_error(status, err, *needles)

    ckpt = f"--out_dir={char_ckpt}"
    check([f"--out_dir={tmp_path / 'nowhere'}"], "no checkpoint at", "nowhere", "train.py")
    check([ckpt, "--start="], "the prompt is empty")
    (tmp_path / "empty.txt").write_text("")
    check([ckpt, f"--start=FILE:{tmp_path / 'empty.txt'}"], "the prompt is empty")
    check([ckpt, f"--start=FILE:{tmp_path / 'missing.txt'}"], "cannot read the prompt file", "missing.txt")
    check([ckpt, "--start=Café €"], "'é€'", "not in this model's character vocabulary")
    check([ckpt, "--max_new_tokens=0"], "max_new_tokens=0", "at least 1")
    check([ckpt, "--num_samples=0"], "num_samples=0", "at least 1")
    check([ckpt, "--temperature=hot"], "temperature", "float")
    check([f"--init_from={tmp_path / 'no_such_hf_dir'}"], "cannot load GPT-2 weights", "no_such_hf_dir")


# ---------------------------------------------------------------- a checkpoint from before context_scale

BEFORE_CONTEXT_SCALE = os.path.join(os.path.dirname(__file__), "fixtures", "contextlm_2026-11.pt")


def test_checkpoint_from_before_context_scale_decodes_as_it_did(tmp_path, capsys):
    """tests/fixtures/contextlm_2026-11.pt is a tiny char ContextLM that main wrote at 749dfd2,
    before context_scale existed (its optimizer state dropped, to keep it small). It loads with
    P's output added as is ('none'), and its loss on a line of text and its last logits are the
    ones that code computed, in the full forward and in KV-cache decoding; sample.py samples it."""
    checkpoint = load_checkpoint(BEFORE_CONTEXT_SCALE)
    assert "context_scale" not in checkpoint["model_args"] and "context_scale" not in checkpoint["config"]
    model = model_from_checkpoint(checkpoint).eval()
    assert model.config.context_scale == "none" and not hasattr(model, "context_gain")
    ids = torch.tensor([Tokenizer(checkpoint["meta"]).encode("ROMEO:\nWhat say you, my lord?")])
    with torch.no_grad():
        logits, loss = model(ids[:, :-1], ids[:, 1:])
        step_logits, state = Engine(model).prefill(ids[:, :5])
        for t in range(5, ids.size(1) - 1):
            step_logits = decode_step(model, ids[:, t:t + 1], state)
    then = torch.tensor([1.7362, 4.0438, -1.0840, -7.3521, -7.5224, -0.2108])  # 749dfd2's, to 4 decimals
    assert loss.item() == pytest.approx(2.8261935710906982, abs=1e-5)
    assert torch.allclose(logits[0, -1, :6], then, atol=1e-4)
    assert torch.allclose(step_logits[0, -1], logits[0, -1], atol=1e-5)
    shutil.copy(BEFORE_CONTEXT_SCALE, tmp_path / "ckpt.pt")
    status, out, err = cli(capsys, sample, f"--out_dir={tmp_path}", "--start=ROMEO:", "--max_new_tokens=20",
                           "--num_samples=1", "--device=cpu")
    assert status == 0 and out.startswith("ROMEO:"), err
