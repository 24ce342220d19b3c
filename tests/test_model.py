"""Acceptance tests of the model (docs/method.md, "Forward pass", "Cost"): causality, the shifted
broadcast, the live context pathway, GPT-2 equivalence at n_ctx_layer=0, memorisation, config
validation and bookkeeping. Tiny configs, CPU, deterministic."""

import math

import pytest
import torch
import torch.nn as nn
from torch.nn import functional as F

from pretrained import from_pretrained
from model import GPT, Block, GPTConfig, gpt2_init, run_blocks
from train import context_ratio



def tiny(seed=0, **kw):
    """A tiny model in eval mode; kw override the tiny defaults. The context's learned gain starts
    at 1, not 0, so that the context pathway shows in every output from the first step."""
    cfg = dict(block_size=16, vocab_size=64, n_layer=3, n_head=2, n_embd=16,
               chunk_size=4, n_ctx_layer=2, n_enc_layer=0, context_gain_init=1.0)
    cfg.update(kw)
    torch.manual_seed(seed)
    return GPT(GPTConfig(**cfg)).eval()


def k_of(t, w):
    """docs/method.md step 5: position t receives ĉ_{k(t)}, k(t) = floor((t + 1) / w)."""
    return (t + 1) // w


# ---------------------------------------------------------------- 1. causality by perturbation

def causal_lengths(w, block_size=16):
    """T divisible by w, T not divisible by w, and T < w where there is one."""
    Ts = {2 * w if 2 * w <= block_size else w, 2 * w + 1 if 2 * w + 1 <= block_size else w + 3}
    if w > 1:
        Ts.add(w - 1)
    if w == 1:
        Ts.update({5, 7})
    return sorted(Ts)


CAUSAL_CASES = [(w, n_enc, n_layer, T)
                for w in (1, 2, 3, 4, 8)
                for n_enc, n_layer in ((0, 3), (2, 4))
                for T in causal_lengths(w)]


@pytest.mark.parametrize("w,n_enc,n_layer,T", CAUSAL_CASES)
def test_causality_by_perturbation(w, n_enc, n_layer, T):
    """Changing token j leaves every logit at positions < j bit-identical (torch.equal), for
    every j; and it does change some logit at a position >= j (the check is live)."""
    model = tiny(seed=w + 10 * n_enc, chunk_size=w, n_enc_layer=n_enc, n_layer=n_layer)
    g = torch.Generator().manual_seed(T)
    idx = torch.randint(0, 64, (2, T), generator=g)
    with torch.no_grad():
        base, _ = model(idx, all_logits=True)
        assert base.shape == (2, T, 64)
        for j in range(T):
            changed = idx.clone()
            changed[0, j] = (changed[0, j] + 1 + j) % 64
            out, _ = model(changed, all_logits=True)
            assert torch.equal(out[0, :j], base[0, :j]), f"token {j} leaked into positions < {j}"
            assert torch.equal(out[1], base[1]), "the other sequence of the batch changed"
            assert not torch.equal(out[0, j:], base[0, j:]), f"changing token {j} changed nothing"


def test_causality_catches_a_leak():
    """The perturbation check can fail: a broadcast shifted one chunk too early (position t
    receiving ĉ_{k(t)+1}, built partly from future tokens) is caught."""
    model = tiny(chunk_size=4)
    orig = model.predicted_context

    def leaky(h, state=None):  # ĉ_{k(t)+1} where it exists
        B, T, C = h.size()
        K = T // 4
        c = h[:, :K * 4].reshape(B, K, 4, C).mean(dim=2)
        c_hat = torch.cat([h[:, :1], run_blocks(model.context_predictor, c)], dim=1)
        k = torch.clamp((torch.arange(T) + 1) // 4 + 1, max=K)
        return c_hat[:, k]

    idx = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(0))
    model.predicted_context = leaky
    with torch.no_grad():
        base, _ = model(idx, all_logits=True)
        changed = idx.clone()
        changed[0, 5] = (changed[0, 5] + 1) % 64
        out, _ = model(changed, all_logits=True)
    model.predicted_context = orig
    assert not torch.equal(out[0, :5], base[0, :5])


# ---------------------------------------------------------------- 2. the shifted broadcast

