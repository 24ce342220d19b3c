"""Acceptance tests of KV-cache decoding (docs/method.md, "Incremental decoding"): cached logits equal
full forwards at every step, greedy generation with and without the cache agree (also past
block_size, and in the buffers of an earlier call), sampling is reproducible, and the compiled
decode step compiles once. Tiny configs, CPU, deterministic."""

import pytest
import torch
from conftest import greedy_compiled, record_greedy_choices, sharp_model

from engine import DecodingState, Engine, decode_step


V = 50


def sharp(seed=0, **kw):
    """conftest.sharp_model with this file's shape and an untied head, so that greedy
    continuations do not just repeat the last token and do exercise the contexts."""
    cfg = dict(block_size=32, vocab_size=V, n_layer=3, n_head=2, n_embd=16, chunk_size=4, n_ctx_layer=2, n_enc_layer=0)
    return sharp_model(cfg | kw, seed, untie_head=True)


def full_last_logits(model, idx):
    """Next-token logits (B, vocab) by a full forward over idx, no cache."""
    with torch.no_grad():
        return model(idx)[0][:, -1, :]


# ---------------------------------------------------------------- 1. cached logits == full forward

def prompt_lengths(w):
    """Prompts shorter than, equal to and longer than w (shorter is impossible for w = 1)."""
    return ([w - 1] if w > 1 else []) + [w, w + 2]


CACHE_CASES = [(w, n_enc, n_ctx, P)
               for w in (1, 3, 4)
               for n_enc in (0, 1)
               for n_ctx in (2, 0)
               for P in prompt_lengths(w)]


@pytest.mark.parametrize("w,n_enc,n_ctx,P", CACHE_CASES)
@pytest.mark.parametrize("scale", ["learned", "none"])
def test_cached_logits_match_full_forward(w, n_enc, n_ctx, P, scale):
    """Prefill then decode_step, one token at a time: the
    next-token logits equal a full forward over the same tokens to 1e-5 at every step, across at
    least three chunk boundaries (n_ctx_layer=0, plain GPT, takes the same path), with the
    context at the token state's scale (the default) and as P outputs it (runs before 2026-12)."""
    model = sharp(seed=w + P, chunk_size=w, n_enc_layer=n_enc, n_ctx_layer=n_ctx, context_scale=scale)
    steps = 4 * w + 2  # the prompt's chunk plus at least three more boundaries
    assert P + steps <= model.config.block_size
    seq = torch.randint(0, V, (2, P + steps), generator=torch.Generator().manual_seed(P))
    with torch.no_grad():
        logits, state = Engine(model).prefill(seq[:, :P])
        assert state.pos == P
        torch.testing.assert_close(logits[:, -1], full_last_logits(model, seq[:, :P]), rtol=0, atol=1e-5)
        boundaries = 0
        for t in range(P, P + steps):
            step_logits = decode_step(model, seq[:, t:t + 1], state)
            assert step_logits.shape == (2, 1, V) and state.pos == t + 1
            torch.testing.assert_close(step_logits[:, 0], full_last_logits(model, seq[:, :t + 1]),
                                       rtol=0, atol=1e-5, msg=lambda m: f"position {t}: {m}")
            boundaries += (t + 1) % w == 0
    assert boundaries >= 3


def test_cached_logits_detect_a_stale_context():
    """The comparison is live: if decode_step never stepped P (the context stuck at the prefill's
    ĉ), the logits would differ from the full forward by far more than 1e-5."""
    model = sharp(chunk_size=3)
    seq = torch.randint(0, V, (1, 14), generator=torch.Generator().manual_seed(0))
    worst = 0.0
    with torch.no_grad():
        _, state = Engine(model).prefill(seq[:, :2])
        for t in range(2, 14):
            model.config.chunk_size = 10 ** 6  # no chunk ever completes while decoding
            logits = decode_step(model, seq[:, t:t + 1], state)
            model.config.chunk_size = 3
            worst = max(worst, (logits[:, 0] - full_last_logits(model, seq[:, :t + 1])).abs().max().item())
    assert worst > 1e-2


