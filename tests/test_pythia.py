"""Acceptance tests of the GPT-NeoX (Pythia) backbone, issue 15 (docs/pythia.md): with
n_ctx_layer=0 the model is Hugging Face's GPTNeoXForCausalLM (weights loaded from a local folder in
the Pythia repositories' format, or by Pythia name from a hub cache); ContextLM on it is causal,
its predictor rotates chunk j at its first token's position j*w, and KV-cache decoding equals the
full forward, past block_size too; GPT-2 checkpoints written before the backbone existed still
load, sample and resume; the NeoX tokenizer loads and round-trips. train.py starts from Pythia
weights on a dataset in their tokenizer (and refuses any other), sample.py samples Pythia by name
or folder with its tokenizer and never its padding ids, the Pythia configs are Pythia's recipe,
and the small Pythia-shaped Shakespeare config trains. (prepare.py's NeoX and Pile paths:
tests/test_prepare.py; bench.py and compare.py on the backbone: their own tests.) Tiny models,
CPU, offline."""

import json
import math
import os
import shutil

import pytest
import torch
from conftest import (NEOX, ROOT, assert_one_line_error, cli, hub_cache, make_pythia_folder, read_log, run_train,
                      record_greedy_choices, sharp_model, tiny_args)
from torch.nn import functional as F

from checkpoint import load_checkpoint, model_from_hf
from configurator import UserError, parse_config
from variants import BACKBONES, backbone_fields
from dataset import Tokenizer, open_split
import plot
from train import get_batch
import sample
import train
from engine import Engine, decode_step
from pretrained import from_pretrained
from model import GPT, GPTConfig, apply_rotary

# Pythia's block (EleutherAI/pythia-*/config.json), the GPTConfig fields that say so
PYTHIA = dict(rotary_pct=0.25, rotary_base=10000.0, parallel_residual=True, tie_embeddings=False,
              gelu_approximate="none", layer_norm_eps=1e-5, bias=True)
V = 50


def sharp(seed=0, **kw):
    """conftest.sharp_model on the Pythia block: head size 16, so RoPE turns 4 dims of each."""
    cfg = dict(block_size=32, vocab_size=V, n_layer=3, n_head=2, n_embd=32, chunk_size=4, n_ctx_layer=2,
               n_enc_layer=0) | PYTHIA
    return sharp_model(cfg | kw, seed)


def full_last_logits(model, idx):
    with torch.no_grad():
        return model(idx)[0][:, -1, :]


# ---------------------------------------------------------------- 1. exactly Pythia, through from_pretrained

@pytest.fixture(scope="module")
def pythia_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pythia")
    return path, make_pythia_folder(path)