class Tag(nn.Module):
    """A stand-in context predictor whose j-th output is identifiable: ĉ_{j+1} = (j+1) * ones."""

    def forward(self, x, cache=None, rope=None, slot=None):
        B, K, C = x.shape
        return torch.arange(1, K + 1, dtype=x.dtype).view(1, K, 1).expand(B, K, C).clone()


class Identity(nn.Module):
    """A stand-in context predictor that returns its input: ĉ_{j+1} = c_j."""

    def forward(self, x, cache=None, rope=None, slot=None):
        return x


def test_broadcast_worked_example():
    """docs/method.md's worked example, w=4, T=10: position t receives
    [c_init, c_init, c_init, ĉ1, ĉ1, ĉ1, ĉ1, ĉ2, ĉ2, ĉ2], c_init = h_0."""
    model = tiny(chunk_size=4)
    model.context_predictor = nn.ModuleList([Tag()])
    h = torch.full((1, 10, 16), -7.0)  # c_init is recognisable as -7
    out = model.predicted_context(h)
    assert out[0, :, 0].tolist() == [-7, -7, -7, 1, 1, 1, 1, 2, 2, 2]
    assert torch.equal(out, out[:, :, :1].expand_as(out))


@pytest.mark.parametrize("w", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("T", [1, 2, 3, 4, 7, 8, 9, 13, 16])
def test_broadcast_rule(w, T):
    """Over a grid of T and w (T < w included): position t receives ĉ_{k(t)},
    k(t) = floor((t+1)/w), with ĉ_0 = c_init = h_0 per sequence."""
    model = tiny(chunk_size=w)
    model.context_predictor = nn.ModuleList([Tag()])
    h = torch.randn(3, T, 16, generator=torch.Generator().manual_seed(T))
    out = model.predicted_context(h)
    assert out.shape == h.shape
    for t in range(T):
        k = k_of(t, w)
        expected = h[:, 0] if k == 0 else torch.full((3, 16), float(k))
        assert torch.equal(out[:, t], expected), (t, k)


@pytest.mark.parametrize("w", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("T", [3, 4, 10, 11, 16])
def test_mean_pooling_over_complete_chunks(w, T):
    """With an identity predictor, ĉ_{j+1} = c_j = mean(h[j*w:(j+1)*w]): the pooling is a mean over
    complete chunks only, in order. h_t = t makes every chunk mean identifiable."""
    model = tiny(chunk_size=w)
    model.context_predictor = nn.ModuleList([Identity()])
    h = torch.arange(T, dtype=torch.float32).view(1, T, 1).expand(2, T, 16).clone()
    out = model.predicted_context(h)
    for t in range(T):
        k = k_of(t, w)
        expected = 0.0 if k == 0 else (k - 1) * w + (w - 1) / 2
        assert torch.allclose(out[:, t], torch.full((2, 16), expected)), (t, k)


@pytest.mark.parametrize("w,T", [(1, 5), (2, 7), (3, 12), (4, 10), (4, 3), (5, 16)])
def test_predicted_context_matches_independent_computation(w, T):
    """The real predictor: c_j computed independently (mean of each complete chunk), ĉ_{j+1} from
    model.context_predictor's blocks applied one by one on c_0..c_{K-1}; predicted_context's row t
    equals ĉ_{k(t)} (c_init = h_0 for k = 0)."""
    model = tiny(chunk_size=w)
    h = torch.randn(2, T, 16, generator=torch.Generator().manual_seed(w * T))
    K = T // w
    with torch.no_grad():
        out = model.predicted_context(h)
        if K > 0:
            c = torch.stack([h[:, j * w:(j + 1) * w].mean(dim=1) for j in range(K)], dim=1)
            for block in model.context_predictor:
                c = block(c)
        for t in range(T):
            k = k_of(t, w)
            expected = h[:, 0] if k == 0 else c[:, k - 1]
            torch.testing.assert_close(out[:, t], expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- 3. the context pathway is live

def forward_with_handles(model, idx):
    """forward() rebuilt from the model's pieces, exposing ĉ_0..ĉ_K and ĉ^b as gradient leaves:
    the predictor's output is replaced (forward hook) by a leaf, and predicted_context receives a
    separate leaf copy of h, whose only use inside is the placeholder ĉ_0 = h_0."""
    leaves = []

    def hook(module, inputs, output):
        leaf = output.detach().requires_grad_()
        leaves.append(leaf)
        return leaf

    handle = model.context_predictor[-1].register_forward_hook(hook)
    T = idx.size(1)
    h = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(T))
    h = run_blocks(model.encoder_blocks, h)
    h_ctx = h.detach().requires_grad_()
    ctx = model.predicted_context(h_ctx)
    ctx.retain_grad()
    x = run_blocks(model.decoder_blocks, model.add_context(h, ctx))
    logits = model.lm_head(model.transformer.ln_f(x))
    handle.remove()
    return logits, h_ctx, leaves[0], ctx


@pytest.mark.parametrize("w,T,n_enc,n_layer", [
    (4, 10, 0, 3), (4, 12, 1, 3), (3, 8, 0, 3), (2, 7, 2, 3), (1, 5, 0, 3),  # E + D
    (4, 10, 2, 2), (3, 11, 1, 1), (1, 6, 2, 2),  # n_enc_layer = n_layer: D has no blocks
])
def test_context_gradient_routing(w, T, n_enc, n_layer):
    """The loss at one position t sends gradient into ĉ_{k(t)} and into no later ĉ_k; with a
    position-wise decoder (n_enc_layer = n_layer, so D mixes no positions) into ĉ_{k(t)} and no
    other ĉ_k at all (with attention in D, earlier positions' contexts legitimately get some).
    The full (sum) loss's gradient into ĉ_k equals the sum of dL/dĉ^b over the positions t with
    k(t) = k, and every ĉ_k that is broadcast somewhere receives gradient."""
    model = tiny(seed=1, chunk_size=w, n_enc_layer=n_enc, n_layer=n_layer)
    g = torch.Generator().manual_seed(T)
    idx = torch.randint(0, 64, (2, T), generator=g)
    targets = torch.randint(0, 64, (2, T), generator=g)
    K = T // w
    logits, h_ctx, c_next, ctx = forward_with_handles(model, idx)
    with torch.no_grad():  # the rebuilt forward is forward()
        ref, _ = model(idx, all_logits=True)
    torch.testing.assert_close(logits, ref, rtol=0, atol=1e-6)

    def grads(loss):
        g_h, g_next, g_b = torch.autograd.grad(loss, [h_ctx, c_next, ctx], retain_graph=True)
        assert torch.count_nonzero(g_h[:, 1:]) == 0, "predicted_context used h beyond the placeholder"
        return torch.cat([g_h[:, :1], g_next], dim=1), g_b  # dL/dĉ_0..ĉ_K, dL/dĉ^b

    pointwise = n_enc == n_layer
    for t in range(T):
        loss_t = F.cross_entropy(logits[:, t], targets[:, t], reduction="sum")
        g_hat, _ = grads(loss_t)
        assert g_hat.shape == (2, K + 1, 16)
        for k in range(K + 1):
            nonzero = bool(torch.count_nonzero(g_hat[:, k]) > 0)
            if k == k_of(t, w):
                assert nonzero, f"the loss at {t} sends no gradient into its own ĉ_{k}"
            elif k > k_of(t, w) or pointwise:
                assert not nonzero, f"the loss at {t} sends gradient into ĉ_{k}"

    loss = F.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1), reduction="sum")
    g_hat, g_b = grads(loss)
    for k in range(K + 1):
        positions = [t for t in range(T) if k_of(t, w) == k]
        # every ĉ_k is used somewhere, except c_init when w = 1 (ĉ_1 is in force from position 0)
        assert bool(positions) == (k > 0 or w > 1)
        assert (torch.count_nonzero(g_hat[:, k]) > 0) == bool(positions)
        torch.testing.assert_close(g_hat[:, k], g_b[:, positions].sum(dim=1), rtol=1e-5, atol=1e-7)