@pytest.mark.parametrize("w,n_ctx", [(1, 2), (3, 2), (4, 2), (4, 0)])
def test_generate_logits_across_block_size(w, n_ctx, monkeypatch):
    """Through Engine.generate, past block_size (the window re-prefilled each step): the logits
    generate samples from with the cache equal those without it to 1e-5 at every step."""
    model = sharp(seed=w, chunk_size=w, n_ctx_layer=n_ctx, block_size=16)
    seen = record_greedy_choices(monkeypatch)
    prompt = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(w))
    out_cached = Engine(model).generate(prompt, 20, temperature=0)
    cached, seen[:] = list(seen), []
    out_full = Engine(model).generate(prompt, 20, temperature=0, use_cache=False)
    assert out_cached.size(1) == 25 > model.config.block_size
    assert torch.equal(out_cached, out_full)
    assert len(cached) == len(seen) == 20
    for step, (a, b) in enumerate(zip(cached, seen)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=lambda m: f"step {step}: {m}")


# ---------------------------------------------------------------- 2. greedy: cache == no cache

@pytest.mark.parametrize("w,n_enc,n_ctx,P", [
    (1, 0, 2, 3), (3, 1, 2, 2), (4, 0, 2, 4), (4, 1, 2, 7), (3, 0, 0, 5),
    (4, 0, 2, 20),  # a prompt longer than block_size: the first window is already cropped
])
def test_greedy_cache_equals_no_cache(w, n_enc, n_ctx, P):
    """Greedy generation with the KV cache produces exactly the tokens of greedy generation by
    repeated full forwards, for a batch of 3 equal-length prompts, well past block_size."""
    model = sharp(seed=P, chunk_size=w, n_enc_layer=n_enc, n_ctx_layer=n_ctx, block_size=16)
    prompt = torch.randint(0, V, (3, P), generator=torch.Generator().manual_seed(w))
    n_new = 24
    cached = Engine(model).generate(prompt, n_new, temperature=0)
    full = Engine(model).generate(prompt, n_new, temperature=0, use_cache=False)
    assert cached.shape == (3, P + n_new) and P + n_new > model.config.block_size
    assert torch.equal(cached, full)
    assert len({tuple(row) for row in cached[:, P:].tolist()}) > 1  # the rows are decoded apart


def addresses(state):
    """Where the buffers of a DecodingState lie."""
    caches = state.encoder + state.predictor + state.decoder
    return [t.data_ptr() for t in (state.pos, state.chunk, state.context, *(c.k for c in caches),
                                   *(c.v for c in caches))]


def test_a_decoding_state_serves_another_call():
    """generate(state=...) decodes in the buffers of an earlier call (on CUDA the compiled step's
    CUDA graph replays on them): a short prompt after a long one, past block_size both, gives the
    tokens of a fresh state, written in the same buffers."""
    model = sharp(seed=4, chunk_size=3, n_enc_layer=1, block_size=16)
    long, short = (torch.randint(0, V, (2, P), generator=torch.Generator().manual_seed(P)) for P in (12, 5))
    state = DecodingState(model.config)
    assert torch.equal(Engine(model).generate(long, 20, temperature=0, state=state), Engine(model).generate(long, 20, temperature=0))
    before = addresses(state)
    assert torch.equal(Engine(model).generate(short, 20, temperature=0, state=state), Engine(model).generate(short, 20, temperature=0))
    assert addresses(state) == before


# ---------------------------------------------------------------- 3. sampling

@pytest.mark.parametrize("use_cache", [True, False])
def test_sampling_reproducible_with_seed(use_cache):
    """Sampling with a fixed seed is reproducible; another seed gives another continuation;
    the output has shape (B, T + max_new_tokens) and starts with the prompt."""
    model = sharp(chunk_size=3)
    prompt = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(0))

    def sample(seed):
        torch.manual_seed(seed)
        return Engine(model).generate(prompt, 20, temperature=0.9, top_k=20, use_cache=use_cache)

    a, b, c = sample(7), sample(7), sample(8)
    assert a.shape == (2, 26)
    assert torch.equal(a[:, :6], prompt)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("w,n_ctx", [(3, 2), (4, 0)])