@pytest.mark.parametrize("rotary_pct,parallel,tie", [(0.25, True, False), (1.0, False, False), (0.5, True, True)])
def test_pythia_logits_equal_hugging_face(tmp_path, rotary_pct, parallel, tie):
    """from_pretrained(local Pythia-format folder, n_ctx_layer=0) gives the logits of the same
    folder's GPTNeoXForCausalLM at every position to 1e-5 (fp32), at full length and shorter:
    Pythia's 25% rotary and full rotary, parallel and sequential residual, untied and tied head.
    The config it builds is the Pythia block's."""
    hf = make_pythia_folder(tmp_path, rotary_pct, parallel, tie)
    model = from_pretrained(str(tmp_path), override_args=dict(n_ctx_layer=0)).eval()
    expected = PYTHIA | dict(rotary_pct=rotary_pct, parallel_residual=parallel, tie_embeddings=tie)
    assert {k: getattr(model.config, k) for k in expected} == expected
    assert (model.config.block_size, model.config.vocab_size, model.config.n_layer) == (32, 96, 2)
    assert "wpe" not in model.transformer and model.param_breakdown()["predictor"] == 0
    idx = torch.randint(0, 96, (3, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for T in (32, 7):
            ours, theirs = model(idx[:, :T], all_logits=True)[0], hf(idx[:, :T]).logits
            assert theirs.abs().max() > 1  # spread logits: the tolerance is meaningful
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def neox_tensor(hf_sd, ours):
    """The Hugging Face tensor that our state_dict entry `ours` must equal, found independently
    of the loader: names by hand; c_attn's rows gathered from GPT-NeoX's per-head [q, k, v] blocks."""
    if ours == "lm_head.weight":
        return hf_sd["lm_head.weight"]
    if ours.startswith("transformer.wte."):
        return hf_sd["gpt_neox.embed_in.weight"]
    if ours.startswith("transformer.ln_f."):
        return hf_sd["gpt_neox.final_layer_norm." + ours.split(".")[-1]]
    _, _, layer, module, *rest = ours.split(".")
    part = {"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm", "attn.c_attn": "attention.query_key_value",
            "attn.c_proj": "attention.dense", "mlp.c_fc": "mlp.dense_h_to_4h", "mlp.c_proj": "mlp.dense_4h_to_h"}
    name = ".".join([module] + rest[:-1])
    theirs = hf_sd[f"gpt_neox.layers.{layer}.{part[name]}.{rest[-1]}"]
    if name != "attn.c_attn":
        return theirs
    hs = NEOX["hidden_size"] // NEOX["num_attention_heads"]
    rows = [theirs[(3 * head + which) * hs:(3 * head + which + 1) * hs]
            for which in range(3) for head in range(NEOX["num_attention_heads"])]  # all q, then k, then v
    return torch.cat(rows)


@pytest.mark.parametrize("n_enc", [0, 1])
def test_contextlm_from_pythia_keeps_token_pathway(pythia_dir, n_enc):
    """A ContextLM loaded from the Pythia folder (default n_ctx_layer=2) has exactly the token
    pathway of the n_ctx_layer=0 load, and each of its tensors is the Hugging Face tensor it stands
    for (matched by hand, q/k/v regrouped per head); its predictor is fresh (GPT-2 init), none of
    its matrices copied from Pythia."""
    path, hf = pythia_dir
    gpt = from_pretrained(str(path), override_args=dict(n_ctx_layer=0))
    clm = from_pretrained(str(path), override_args=dict(n_enc_layer=n_enc, chunk_size=3))
    assert clm.config.n_ctx_layer == 2 and clm.config.chunk_size == 3 and clm.config.rotary_pct == 0.25
    sd_gpt, sd_clm, sd_hf = gpt.state_dict(), clm.state_dict(), hf.state_dict()
    predictor = {k for k in sd_clm if k.startswith("context_predictor.")}
    assert set(sd_clm) - predictor == set(sd_gpt) | {"context_gain"}
    assert sd_clm["context_gain"].item() == 0.0  # the ContextLM starts as the Pythia it was loaded from
    for k, v in sd_gpt.items():
        assert torch.equal(sd_clm[k], v), k
        assert torch.equal(v, neox_tensor(sd_hf, k)), k
    for k in predictor:
        v = sd_clm[k]
        assert not any(v.shape == u.shape and torch.equal(v, u) for u in sd_hf.values() if v.dim() >= 2), k
        if ".ln_" in k:
            assert torch.equal(v, torch.ones_like(v) if k.endswith("weight") else torch.zeros_like(v)), k
        elif v.dim() >= 2:
            std = 0.02 / math.sqrt(2 * clm.config.n_layer) if k.endswith("c_proj.weight") else 0.02
            assert 0.6 * std < v.std().item() < 1.4 * std, (k, v.std().item())


def test_pythia_names_load_from_the_hub_cache(pythia_dir, monkeypatch, tmp_path):
    """'pythia-70m' and 'EleutherAI/pythia-70m' name the same Hugging Face repository: with a
    (tiny) copy of it in an offline hub cache, both load it, and give its logits."""
    path, hf = pythia_dir
    hub_cache(tmp_path, monkeypatch, "EleutherAI/pythia-70m", path)
    idx = torch.randint(0, 96, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        for name in ("pythia-70m", "EleutherAI/pythia-70m"):
            model = from_pretrained(name, override_args=dict(n_ctx_layer=0)).eval()
            torch.testing.assert_close(model(idx, all_logits=True)[0], expected, rtol=0, atol=1e-5)
    with pytest.raises(UserError, match="pythia-160m"):  # not in the cache, and offline
        model_from_hf("pythia-160m", {})


def spoil(path, how):
    """Damage a Pythia folder in one way; the ValueError text from_pretrained must give."""
    from safetensors.torch import load_file, save_file
    weights_file = os.path.join(path, "model.safetensors")
    weights = load_file(weights_file)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    if how == "another architecture":
        config["model_type"] = "llama"
        expected = "'llama'.*'gpt2' .*'gpt_neox'"
    elif how == "missing tensor":
        del weights["gpt_neox.layers.1.mlp.dense_4h_to_h.bias"]
        expected = "missing gpt_neox.layers.1.mlp.dense_4h_to_h.bias"
    elif how == "extra tensor":
        weights["gpt_neox.layers.2.mlp.dense_4h_to_h.bias"] = torch.zeros(32)
        expected = "unexpected gpt_neox.layers.2.mlp.dense_4h_to_h.bias"
    elif how == "mis-shaped tensor":
        weights["gpt_neox.layers.0.attention.dense.bias"] = torch.zeros(31)
        expected = "mis-shaped gpt_neox.layers.0.attention.dense.bias"
    elif how == "unsupported variant":
        config["hidden_act"] = "relu"
        expected = "hidden_act=relu"
    save_file(weights, weights_file, metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return expected


@pytest.mark.parametrize("how", ["another architecture", "missing tensor", "extra tensor", "mis-shaped tensor",
                                 "unsupported variant"])
def test_from_pretrained_refuses_what_it_cannot_load_exactly(pythia_dir, tmp_path, how):
    """A folder of another architecture, or whose weights lack a tensor, have an extra one or one
    of another shape, or a GPT-NeoX variant this block does not build, is refused with a
    ValueError that says what is wrong (never loaded with fresh weights in the gap), and
    model_from_hf makes that one line naming the folder."""
    shutil.copytree(pythia_dir[0], tmp_path / "spoilt")
    path = str(tmp_path / "spoilt")
    expected = spoil(path, how)
    with pytest.raises(ValueError, match=expected):
        from_pretrained(path)
    with pytest.raises(UserError) as e:
        model_from_hf(path, {})
    assert "\n" not in str(e.value) and path in str(e.value)


# ---------------------------------------------------------------- 2. causality and chunk positions on RoPE

CAUSAL_CASES = [(w, n_enc, T) for w in (1, 2, 3, 4, 8) for n_enc in (0, 2) for T in sorted({w + 3, 2 * w})]


@pytest.mark.parametrize("w,n_enc,T", CAUSAL_CASES)
def test_causality_by_perturbation_rotary(w, n_enc, T):
    """On the Pythia block, changing token j leaves every logit at positions < j bit-identical
    (torch.equal), for every j, T divisible by w and not; and it changes some logit at >= j."""
    model = sharp(seed=w + n_enc, chunk_size=w, n_enc_layer=n_enc, n_layer=3 + n_enc // 2, block_size=16)
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        base, _ = model(idx, all_logits=True)
        for j in range(T):
            changed = idx.clone()
            changed[0, j] = (changed[0, j] + 1 + j) % V
            out, _ = model(changed, all_logits=True)
            assert torch.equal(out[0, :j], base[0, :j]), f"token {j} leaked into positions < {j}"
            assert torch.equal(out[1], base[1])
            assert not torch.equal(out[0, j:], base[0, j:]), f"changing token {j} changed nothing"


def predictor_ropes(model, run):
    """Every (cos, sin) that an attention layer of P receives while run() runs, in call order."""
    seen = []
    hooks = [block.attn.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
             for block in model.context_predictor]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def chunks_rotated_at(model, positions_per_call, run):
    """True if, while run() runs, P's attention layers are called once per entry of
    positions_per_call, each layer rotating by exactly model.rotary(those positions)."""
    seen = predictor_ropes(model, run)
    expected = [model.rotary(torch.tensor(pos)) for pos in positions_per_call for _ in model.context_predictor]
    return len(seen) == len(expected) and all(
        torch.equal(cos, e_cos) and torch.equal(sin, e_sin) for (cos, sin), (e_cos, e_sin) in zip(seen, expected))


@pytest.mark.parametrize("w", [2, 3, 4])
def test_predictor_chunks_sit_at_their_first_token(w, monkeypatch):
    """P's attention rotates chunk j by position j * w, its first token's: in a full forward (all
    chunks at once, positions 0, w, 2w, 3w), in a prefill (chunk 0), and in each decode_step that
    completes a chunk (w, 2w, 3w in turn). Planting either wrong choice in chunk_position, the chunk
    index j or the chunk's last token j * w + w - 1, fails the check."""
    model = sharp(seed=w, chunk_size=w)
    T = 4 * w + 1
    seq = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(w))

    def decode():
        _, state = Engine(model).prefill(seq[:, :w + 1])
        for t in range(w + 1, T):
            decode_step(model, seq[:, t:t + 1], state)

    def first_tokens():
        return (chunks_rotated_at(model, [[0, w, 2 * w, 3 * w]], lambda: model(seq))
                and chunks_rotated_at(model, [[0], [w], [2 * w], [3 * w]], decode))

    assert first_tokens()
    for wrong in (lambda j: j, lambda j: j * w + w - 1):
        monkeypatch.setattr(model, "chunk_position", wrong)
        assert not first_tokens(), "a planted chunk position went unnoticed"
        monkeypatch.undo()


@pytest.mark.parametrize("w,T", [(2, 9), (3, 12), (4, 16)])
def test_predicted_context_rotary_matches_independent_computation(w, T, monkeypatch):
    """predicted_context on the Pythia block equals c_j = chunk means through P's blocks one by
    one, rotated at j * w (1e-6). The spacing of the positions reaches the contexts: the chunk
    index j (spacing 1) moves them far beyond that. A common shift of all chunks does not (RoPE
    sees differences only): the last token's j * w + w - 1 gives the same contexts to 1e-5, which
    is why the test above checks the positions themselves."""
    model = sharp(seed=T, chunk_size=w)
    h = torch.randn(2, T, 32, generator=torch.Generator().manual_seed(w))
    K = T // w

    def reference(chunk_pos):
        c = torch.stack([h[:, j * w:(j + 1) * w].mean(dim=1) for j in range(K)], dim=1)
        for block in model.context_predictor:
            c = block(c, None, model.rotary(chunk_pos))
        k = (torch.arange(T) + 1) // w
        return torch.cat([h[:, :1], c], dim=1)[:, k]

    with torch.no_grad():
        out = model.predicted_context(h)
        torch.testing.assert_close(out, reference(torch.arange(K) * w), rtol=0, atol=1e-6)
        assert (out - reference(torch.arange(K))).abs().max() > 1e-2
        monkeypatch.setattr(model, "chunk_position", lambda j: j * w + w - 1)
        torch.testing.assert_close(model.predicted_context(h), out, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- 3. KV-cache decoding on RoPE

@pytest.mark.parametrize("w,n_enc,n_ctx,parallel", [(1, 0, 2, True), (3, 1, 2, True), (4, 0, 2, False),
                                                     (4, 1, 0, True), (3, 0, 0, False)])
def test_cached_logits_match_full_forward_rotary(w, n_enc, n_ctx, parallel):
    """Prefill then decode_step on the Pythia block (P's cache at chunk positions j*w, E's and D's
    at token positions): the next-token logits equal a full forward over the same tokens to 1e-5
    at every step, across at least three chunk boundaries, prompts shorter and longer than w."""
    model = sharp(seed=w, chunk_size=w, n_enc_layer=n_enc, n_ctx_layer=n_ctx, parallel_residual=parallel)
    for P in {max(w - 1, 1), w + 2}:
        steps = 4 * w + 2
        seq = torch.randint(0, V, (2, P + steps), generator=torch.Generator().manual_seed(P))
        with torch.no_grad():
            logits, state = Engine(model).prefill(seq[:, :P])
            torch.testing.assert_close(logits[:, -1], full_last_logits(model, seq[:, :P]), rtol=0, atol=1e-5)
            for t in range(P, P + steps):
                step_logits = decode_step(model, seq[:, t:t + 1], state)
                torch.testing.assert_close(step_logits[:, 0], full_last_logits(model, seq[:, :t + 1]),
                                           rtol=0, atol=1e-5, msg=lambda m: f"P={P}, position {t}: {m}")


@pytest.mark.parametrize("w,n_ctx", [(1, 2), (3, 2), (4, 2), (4, 0)])
def test_generate_across_block_size_rotary(w, n_ctx, monkeypatch):
    """Greedy generation on the Pythia block, from a prompt shorter and one longer than block_size,
    well past block_size: with the KV cache it gives exactly the tokens of repeated full
    forwards, and the logits it chooses from equal theirs to 1e-5 at every step."""
    model = sharp(seed=w, chunk_size=w, n_ctx_layer=n_ctx, block_size=16)
    seen = record_greedy_choices(monkeypatch)
    for P in (5, 20):
        prompt = torch.randint(0, V, (3, P), generator=torch.Generator().manual_seed(w + P))
        out_cached = Engine(model).generate(prompt, 24, temperature=0)
        cached, seen[:] = list(seen), []
        out_full = Engine(model).generate(prompt, 24, temperature=0, use_cache=False)
        assert out_cached.size(1) == P + 24 > model.config.block_size
        assert torch.equal(out_cached, out_full)
        assert len({tuple(row) for row in out_cached[:, P:].tolist()}) > 1  # the rows decode apart
        for step, (a, b) in enumerate(zip(cached, seen)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=lambda m: f"P={P}, step {step}: {m}")
        seen.clear()


@pytest.mark.parametrize("n_layer", [1, 2])
def test_a_slid_cache_is_not_the_window(n_layer):
    """Why generate re-prefills past block_size on RoPE too. Slide a full cache by one (drop the
    oldest key and value of every layer, move the rest one slot and one position down: the cache's
    slots are the window's positions, and RoPE is relative, so that is keeping them where they
    were) and decode the next token: with one layer that is the forward over the new window
    (1e-5), with two it is not: the second layer's cached keys were computed while the dropped
    token was in the window. (Plain Pythia, no chunks; a predictor adds a shifted chunk grid on top.)"""
    model = sharp(seed=n_layer, n_layer=n_layer, n_ctx_layer=0, block_size=8)
    seq = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, state = Engine(model).prefill(seq[:, :8])
        down = model.rotary(torch.tensor([-1]))  # a cached key is rotated: turning it by -1 moves it to p - 1
        for cache in state.encoder + state.decoder:
            cache.k[:, :, :7], cache.v[:, :, :7] = apply_rotary(cache.k[:, :, 1:8], *down), cache.v[:, :, 1:8].clone()
        state.pos.fill_(7)  # the new token's slot and position
        slid = decode_step(model, seq[:, 8:9], state)[:, 0]
        window = full_last_logits(model, seq[:, 1:9])
    gap = (slid - window).abs().max().item()
    assert gap < 1e-5 if n_layer == 1 else gap > 1e-2, gap


# ---------------------------------------------------------------- 4. GPT-2 checkpoints from before

NEW_FIELDS = ("rotary_pct", "rotary_base", "parallel_residual", "tie_embeddings", "gelu_approximate", "layer_norm_eps")


def test_gpt2_defaults_are_unchanged():
    """The new fields default to GPT-2's block: learned positions (a wpe table), sequential
    residual, tied head, tanh GELU, eps 1e-5, and the GPT-2 state_dict names."""
    model = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=16))
    assert model.transformer.wpe.weight.shape == (16, 16) and model.rotary(torch.arange(3)) is None
    assert model.lm_head.weight is model.transformer.wte.weight
    block = model.transformer.h[0]
    assert not block.parallel_residual and block.mlp.gelu.approximate == "tanh" and block.ln_1.eps == 1e-5


def test_gpt2_checkpoint_from_before_loads_samples_and_resumes(char_data, tmp_path, capsys):
    """A train.py checkpoint whose model_args lack the new fields (as every checkpoint written
    before the Pythia backbone) samples the same text and resumes to the same losses as the
    same checkpoint with them."""
    run_train(tiny_args(char_data, tmp_path / "new", max_iters=2, eval_interval=2))
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    ckpt = torch.load(tmp_path / "old" / "ckpt.pt", weights_only=True)
    assert set(NEW_FIELDS) <= set(ckpt["model_args"])
    ckpt["model_args"] = {k: v for k, v in ckpt["model_args"].items() if k not in NEW_FIELDS}
    torch.save(ckpt, tmp_path / "old" / "ckpt.pt")

    texts = []
    for run in ("new", "old"):
        status, out, err = cli(capsys, sample, f"--out_dir={tmp_path / run}", "--start=ROMEO:", "--max_new_tokens=30",
                               "--temperature=0", "--num_samples=1", "--device=cpu")
        assert status == 0, err
        texts.append(out)
    assert texts[0] == texts[1] and texts[0].startswith("ROMEO:")

    losses = []
    for run in ("new", "old"):
        run_train(tiny_args(char_data, tmp_path / run, max_iters=4, eval_interval=2, init_from="resume"))
        train_rows, eval_rows = read_log(tmp_path / run)
        losses.append([(r["iter"], r.get("val_loss"), r["train_loss"]) for r in train_rows + eval_rows if r["iter"] > 2])
    assert losses[0] == losses[1] and [row[0] for row in losses[0]] == [3, 4]


# ---------------------------------------------------------------- 5. the NeoX tokenizer

def test_neox_tokenizer_round_trips(neox_tokenizer_dir):
    """Tokenizer({'tokenizer': 'neox', 'tokenizer_path': folder}) reads the folder's
    tokenizer.json: text round-trips exactly (spaces before punctuation, runs of spaces, newlines,
    characters it never saw as bytes), no BOS or EOS is added, '<|endoftext|>' is its special
    token, vocab_size counts the added tokens; and its ids are those transformers' AutoTokenizer
    gives for the same folder (the tokenizer Hugging Face users load for Pythia)."""
    from transformers import AutoTokenizer
    tok = Tokenizer({"tokenizer": "neox", "tokenizer_path": str(neox_tokenizer_dir)})
    hf = AutoTokenizer.from_pretrained(str(neox_tokenizer_dir))
    assert tok.vocab_size == len(hf) == 302 and tok.eot_token == 0
    texts = ("Before we proceed, hear me speak.", "  Speak ,speak .\n\nCafé ünïcode ✓", "x", "a    b  c   d",
             "speak.<|endoftext|>All")
    for text in texts:
        ids = tok.encode(text)
        assert tok.decode(ids) == text and max(ids) < tok.vocab_size
        assert ids == hf.encode(text, add_special_tokens=False)
    assert len(tok.encode("First Citizen: speak.")) < len("First Citizen: speak.")  # merges apply
    assert tok.encode("a    b") == tok.encode("a") + [hf.convert_tokens_to_ids(" " * 4)] + tok.encode("b")
    assert tok.encode("speak.<|endoftext|>All") == tok.encode("speak.") + [tok.eot_token] + tok.encode("All")


def test_neox_tokenizer_errors(tmp_path, monkeypatch):
    """A folder that is not there, one without tokenizer.json, and tokenizers not installed, are
    one-line UserErrors that name the fix."""
    for path in (tmp_path / "no_such_folder", tmp_path):
        with pytest.raises(UserError, match=f"cannot load the neox tokenizer from '{path}'") as e:
            Tokenizer({"tokenizer": "neox", "tokenizer_path": str(path)})
        assert "\n" not in str(e.value)
    monkeypatch.setitem(__import__("sys").modules, "tokenizers", None)  # as if not installed
    with pytest.raises(UserError, match="pip install tokenizers"):
        Tokenizer({"tokenizer": "neox", "tokenizer_path": str(tmp_path)})
    with pytest.raises(UserError, match="expected char, gpt2 or neox"):
        Tokenizer({"tokenizer": "sentencepiece"})


# ---------------------------------------------------------------- configuration and bookkeeping

# (n_layer, n_head, n_embd) and the Pythia README's parameter counts: total, non-embedding
PYTHIA_SIZES = {"70m": (6, 8, 512, 70_426_624, 18_915_328), "160m": (12, 12, 768, 162_322_944, 85_056_000),
                "410m": (24, 16, 1024, 405_334_016, 302_311_424), "1b": (16, 8, 2048, 1_011_781_632, 805_736_448),
                "1.4b": (24, 16, 2048, 1_414_647_808, 1_208_602_624)}


@pytest.mark.parametrize("size", PYTHIA_SIZES)
def test_pythia_parameter_counts_and_flops(size):
    """At each Pythia size (vocabulary 50304, 2048 positions) the n_ctx_layer=0 model has the
    published total parameter count; without its two embedding matrices, the published
    non-embedding count. get_num_params leaves out only the lookup wte (no wpe exists), so FLOPs
    count the untied head's matmul: 6 N + 12 L C T with N = non-embedding + head."""
    L, H, C, total, non_embedding = PYTHIA_SIZES[size]
    with torch.device("meta"):
        model = GPT(GPTConfig(n_layer=L, n_head=H, n_embd=C, vocab_size=50304, block_size=2048, n_ctx_layer=0,
                              **PYTHIA))
    head = 50304 * C
    assert model.param_breakdown() == {"token": total, "predictor": 0}
    assert model.get_num_params() == non_embedding + head
    assert model.flops_per_token(2048) == 6 * (non_embedding + head) + 12 * L * C * 2048


def test_crop_block_size_rotary():
    """crop_block_size on RoPE has no table to crop: the config shrinks, the logits of a short
    sequence are unchanged, and longer ones are refused."""
    model = sharp(block_size=32)
    idx = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(0))
    before = model(idx, all_logits=True)[0]
    model.crop_block_size(12)
    assert model.config.block_size == 12 and "wpe" not in model.transformer
    assert torch.equal(model(idx, all_logits=True)[0], before)
    with pytest.raises(AssertionError):
        model(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.parametrize("field,value", [("rotary_pct", -0.1), ("rotary_pct", 1.5), ("rotary_pct", 0.05),
                                         ("rotary_pct", 0.1875), ("rotary_base", 0.0),
                                         ("gelu_approximate", "exact"), ("layer_norm_eps", 0.0)])
def test_invalid_pythia_fields_raise_naming_the_field(field, value):
    """Bad new fields raise a ValueError naming the field; with head size 16, rotary_pct 0.05
    rotates 0 dims and 0.1875 rotates 3 (RoPE turns pairs)."""
    with pytest.raises(ValueError, match=field):
        GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32, **{field: value})
    GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32, rotary_pct=0.125)  # 2 dims: fine


def test_backbones_are_gpt2_and_pythia():
    """BACKBONES, what --backbone sets in bench.py and compare.py: 'gpt2' is GPTConfig's
    defaults, 'pythia' the block from_pretrained builds from a Pythia folder (the PYTHIA fields
    above, checked against Hugging Face there)."""
    defaults = GPTConfig()
    assert BACKBONES["gpt2"] == {k: getattr(defaults, k) for k in BACKBONES["gpt2"]}
    assert BACKBONES["pythia"] == {k: PYTHIA[k] for k in BACKBONES["pythia"]}
    assert set(BACKBONES["pythia"]) == set(NEW_FIELDS)
    with pytest.raises(UserError, match="unknown backbone 'neox': use one of gpt2, pythia"):
        backbone_fields("neox")


# ---------------------------------------------------------------- 6. train.py and sample.py from Pythia weights

@pytest.fixture(scope="module")
def neox_data(neox_tokenizer_dir, tmp_path_factory):
    """A data_root holding shakespeare_neox: tiny Shakespeare's first 20,000 characters in the
    test's NeoX BPE (prepare.py shakespeare --tokenizer=neox)."""
    import prepare
    root = tmp_path_factory.mktemp("neox_data")
    with open(os.path.join(ROOT, "data", "tinyshakespeare.txt")) as f:
        (root / "shakespeare.txt").write_text(f.read()[:20000])
    prepare.main(["shakespeare", f"--data_root={root}", f"--source={root / 'shakespeare.txt'}", "--tokenizer=neox",
                  f"--tokenizer_path={neox_tokenizer_dir}"])
    return str(root)


@pytest.fixture(scope="module")
def pythia_tok_dir(neox_tokenizer_dir, tmp_path_factory):
    """A Pythia-format folder that holds its tokenizer, as the Pythia repositories do, and whose
    vocabulary pads the tokenizer's 302 ids to 320, as Pythia's 50304 pads 50277; (path, its
    Hugging Face model)."""
    path = tmp_path_factory.mktemp("pythia_tok")
    return path, make_pythia_folder(path, vocab_size=320, tokenizer=neox_tokenizer_dir)


def pythia_args(data_root, out_dir, **overrides):
    """tiny_args on the NeoX dataset, whose shape (2 layers, 2 heads, 32 wide, block 32) is the
    test Pythia folder's: a run from it resumes with these settings and Pythia's block."""
    fields = BACKBONES["pythia"] | dict(bias=True, dataset="shakespeare_neox")
    return tiny_args(data_root, out_dir, **(fields | overrides))


def test_train_from_pythia_weights(neox_data, pythia_tok_dir, tmp_path):
    """train.py --init_from=<a local Pythia folder> on a dataset in its tokenizer: with
    n_ctx_layer=0 the val loss it reports is the Hugging Face model's mean cross-entropy on the
    same batches (1e-5), so the weights, the tokenizer's ids and the padded vocabulary (302 ids ->
    320, the folder's) all line up; a ContextLM from it trains, and resumes under Pythia's block."""
    path, hf = pythia_tok_dir
    summary = run_train(pythia_args(neox_data, tmp_path / "gpt", init_from=path, n_ctx_layer=0, eval_only=True,
                                    eval_iters=3))
    val = open_split(neox_data, "shakespeare_neox", "val")
    gen, losses = torch.Generator().manual_seed(0), []  # train.estimate_loss's batches
    with torch.no_grad():
        for _ in range(3):
            x, y = get_batch(val, torch.randint(len(val) - 32, (4,), generator=gen), 32, "cpu")
            losses.append(F.cross_entropy(hf(x).logits.flatten(0, 1), y.flatten()).item())
    assert summary["val_loss"] == pytest.approx(sum(losses) / 3, abs=1e-5)
    assert summary["params"]["predictor"] == 0

    run_train(pythia_args(neox_data, tmp_path / "clm", init_from=path, max_iters=2, eval_interval=2))
    ckpt = load_checkpoint(str(tmp_path / "clm"))
    assert ckpt["model_args"]["vocab_size"] == 320 and ckpt["model_args"]["n_ctx_layer"] == 2
    assert {k: ckpt["model_args"][k] for k in BACKBONES["pythia"]} == BACKBONES["pythia"]
    run_train(pythia_args(neox_data, tmp_path / "clm", init_from="resume", max_iters=4, eval_interval=2))
    assert [r["iter"] for r in plot.read_log(tmp_path / "clm")[1]] == [0, 2, 4]  # the last row an iteration


def swap_two_ids(tokenizer_json):
    """Make tokenizer.json another vocabulary: two of its tokens trade ids."""
    tokenizer = json.loads(tokenizer_json.read_text())
    vocab = tokenizer["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[40:42]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tokenizer_json.write_text(json.dumps(tokenizer))


def test_pretrained_weights_need_their_tokenizer(neox_data, char_data, pythia_tok_dir, pythia_dir, tmp_path, capsys):
    """Weights read ids as their tokenizer wrote them: Pythia weights on a char dataset, on a NeoX
    dataset of another vocabulary (two ids swapped), GPT-2 weights on a NeoX dataset, Pythia
    weights whose folder has no tokenizer to check against, and a name that is none of these:
    each one line naming the fix, before any training."""
    path, _ = pythia_tok_dir
    other = tmp_path / "other"
    shutil.copytree(path, other)
    swap_two_ids(other / "tokenizer.json")
    gpt2 = tmp_path / "gpt2"  # only config.json is read before the refusal
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    cases = [(char_data, "shakespeare_char", path, ("reads neox token ids", "'shakespeare_char' is tokenized with char",
                                                    "python prepare.py pile")),
             (neox_data, "shakespeare_neox", other, ("not with", "own: prepare it with --tokenizer_path=")),
             (neox_data, "shakespeare_neox", gpt2, ("reads gpt2 token ids", "python prepare.py openwebtext")),
             (neox_data, "shakespeare_neox", pythia_dir[0], ("cannot load the neox tokenizer from",)),
             (neox_data, "shakespeare_neox", "pythia", ("not scratch, resume, a GPT-2 or Pythia name",))]
    for data_root, dataset, init_from, needles in cases:
        status, _, err = cli(capsys, train, *tiny_args(data_root, tmp_path / "out", dataset=dataset,
                                                       init_from=init_from, max_iters=1))
        assert_one_line_error(status, err, *needles)
    assert not os.path.exists(tmp_path / "out" / "ckpt.pt")


def test_eval_pythia_folder_with_its_tokenizer(neox_data, char_data, pythia_tok_dir, tmp_path, capsys):
    """eval.py --ckpt=<a local Pythia folder> scores a NeoX dataset with the Pythia weights as
    they are: its ppl over non-overlapping windows is the Hugging Face model's, on the same
    tokens (1e-5). The dataset must be in the folder's tokenizer: a char dataset, or a NeoX one
    whose tokenizer.json has two ids swapped, is refused in one line."""
    import eval as eval_script
    path, hf = pythia_tok_dir
    out = tmp_path / "r.json"
    n = 4 * 32 + 1  # four windows of the folder's 32 positions, every target scored once
    assert cli(capsys, eval_script, f"--ckpt={path}", "--datasets=shakespeare_neox", f"--data_root={neox_data}",
               f"--max_tokens={n}", "--stride=32", "--device=cpu", f"--json={out}")[0] == 0
    got = json.loads(out.read_text())[str(path)]["shakespeare_neox"]
    ids = torch.from_numpy(open_split(neox_data, "shakespeare_neox", "val")[:n].astype("int64"))
    with torch.no_grad():
        nll = F.cross_entropy(hf(ids[:-1].view(4, 32)).logits.flatten(0, 1), ids[1:]).item()
    assert got["tokens"] == n - 1 and got["ppl"] == pytest.approx(math.exp(nll), rel=1e-5)

    other = tmp_path / "other"  # a NeoX dataset in another vocabulary
    other.mkdir()
    shutil.copy(path / "tokenizer.json", other / "tokenizer.json")
    swap_two_ids(other / "tokenizer.json")
    shutil.copytree(os.path.join(neox_data, "shakespeare_neox"), tmp_path / "data" / "swapped")
    meta = json.loads((tmp_path / "data" / "swapped" / "meta.json").read_text()) | {"tokenizer_path": str(other)}
    (tmp_path / "data" / "swapped" / "meta.json").write_text(json.dumps(meta))
    for data_root, dataset, needles in [
            (char_data, "shakespeare_char", ("reads neox tokens", "'shakespeare_char' is char tokens (65 ids)")),
            (tmp_path / "data", "swapped", ("reads neox tokens", f"but 'swapped' is neox tokens (302 ids, {other})"))]:
        status, _, err = cli(capsys, eval_script, f"--ckpt={path}", f"--datasets={dataset}", f"--data_root={data_root}")
        assert_one_line_error(status, err, *needles, "evaluate on a dataset prepared with the model's tokenizer")


SEPARATOR = "\n---------------\n"  # what sample.py prints after each sample


def test_sample_pythia_by_name_with_its_tokenizer(pythia_tok_dir, monkeypatch, tmp_path, capsys):
    """sample.py --init_from=pythia-160m, from an offline hub cache holding a tiny copy of the
    repository: the text is the Hugging Face model's greedy continuation over the tokenizer's
    ids, decoded by the tokenizer of that same repository."""
    path, hf = pythia_tok_dir
    hub_cache(tmp_path, monkeypatch, "EleutherAI/pythia-160m", path)
    prompt = "First Citizen:"
    status, out, err = cli(capsys, sample, "--init_from=pythia-160m", f"--start={prompt}", "--temperature=0",
                           "--num_samples=1", "--max_new_tokens=8", "--device=cpu")
    assert status == 0, err
    tok = Tokenizer({"tokenizer": "neox", "tokenizer_path": str(path)})
    ids = tok.encode(prompt)
    with torch.no_grad():
        for _ in range(8):
            ids.append(hf(torch.tensor([ids])).logits[0, -1, :tok.vocab_size].argmax().item())
    assert out.split(SEPARATOR)[0] == tok.decode(ids) and len(ids) > len(tok.encode(prompt))


def test_sample_local_pythia_folder_never_emits_padding_ids(pythia_tok_dir, tmp_path, capsys):
    """The folder's vocabulary is padded past the tokenizer's ids (320 > 302), as Pythia's 50304
    pads 50277. Made to win outright here (the final LayerNorm keeps feature 0 only, two padding
    rows of the head get +-100 there, so greedy decoding would pick one whatever the sign), the
    padding ids are still never sampled: sample.py keeps to the tokenizer's ids."""
    from safetensors.torch import load_file, save_file
    path, _ = pythia_tok_dir
    edited = tmp_path / "edited"
    shutil.copytree(path, edited)
    weights = load_file(edited / "model.safetensors")
    weights["gpt_neox.final_layer_norm.weight"].zero_()[0] = 1.0
    weights["gpt_neox.final_layer_norm.bias"].zero_()
    weights["embed_out.weight"][302:304, 0] = torch.tensor([100.0, -100.0])
    save_file(weights, edited / "model.safetensors", metadata={"format": "pt"})
    model = from_pretrained(str(edited), dict(n_ctx_layer=0)).eval()
    prompt = "All: Speak"
    tok = Tokenizer({"tokenizer": "neox", "tokenizer_path": str(edited)})
    with torch.no_grad():  # the plant works: unrestricted, greedy decoding picks a padding id
        assert model(torch.tensor([tok.encode(prompt)]))[0][0, -1].argmax() >= 302
    status, out, err = cli(capsys, sample, f"--init_from={edited}", f"--start={prompt}", "--temperature=0",
                           "--num_samples=2", "--max_new_tokens=6", "--device=cpu")
    assert status == 0, err
    texts = out.split(SEPARATOR)
    assert len(texts) == 3 and all(t.startswith(prompt) and len(t) > len(prompt) for t in texts[:2])


# ---------------------------------------------------------------- 7. the Pythia configs

# the learning rates of EleutherAI/pythia's models/<size>/pythia-<size>.yml
PYTHIA_LR = {"70m": 1e-3, "160m": 6e-4, "410m": 3e-4, "1b": 2.5e-4, "1.4b": 2e-4}


@pytest.mark.parametrize("size", PYTHIA_LR)
def test_pythia_configs_are_pythias_recipe(size):
    """config/train_contextlm_pythia_<size>.py is ContextLM (2-layer predictor, w=4) on Pythia-<size>
    trained with Pythia's published recipe: 1024 sequences of 2048 tokens a step (divisible over
    8 GPUs), 143,000 steps, 1% warm-up, cosine to 10%, the size's learning rate, weight decay 0.1,
    betas (0.9, 0.95), clipping 1.0, on the Pile. With --n_ctx_layer=0, the model train.py builds
    on the Pile's meta.json (NeoX BPE, 50277 ids) is Pythia-<size>: vocabulary 50304 and the
    published parameter count."""
    path = os.path.join(ROOT, "config", f"train_contextlm_pythia_{size}.py")
    c = parse_config(train.DEFAULTS, [path])
    n_layer, n_head, n_embd, total, _ = PYTHIA_SIZES[size]
    assert (c["n_layer"], c["n_head"], c["n_embd"], c["block_size"], c["dataset"]) == (n_layer, n_head, n_embd, 2048,
                                                                                       "pile")
    assert {k: c[k] for k in BACKBONES["pythia"]} == BACKBONES["pythia"] and c["bias"] is True
    assert (c["n_ctx_layer"], c["chunk_size"], c["n_enc_layer"], c["dropout"]) == (2, 4, 0, 0.0)
    assert c["batch_size"] * c["gradient_accumulation_steps"] == 1024 and c["gradient_accumulation_steps"] % 8 == 0
    assert c["max_iters"] == c["lr_decay_iters"] == 143000 and c["warmup_iters"] == 1430 and c["decay_lr"]
    assert c["learning_rate"] == PYTHIA_LR[size] and c["min_lr"] == pytest.approx(c["learning_rate"] / 10)
    assert (c["weight_decay"], c["beta1"], c["beta2"], c["grad_clip"]) == (0.1, 0.9, 0.95, 1.0)
    assert (c["out_dir"], c["init_from"]) == (f"out-contextlm-pythia-{size}", "scratch")
    baseline = parse_config(train.DEFAULTS, [path, "--n_ctx_layer=0"])
    with torch.device("meta"):
        model, _ = train.build_model(baseline, {"tokenizer": "neox", "vocab_size": 50277}, None)
    assert model.config.vocab_size == 50304 and model.param_breakdown() == {"token": total, "predictor": 0}


@pytest.mark.parametrize("tokenizer,ids,padded", [("gpt2", 50257, 50304), ("neox", 50277, 50304), ("neox", 302, 320),
                                                  ("char", 65, 65)])
def test_bpe_vocabularies_are_padded_to_64(tokenizer, ids, padded):
    """train.py pads a BPE vocabulary up to a multiple of 64 (GPT-2's and Pythia's both become
    50304); a character vocabulary is kept as it is."""
    c = train.DEFAULTS | dict(n_layer=1, n_head=1, n_embd=8, block_size=8, n_ctx_layer=0)
    model, _ = train.build_model(c, {"tokenizer": tokenizer, "vocab_size": ids}, None)
    assert model.config.vocab_size == model.lm_head.weight.size(0) == padded


def test_small_pythia_config_trains(char_data, tmp_path):
    """config/train_pythia_shakespeare_char.py end to end, cut to 20 steps of 8 sequences: the val
    loss falls well below its start (4.19 -> 3.30 here), and what it trained is Pythia's block (no
    position table, its own head)."""
    config = os.path.join(ROOT, "config", "train_pythia_shakespeare_char.py")
    run_train([config, f"--data_root={char_data}", f"--out_dir={tmp_path}", "--max_iters=20", "--batch_size=8",
               "--eval_interval=10", "--eval_iters=4", "--always_save_checkpoint=True"])
    evals = read_log(tmp_path)[1]
    assert [r["iter"] for r in evals] == [0, 10, 20] and evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5
    ckpt = load_checkpoint(str(tmp_path))
    assert {k: ckpt["model_args"][k] for k in BACKBONES["pythia"]} == BACKBONES["pythia"]
    assert "transformer.wpe.weight" not in ckpt["model"]
    assert not torch.equal(ckpt["model"]["lm_head.weight"], ckpt["model"]["transformer.wte.weight"])