def decoder_input(model, idx):
    """(what D's first block receives, h) for the tokens idx: ĉ^b as added is the difference."""
    seen = []
    handle = model.decoder_blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(idx)
        h = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1)))
    handle.remove()
    return seen[0], h


@pytest.mark.parametrize("w", [1, 4])
def test_context_joins_h_at_its_scale(w):
    """docs/method.md "Scale": with context_scale='tied' what forward adds to h before D is ĉ^b in
    P's direction with h's norm, position by position; 'learned' (the default) multiplies that by
    the learned gain, so ‖ĉ‖/‖h‖ is the gain wherever ĉ lands; 'none' adds P's output as it is,
    which at initialisation is on h's scale too (not a LayerNorm-ed std-1 vector)."""
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    for scale in ("tied", "learned", "none"):
        model = tiny(chunk_size=w, n_enc_layer=0, context_scale=scale, context_gain_init=0.7)
        x, h = decoder_input(model, idx)
        with torch.no_grad():
            added, raw = x - h, model.predicted_context(h)
        if scale == "none":
            torch.testing.assert_close(added, raw, rtol=0, atol=1e-6)
            assert 0.2 * h.std() < added[:, w - 1:].std() < 3 * h.std()  # positions with a predicted ĉ_k
            continue
        ratio = added.norm(dim=-1) / h.norm(dim=-1)  # (B, T)
        torch.testing.assert_close(ratio, torch.full_like(ratio, 1.0 if scale == "tied" else 0.7), rtol=1e-5, atol=0)
        cosine = F.cosine_similarity(added, raw, dim=-1)
        torch.testing.assert_close(cosine, torch.ones_like(cosine), rtol=0, atol=1e-5)
        assert context_ratio(model, idx) == pytest.approx(1.0 if scale == "tied" else 0.7, rel=1e-5)