def test_top_k_1_is_greedy(w, n_ctx):
    """top_k=1 at any temperature samples the argmax: it equals temperature=0 generation."""
    model = sharp(seed=2, chunk_size=w, n_ctx_layer=n_ctx, block_size=16)
    prompt = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(1))
    greedy = Engine(model).generate(prompt, 15, temperature=0)
    torch.manual_seed(0)
    assert torch.equal(Engine(model).generate(prompt, 15, temperature=1.5, top_k=1), greedy)


@pytest.mark.parametrize("B,T,n", [(1, 1, 1), (2, 3, 0), (3, 4, 5), (2, 10, 30)])
def test_generate_shape(B, T, n):
    """generate returns (B, T + max_new_tokens), prompt first, token ids within the vocabulary."""
    model = sharp(block_size=16)
    prompt = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(B))
    torch.manual_seed(0)
    out = Engine(model).generate(prompt, n, temperature=1.0)
    assert out.shape == (B, T + n) and out.dtype == torch.long
    assert torch.equal(out[:, :T], prompt)
    assert out.min() >= 0 and out.max() < V


def first_at(row, token):
    """The index of the first `token` in row (a list), or None."""
    return row.index(token) if token in row else None


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_stops_once_every_row_has_its_stop_token(use_cache):
    """stop_token (sample.py's end-of-text): generation ends at the step where the last row
    produces it for the first time, and is the run without stop_token cut there; a token no row
    produces stops nothing. Sampled with the same seed, so both runs make the same draws."""
    model = sharp(seed=3, chunk_size=3, block_size=16)
    prompt = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(5))

    def generate(**kw):
        torch.manual_seed(0)
        return Engine(model).generate(prompt, 30, temperature=1.0, use_cache=use_cache, **kw)  # past block_size too

    full = generate()
    rows = full[:, 4:].tolist()
    # a token both rows produce, first at different steps (the rows stop apart)
    shared = [t for t in rows[0] if t in rows[1] and first_at(rows[0], t) != first_at(rows[1], t)]
    assert shared, rows
    last = max(first_at(rows[0], shared[0]), first_at(rows[1], shared[0]))
    assert last < 29  # it will end early
    assert torch.equal(generate(stop_token=shared[0]), full[:, :4 + last + 1])

    never = next(t for t in range(V) if t not in rows[0] + rows[1])
    assert torch.equal(generate(stop_token=never), full)


# ---------------------------------------------------------------- 4. the compiled decode step

def test_compiled_decode_step_compiles_once(monkeypatch):
    """Engine(model, compile=True), as sample.py --compile and bench.py use it (inductor, CPU): the
    step's shapes do not change with the position, so 64 decode steps, across 16 chunk boundaries,
    compile it once, in one graph, and never again (error_on_recompile); a second generate() call,
    with a new DecodingState, compiles nothing either. The compiled steps choose exactly the tokens
    of full forwards, from logits within 1e-5 of theirs. (One model: compiling takes ~20 s, cold.)"""
    model = sharp(chunk_size=4, n_enc_layer=1, n_ctx_layer=1, block_size=80)
    prompt = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(0))
    # 65 tokens: a prefill, then 64 decode steps
    full, full_logits, compiled, logits, counters, _ = greedy_compiled(model, prompt, 65, monkeypatch)
    assert counters["stats"]["unique_graphs"] == 1 and sum(counters["graph_break"].values()) == 0
    assert sum((t + 1) % 4 == 0 for t in range(7, 7 + 64)) == 16
    assert all(torch.equal(tokens, full) for tokens in compiled)
    for step, (a, b) in enumerate(zip(logits, full_logits)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=lambda m: f"step {step}: {m}")