def test_contextlm_starts_as_its_gpt():
    """With the default context_gain_init=0, a new ContextLM's logits are those of the GPT with the
    same token pathway (the predictor's gradient is zero only at that first step: the gain's is not)."""
    clm = tiny(context_gain_init=0.0)
    gpt = GPT(GPTConfig(**{**vars(clm.config), "n_ctx_layer": 0})).eval()
    missing, unexpected = gpt.load_state_dict(clm.state_dict(), strict=False)
    assert not missing and all(k.startswith(("context_predictor.", "context_gain")) for k in unexpected)
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(clm(idx, all_logits=True)[0], gpt(idx, all_logits=True)[0], rtol=0, atol=0)
    targets = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    clm.train()
    clm(idx, targets)[1].backward()
    assert clm.context_gain.grad.abs() > 0


def train_at_high_lr(context_scale, steps=30):
    """A 64-wide ContextLM trained for `steps` steps at lr 1e-2 on a repeated text (AdamW, clipping,
    as train.py): (its ‖ĉ‖/‖h‖ on the last batch, the model)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=32, n_layer=2, n_head=2, n_embd=64, bias=False,
                          chunk_size=4, n_ctx_layer=2, context_scale=context_scale))
    optimizer = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95), "cpu")
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 32, (512,), generator=g)
    for _ in range(steps):
        rows = torch.randint(0, 512 - 33, (16,), generator=g)
        x = torch.stack([text[r:r + 32] for r in rows])
        y = torch.stack([text[r + 1:r + 33] for r in rows])
        model(x, y)[1].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return context_ratio(model.eval(), x), model


def test_high_lr_keeps_the_context_on_h_scale():
    """The predicted context outgrew the token state in training when P's output was added as is:
    at a high learning rate, a few dozen steps take ‖ĉ‖/‖h‖ far past 3 with context_scale='none'
    (the behaviour before 2026-12, kept for reproduction). With the default it stays tied to h's
    scale: ‖ĉ‖/‖h‖ is exactly the learned gain's |g| (an untied context would be anything)."""
    ratio, model = train_at_high_lr("learned")
    assert ratio == pytest.approx(abs(model.context_gain.item()), rel=1e-4) and ratio < 3
    assert train_at_high_lr("none")[0] > 3


# ---------------------------------------------------------------- 4. n_ctx_layer = 0 is GPT-2

def make_hf_gpt2(tmp_path, n_layer=2, n_head=2, n_embd=32, vocab=80, block=24):
    """A random GPT-2 (transformers), saved locally; every weight perturbed so biases and
    LayerNorm gains are not their trivial init values."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(123)
    hc = GPT2Config(vocab_size=vocab, n_positions=block, n_embd=n_embd, n_layer=n_layer,
                    n_head=n_head, activation_function="gelu_new", resid_pdrop=0.0,
                    embd_pdrop=0.0, attn_pdrop=0.0)
    hf = GPT2LMHeadModel(hc).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    return hf


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    hf = make_hf_gpt2(path)
    return path, hf


def test_gpt2_equivalence_via_from_pretrained(hf_dir):
    """from_pretrained(local dir, n_ctx_layer=0) reproduces the Hugging Face GPT-2's logits at
    every position to 1e-5 (fp32, eval)."""
    path, hf = hf_dir
    model = from_pretrained(str(path), override_args=dict(n_ctx_layer=0)).eval()
    assert model.config.n_ctx_layer == 0 and model.param_breakdown()["predictor"] == 0
    idx = torch.randint(0, 80, (3, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = model(idx, all_logits=True)
        theirs = hf(idx).logits
        short, _ = model(idx[:, :7], all_logits=True)
        theirs_short = hf(idx[:, :7]).logits
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(short, theirs_short, rtol=0, atol=1e-5)


def test_gpt2_equivalence_hand_copied():
    """A GPT with n_ctx_layer=0 whose weights are copied by hand (Conv1D transposed) into a
    transformers GPT-2 gives the same logits: the architecture, not only the loader, is GPT-2."""
    from transformers import GPT2Config, GPT2LMHeadModel
    model = tiny(seed=3, n_ctx_layer=0, n_layer=2, n_embd=32, block_size=16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                    activation_function="gelu_new", resid_pdrop=0.0,
                                    embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    sd = model.state_dict()
    conv1d = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
    with torch.no_grad():
        for k, v in hf.state_dict().items():
            if k in sd:
                v.copy_(sd[k].t() if k.endswith(conv1d) else sd[k])
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(idx, all_logits=True)[0], hf(idx).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_enc", [0, 1])
def test_from_pretrained_contextlm_keeps_token_pathway(hf_dir, n_enc):
    """from_pretrained with the default n_ctx_layer=2 loads the same token-pathway weights as the
    n_ctx_layer=0 load (every shared state_dict entry equal) and a freshly initialised predictor:
    LayerNorm gains 1 and biases 0, Linear biases 0, weights ~ N(0, 0.02) (c_proj scaled by
    1/sqrt(2 n_layer)), none of them a copied GPT-2 tensor, and the context's gain at 0."""
    path, hf = hf_dir
    gpt = from_pretrained(str(path), override_args=dict(n_ctx_layer=0))
    clm = from_pretrained(str(path), override_args=dict(n_enc_layer=n_enc))
    assert clm.config.n_ctx_layer == 2 and len(clm.context_predictor) == 2
    sd_gpt, sd_clm = gpt.state_dict(), clm.state_dict()
    predictor_keys = {k for k in sd_clm if k.startswith("context_predictor.")}
    assert set(sd_clm) - predictor_keys == set(sd_gpt) | {"context_gain"}
    assert sd_clm["context_gain"] == 0  # the context's learned gain starts at 0
    for k, v in sd_gpt.items():
        assert torch.equal(sd_clm[k], v), k
    hf_tensors = list(hf.state_dict().values())
    std_proj = 0.02 / math.sqrt(2 * clm.config.n_layer)
    for k in predictor_keys:
        v = sd_clm[k]
        assert not any(v.shape == u.shape and torch.equal(v, u) for u in hf_tensors
                       if v.dim() >= 2), f"{k} was copied from GPT-2"
        if ".ln_" in k:
            assert torch.equal(v, torch.ones_like(v) if k.endswith("weight") else torch.zeros_like(v)), k
        elif k.endswith("bias"):
            assert torch.count_nonzero(v) == 0, k
        else:
            std = std_proj if k.endswith("c_proj.weight") else 0.02
            assert 0.7 * std < v.std().item() < 1.3 * std, (k, v.std().item())
            assert abs(v.mean().item()) < 0.2 * std, k


@pytest.mark.parametrize("fields", [dict(), dict(n_enc_layer=1, predictor_init="zero"),
                                    dict(context_gain_per_channel=True, dropout=0.1),
                                    dict(rotary_pct=0.5, parallel_residual=True, tie_embeddings=False)],
                         ids=["default", "encoder-zero-init", "per-channel", "pythia"])
def test_a_contextlm_starts_from_its_gpts_token_weights(fields):
    """Pairs that pair: at the same seed a ContextLM's token pathway (embeddings, every token
    block, the head) starts exactly as its GPT's, P being drawn after it, so contextlm − gpt at one
    seed measures the context, not another draw of the token weights. P's draws still come from
    the one stream, which then goes on where it always did: sampling after loading a run (which
    builds the model first) draws what it drew before P came last."""
    shape = dict(block_size=32, vocab_size=65, n_layer=3, n_head=2, n_embd=32, chunk_size=4) | fields
    torch.manual_seed(1337)
    gpt = GPT(GPTConfig(**shape, n_ctx_layer=0)).state_dict()
    predictor = torch.nn.ModuleList(Block(GPTConfig(**shape)) for _ in range(2))  # P's draws, after the GPT's
    gpt2_init([predictor], shape["n_layer"])
    after_gpt = torch.rand(3)
    torch.manual_seed(1337)
    clm, after_clm = GPT(GPTConfig(**shape, n_ctx_layer=2)), torch.rand(3)
    token = {k: v for k, v in clm.state_dict().items() if not k.startswith(("context_predictor.", "context_gain"))}
    assert list(token) == list(gpt) and all(torch.equal(token[k], gpt[k]) for k in gpt)
    assert torch.equal(after_clm, after_gpt)
    # P is drawn apart: not the token blocks' numbers again
    assert not torch.equal(clm.context_predictor[0].attn.c_attn.weight, clm.transformer.h[0].attn.c_attn.weight)


# ---------------------------------------------------------------- 5. memorisation

@pytest.mark.parametrize("w,n_enc", [(4, 0), (3, 1)])
def test_memorises_one_batch(w, n_enc):
    """A tiny ContextLM trained with configure_optimizers' AdamW drives the loss on one batch
    (B=4, T=16) below 0.05 within a few hundred steps."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32,
                          chunk_size=w, n_ctx_layer=2, n_enc_layer=n_enc))
    model.train()
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, 64, (4, 17), generator=g)
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=1e-2, betas=(0.9, 0.99),
                                     device_type="cpu")
    first = None
    for step in range(300):
        _, loss = model(x, y)
        first = loss.item() if first is None else first
        if loss.item() < 0.05:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert first > 3.5  # ~ln(64) at init: the batch was not trivially easy
    assert loss.item() < 0.05, f"loss {loss.item():.4f} after {step + 1} steps"


def test_loss_accepts_non_contiguous_targets():
    """forward(x, targets) with targets sliced from one token tensor (y = data[:, 1:], not
    contiguous) gives the same loss as with a contiguous copy, with -1 targets ignored."""
    model = tiny()
    data = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(0))
    data[0, 5] = -1
    x, y = data[:, :-1].clamp(min=0), data[:, 1:]
    assert not y.is_contiguous()
    with torch.no_grad():
        _, expected = model(x, y.contiguous())
        _, loss = model(x, y)
    assert torch.equal(loss, expected)


# ---------------------------------------------------------------- 6. invalid configurations

VALID = dict(block_size=16, vocab_size=64, n_layer=3, n_head=2, n_embd=16, chunk_size=4,
             n_ctx_layer=2, n_enc_layer=0)


@pytest.mark.parametrize("field,value", [
    ("chunk_size", 0), ("chunk_size", 17), ("chunk_size", -1),
    ("n_enc_layer", 4), ("n_enc_layer", -1),
    ("n_ctx_layer", -1),
    ("n_embd", 15),
    ("block_size", 0), ("n_layer", 0), ("n_head", 0), ("vocab_size", 0),
])
def test_invalid_config_raises_naming_the_field(field, value):
    """Every invalid configuration raises ValueError whose message names the field."""
    with pytest.raises(ValueError, match=field):
        GPTConfig(**{**VALID, field: value})


@pytest.mark.parametrize("field,value", [("chunk_size", 1), ("chunk_size", 16), ("n_enc_layer", 3),
                                         ("n_ctx_layer", 0)])
def test_boundary_configs_are_valid(field, value):
    """The edges of the valid ranges are accepted (so the checks are not over-eager)."""
    GPTConfig(**{**VALID, field: value})


def test_from_pretrained_rejects_unknown_override():
    """from_pretrained refuses to override fields that would change the GPT-2 shapes."""
    with pytest.raises(ValueError, match="n_embd"):
        from_pretrained("unused", override_args=dict(n_embd=8))


# ---------------------------------------------------------------- 7. bookkeeping

def block_params(C, bias=True):
    """Parameters of one pre-LN GPT-2 block, counted by hand: attention 4C^2, MLP 8C^2, biases
    3C + C + 4C + C and two LayerNorms 2 * 2C (gains only, 2C, without bias)."""
    return 12 * C * C + (13 * C if bias else 2 * C)


@pytest.mark.parametrize("n_ctx", [0, 1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_param_breakdown(n_ctx, bias):
    """param_breakdown()['predictor'] is the parameter count of n_ctx_layer Blocks and the context's
    gain (0 for plain GPT) and 'token' is exactly the same-size GPT's total."""
    model = tiny(n_ctx_layer=n_ctx, bias=bias)
    gpt = tiny(n_ctx_layer=0, bias=bias)
    pb = model.param_breakdown()
    one_block = sum(p.numel() for p in Block(model.config).parameters())
    assert one_block == block_params(16, bias)
    assert pb["predictor"] == n_ctx * one_block + (n_ctx > 0)
    assert pb["token"] == sum(p.numel() for p in gpt.parameters())
    assert pb["token"] + pb["predictor"] == sum(p.numel() for p in model.parameters())


def test_flops_per_token_12_layer():
    """At GPT-2 124M's shape, ContextLM (w=4, L_ctx=2) costs exactly the predictor's extra over the
    same-size GPT: 6 * N_P * K/T + 12 * L_ctx * C * K^2 / T, with N_P = L_ctx * (12C^2 + 13C) and
    K = T/w; the GPT's own count is nanoGPT's 6N + 12 L C T. The extra is ~4% of the token layers'
    FLOPs (docs/method.md, 2/(12*4)) and a few percent of the whole model's."""
    L, H, C, V, T, w, L_ctx = 12, 12, 768, 50304, 1024, 4, 2
    with torch.device("meta"):  # shapes only: no 124M-parameter allocation
        gpt = GPT(GPTConfig(n_layer=L, n_head=H, n_embd=C, vocab_size=V, block_size=T, n_ctx_layer=0))
        clm = GPT(GPTConfig(n_layer=L, n_head=H, n_embd=C, vocab_size=V, block_size=T,
                            n_ctx_layer=L_ctx, chunk_size=w))
    N = V * C + L * block_params(C) + 2 * C  # wte (tied head), blocks, ln_f; wpe not counted
    assert gpt.get_num_params() == N
    gpt_flops = 6 * N + 12 * L * C * T
    assert gpt.flops_per_token(T) == pytest.approx(gpt_flops, rel=1e-12)
    K = T // w
    extra = 6 * L_ctx * block_params(C) * K / T + 12 * L_ctx * C * K * K / T
    assert clm.flops_per_token(T) - gpt.flops_per_token(T) == pytest.approx(extra, rel=1e-9)
    layer_flops = 6 * L * block_params(C) + 12 * L * C * T
    assert 0.03 < extra / layer_flops < 2 / (L * w) + 0.005
    assert 0.02 < clm.flops_per_token(T) / gpt_flops - 1 < 0.045
    # MFU counts those FLOPs: flops_per_token * T per sequence
    mfu = clm.estimate_mfu(fwdbwd_per_iter=8, dt=0.5, peak_flops=1e15)
    assert mfu == pytest.approx(clm.flops_per_token(T) * T * 8 / 0.5 / 1e15, rel=1e-12)


@pytest.mark.parametrize("w,T", [(4, 16), (3, 16), (8, 12)])
def test_flops_partial_chunks(w, T):
    """K = floor(T / w): a trailing partial chunk costs the predictor nothing."""
    model = tiny(chunk_size=w, block_size=16)
    gpt = tiny(n_ctx_layer=0, block_size=16)
    K = T // w
    extra = 6 * 2 * block_params(16) * K / T + 12 * 2 * 16 * K * K / T
    assert model.flops_per_token(T) - gpt.flops_per_token(T) == pytest.approx(extra, rel=1e-9)


@pytest.mark.parametrize("n_ctx", [0, 2])
def test_configure_optimizers_groups(n_ctx):
    """Weight decay on 2-D tensors only; the decayed and non-decayed groups together cover every
    parameter exactly once (the tied wte/lm_head weight included once, the predictor included)."""
    model = tiny(n_ctx_layer=n_ctx)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.95),
                                     device_type="cpu")
    decay = [g for g in opt.param_groups if g["weight_decay"] == 0.1]
    no_decay = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert len(decay) == 1 and len(no_decay) == 1 and len(opt.param_groups) == 2
    assert all(p.dim() == 2 for p in decay[0]["params"])
    assert all(p.dim() < 2 for p in no_decay[0]["params"])
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter is in the optimizer twice"
    assert set(ids) == {id(p) for p in model.parameters()}
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["betas"] == (0.9, 0.95)
    if n_ctx:
        assert {id(p) for p in model.context_predictor.parameters()} <= set(ids)
