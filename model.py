"""
ContextLM in one file: a GPT-2 whose token decoder is guided by a predicted embedding of the
next context chunk. The method follows docs/method.md; its steps are numbered the same way here:

    1. token encoder       h   = blocks_enc(wte[x] + wpe[t])    (rotary backbone: no wpe)
    2. map to contexts     c_j = mean(h[j*w : (j+1)*w]), complete chunks only
    3. context predictor   ĉ_{j+1} = P(c_0 .. c_j), a causal Transformer over chunks
    4. placeholder         ĉ_0 = c_init = h_0
    5. shifted broadcast   position t receives ĉ_{k(t)}, k(t) = floor((t + 1) / w)
    6. token decoder       logits = lm_head(ln_f(blocks_dec(h + ĉ_{k(t)})))

With n_ctx_layer = 0 steps 2-5 vanish and the model is exactly GPT-2 (nanoGPT's model.py).

The same file also builds the GPT-NeoX block of Pythia, as configuration (docs/pythia.md): rotary
positions on part of each head instead of wpe, a parallel residual, an untied head, exact GELU.
There, every attention rotates queries and keys by position: E and D by the token's, P by its
chunk's, and chunk j sits at the position of its first token, j * w (the paper's rule). With
n_ctx_layer = 0 and those settings the model is exactly a Pythia model.

In order: the configuration, the Transformer block that E, P and D are made of, then the model,
its forward pass (steps 1-6) and bookkeeping. Decoding is engine.py's (attention here threads its
KV cache through); Hugging Face weights are converted in pretrained.py.
"""

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch.nn import functional as F


CONTEXT_SCALES = ("learned", "tied", "none")
PREDICTOR_INITS = ("gpt2", "zero")
# What a checkpoint written before a GPTConfig field existed meant by its absence: the behaviour
# of the code that wrote it (context_scale came in 2026-12; until then P's output was added as is)
FIELDS_BEFORE_THEY_EXISTED = {"context_scale": "none"}


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12        # token layers, encoder + decoder, exactly as in GPT-2
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True        # biases in Linears and LayerNorms, like GPT-2
    chunk_size: int = 4      # w: tokens per context chunk
    n_ctx_layer: int = 2     # depth of the context predictor P; 0 = plain GPT-2
    n_enc_layer: int = 0     # how many of the n_layer blocks form the token encoder E
    context_scale: str = "learned"  # how ĉ joins h (add_context): 'learned', 'tied' or 'none' (the paper, literally)
    context_gain_init: float = 0.0  # 'learned': the gain's start; 0 = ContextLM starts as its GPT
    context_gain_per_channel: bool = False  # 'learned': a gain per channel of ĉ instead of one for all
    context_gain_lr_scale: float = 1.0      # 'learned': the gain's learning rate over the model's
    context_gain_weight_decay: float = 0.0  # 'learned': AdamW's decay on the gain, a pull back to 0
    # choices the paper leaves open, each an option; the defaults are docs/method.md's reading
    predictor_init: str = "gpt2"     # P's output projections: 'gpt2' (as every block) or 'zero' (P starts as identity)
    context_dropout: float = -1.0    # dropout inside P; < 0 = the model's dropout
    predictor_lr_scale: float = 1.0  # P's learning rate over the model's (an optimizer setting that belongs to P)
    # the GPT-NeoX (Pythia) block; the defaults are GPT-2's
    rotary_pct: float = 0.0          # share of each head's dims rotated by RoPE (Pythia 0.25); 0 = learned wpe
    rotary_base: float = 10000.0     # RoPE's base: the slowest rotation has a period of ~2*pi*base positions
    parallel_residual: bool = False  # x + attn(ln_1(x)) + mlp(ln_2(x)), as GPT-NeoX; False = one after the other
    tie_embeddings: bool = True      # lm_head shares wte's matrix, as GPT-2; Pythia has its own output embedding
    gelu_approximate: str = "tanh"   # nn.GELU's approximate: 'tanh' (GPT-2) or 'none', exact (Pythia)
    layer_norm_eps: float = 1e-5     # LayerNorm's epsilon (GPT-2 and Pythia alike)

    def __post_init__(self):
        def check(ok, field, why):
            if not ok:
                raise ValueError(f"{field}={getattr(self, field)!r}: {why}")
        for field in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            check(getattr(self, field) >= 1, field, "must be at least 1")
        check(self.n_ctx_layer >= 0, "n_ctx_layer", "must be >= 0 (0 = plain GPT-2)")
        check(self.n_enc_layer >= 0, "n_enc_layer", "must be >= 0")
        check(self.n_enc_layer <= self.n_layer, "n_enc_layer",
              f"the encoder takes its blocks from the n_layer={self.n_layer} token layers")
        check(self.n_embd % self.n_head == 0, "n_embd", f"must be divisible by n_head={self.n_head}")
        check(1 <= self.chunk_size <= self.block_size, "chunk_size",
              f"must be between 1 and block_size={self.block_size}")
        check(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        check(0.0 <= self.rotary_pct <= 1.0, "rotary_pct", "must be in [0, 1] (0 = learned positions)")
        rotary_dims = int(self.n_embd // self.n_head * self.rotary_pct)
        check(self.rotary_pct == 0 or (rotary_dims >= 2 and rotary_dims % 2 == 0), "rotary_pct",
              f"rotates {rotary_dims} of the {self.n_embd // self.n_head} dims of a head; that must be even, >= 2")
        check(self.rotary_base > 0, "rotary_base", "must be > 0")
        check(self.gelu_approximate in ("tanh", "none"), "gelu_approximate", "must be 'tanh' or 'none'")
        check(self.context_scale in CONTEXT_SCALES, "context_scale", f"must be one of {', '.join(CONTEXT_SCALES)}")
        check(math.isfinite(self.context_gain_init), "context_gain_init", "must be a finite number")
        check(self.layer_norm_eps > 0, "layer_norm_eps", "must be > 0")
        check(self.predictor_init in PREDICTOR_INITS, "predictor_init", f"must be one of {', '.join(PREDICTOR_INITS)}")
        check(self.context_dropout < 1.0, "context_dropout", "must be below 1 (< 0 = the model's dropout)")
        for field in ("predictor_lr_scale", "context_gain_lr_scale"):
            check(math.isfinite(getattr(self, field)) and getattr(self, field) > 0, field,
                  "must be a number above 0 (1 = the model's learning rate)")
        check(math.isfinite(self.context_gain_weight_decay) and self.context_gain_weight_decay >= 0,
              "context_gain_weight_decay", "must be a number >= 0 (0 = no decay, as other vectors)")


# ---------------------------------------------------------------- the Transformer block

def apply_rotary(x, cos, sin):
    """Rotary position embedding (RoPE) as GPT-NeoX applies it: x (B, nh, T, hs) -> same shape,
    its first r dims rotated by position (cos, sin: (T, r)), the other hs - r passed through.
    Dim i is paired with dim i + r/2 ("rotate_half"), so a query-key product depends on the
    difference of their positions only."""
    r = cos.size(-1)
    x_rot, x_pass = x[..., :r], x[..., r:]
    x1, x2 = x_rot.chunk(2, dim=-1)  # (B, nh, T, r/2) each
    rotated = torch.cat([-x2, x1], dim=-1)  # (B, nh, T, r)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # under autocast q and k are half precision
    return torch.cat([x_rot * cos + rotated * sin, x_pass], dim=-1)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x, cache=None, rope=None, slot=None):
        """x (B, T, C) -> (B, T, C). rope: RoPE's (cos, sin) for x's positions (GPT.rotary), or
        None with learned positions. With a KVCache (engine.py), the new keys and values go into
        it: a prefill (no slot) fills the first T slots; a decode step (T = 1) writes the slot
        `slot` (1,) and attends to the slots up to it."""
        B, T, C = x.size()  # batch, sequence length, embedding width n_embd
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if rope is not None:  # keys are cached rotated: a cached key keeps the position it had
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if slot is None:  # training, or a prefill: the T positions, causal among themselves
            if cache is not None:
                cache.prefill(k, v)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=T > 1)  # (B, nh, T, hs), flash attention where available
        else:  # a decode step: the new token's query against the cache
            k, v, mask = cache.write(k, v, slot)  # (B, nh, S, hs) each, (1, S) or None (KVCache.write)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, 1, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=config.gelu_approximate)  # GPT-2's tanh approximation, or exact
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """A pre-LN Transformer block; E, P and D are all stacks of these."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)
        self.parallel_residual = config.parallel_residual

    def forward(self, x, cache=None, rope=None, slot=None):
        """x (B, T, C) -> (B, T, C); cache, rope and slot as in CausalSelfAttention."""
        if self.parallel_residual:  # GPT-NeoX: attention and MLP both read x (summed in its order)
            return self.mlp(self.ln_2(x)) + self.attn(self.ln_1(x), cache, rope, slot) + x
        x = x + self.attn(self.ln_1(x), cache, rope, slot)
        return x + self.mlp(self.ln_2(x))


def rms(x):
    """Root mean square over the channels: (B, T, C) -> (B, T, 1)."""
    return x.float().pow(2).mean(dim=-1, keepdim=True).sqrt().to(x.dtype)


def run_blocks(blocks, x, caches=None, rope=None, slot=None):
    """x (B, T, C) through a stack of blocks; caches, if given, holds one KVCache per block, and
    slot is where a decode step writes in them (None: a prefill); rope is RoPE's (cos, sin) for
    x's positions, None with learned positions."""
    for i, block in enumerate(blocks):
        x = block(x, None if caches is None else caches[i], rope, slot)
    return x


# ---------------------------------------------------------------- the model

def init_weights(module):
    """GPT-2's initialisation of one module: N(0, 0.02) weights for Linear and Embedding, zero biases."""
    if isinstance(module, nn.Linear):
        torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)


def gpt2_init(modules, n_layer):
    """GPT-2's initialisation of modules, in order: init_weights, then the residual projections
    (c_proj) scaled down to N(0, 0.02/sqrt(2 * n_layer))."""
    for module in modules:
        module.apply(init_weights)
    for module in modules:
        for pn, p in module.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),  # E, then D
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias),
        ))
        if config.rotary_pct > 0:  # rotary positions live in the attention: no position table
            del self.transformer["wpe"]
        # The context predictor P: its own causal stack over chunk embeddings, built below, after
        # the token pathway. It has no final LayerNorm: ĉ is added to h and must stay on h's scale
        # (docs/method.md, "Scale").
        self.context_predictor = nn.ModuleList()
        if config.context_scale == "learned" and config.n_ctx_layer > 0:  # how much context D receives
            shape = (config.n_embd,) if config.context_gain_per_channel else ()
            self.context_gain = nn.Parameter(torch.full(shape, config.context_gain_init))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight  # weight tying, as GPT-2
        gpt2_init([self.transformer, self.lm_head], config.n_layer)  # the token pathway
        # P is drawn after the token pathway, so that at the same seed a ContextLM's token weights
        # are exactly its GPT's: contextlm − gpt then measures the context alone
        p_config = replace(config, dropout=config.dropout if config.context_dropout < 0 else config.context_dropout)
        self.context_predictor.extend(Block(p_config) for _ in range(config.n_ctx_layer))
        gpt2_init([self.context_predictor], config.n_layer)
        if config.predictor_init == "zero":  # P's blocks add nothing at first: ĉ_{j+1} = c_j
            for pn, p in self.context_predictor.named_parameters():
                if "c_proj" in pn:
                    torch.nn.init.zeros_(p)

    @property
    def encoder_blocks(self):  # E: the first n_enc_layer token layers
        return self.transformer.h[:self.config.n_enc_layer]

    @property
    def decoder_blocks(self):  # D: the rest
        return self.transformer.h[self.config.n_enc_layer:]

    # ---------------------------------------------------------------- the forward pass

    def rotary(self, pos):
        """RoPE's (cos, sin) for positions pos (T,), (T, r) each with r = the rotated dims of a
        head; None with learned positions. As GPT-NeoX: frequencies base^(-2i/r), i < r/2, each
        used twice (apply_rotary pairs dim i with dim i + r/2)."""
        if self.config.rotary_pct == 0:
            return None
        r = int(self.config.n_embd // self.config.n_head * self.config.rotary_pct)
        inv_freq = 1.0 / (self.config.rotary_base ** (torch.arange(0, r, 2, dtype=torch.float, device=pos.device) / r))
        angles = pos.float()[:, None] * inv_freq  # (T, r/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, r)
        return angles.cos(), angles.sin()

    def chunk_position(self, j):
        """The position of chunk j (a tensor of chunk indices) on a rotary backbone: its first token's,
        j * w, as the paper says; RoPE sees differences only, so P's chunks lie w positions apart."""
        return j * self.config.chunk_size

    def token_encoder(self, idx, pos, caches=None, slot=None):
        """Step 1: token ids (B, T) at positions pos (T,) -> encoder states h (B, T, C). Positions
        enter as wpe[pos] added to the embeddings or, on a rotary backbone, as E's rotations.
        With n_enc_layer = 0, h is the embedding (sum) itself. caches and slot: E's KV caches
        and where a decode step writes in them (run_blocks)."""
        h = self.transformer.wte(idx)  # (B, T, C)
        if self.config.rotary_pct == 0:
            h = h + self.transformer.wpe(pos)
        return run_blocks(self.encoder_blocks, self.transformer.drop(h), caches, self.rotary(pos), slot)

    def predicted_context(self, h, caches=None):
        """Steps 2-5: encoder states h (B, T, C) -> ĉ_{k(t)} (B, T, C), the predicted context
        each position t receives. caches, if given, are P's KV caches to fill (a prefill)."""
        B, T, C = h.size()
        w = self.config.chunk_size
        K = T // w
        # 2. map to contexts: mean over complete chunks; a trailing partial chunk would leak the future
        c = h[:, :K * w].reshape(B, K, w, C).mean(dim=2)  # (B, K, C): c_0 .. c_{K-1}
        # 3. context predictor: causal over chunks, so ĉ_{j+1} sees c_0 .. c_j only
        chunk_pos = self.chunk_position(torch.arange(K, device=h.device))  # (K,): where P rotates c_j
        c_next = run_blocks(self.context_predictor, c, caches, self.rotary(chunk_pos))  # (B, K, C): ĉ_1 .. ĉ_K
        # 4. placeholder: the first chunk has no past to predict it from, so ĉ_0 = c_init = h_0
        c_hat = torch.cat([h[:, :1], c_next], dim=1)  # (B, K + 1, C): ĉ_0 .. ĉ_K
        # 5. shifted broadcast: ĉ_k is built from tokens < k*w and used from position k*w - 1 on
        k = (torch.arange(T, device=h.device) + 1) // w  # (T,): k(t)
        return c_hat[:, k]  # (B, T, C)

    def add_context(self, h, context):
        """Step 6's input, h + ĉ_{k(t)}: (B, T, C) each. P is a residual stream that grows in
        training; left as is ('none'), a context tens of times larger than h drowns the token in
        D's first LayerNorm. So ĉ is brought to the RMS of the token state it joins ('tied'), and by
        default times a learned gain from 0 ('learned'): ContextLM starts as its GPT, and training
        decides how much context to let in (docs/method.md, "Scale")."""
        if self.config.context_scale != "none":
            context = context * (rms(h) / rms(context).clamp_min(1e-12))  # the clamp: a context of zeros stays zeros
        if self.config.context_scale == "learned":
            context = self.context_gain * context
        return h + context

    def token_decoder(self, x, pos, caches=None, slot=None):
        """Step 6 before the head: D's blocks and the final LayerNorm, (B, T, C) at positions pos
        (T,) -> (B, T, C). Exactly GPT-2's (or Pythia's) remaining blocks. caches and slot: D's
        KV caches and where a decode step writes in them (run_blocks)."""
        return self.transformer.ln_f(run_blocks(self.decoder_blocks, x, caches, self.rotary(pos), slot))

    def hidden_states(self, idx, caches=None):
        """Steps 1-6 up to the head, over idx (B, T) at positions 0 .. T-1: (h, the context each
        position receives or None without a predictor, ln_f of D's output), (B, T, C) each.
        caches: (E's, P's, D's) KV caches to fill on the way (engine.Engine.prefill), or None."""
        B, T = idx.size()
        assert T <= self.config.block_size, f"sequence of {T} > block_size {self.config.block_size}"
        e_caches, p_caches, d_caches = caches or (None, None, None)
        pos = torch.arange(T, device=idx.device)  # (T,): token positions 0 .. T-1
        h = self.token_encoder(idx, pos, e_caches)  # 1. token encoder E
        x, c_hat = h, None
        if self.config.n_ctx_layer > 0:
            c_hat = self.predicted_context(h, p_caches)  # 2-5. the context each position receives
            x = self.add_context(h, c_hat)
        return h, c_hat, self.token_decoder(x, pos, d_caches)  # 6. token decoder D

    def forward(self, idx, targets=None, all_logits=False):
        """idx (B, T) -> (logits, loss). With targets (B, T): logits (B, T, vocab) and the mean
        cross-entropy (targets of -1 are ignored). Without: the last position's logits
        (B, 1, vocab) and None, or every position's with all_logits=True."""
        _, _, x = self.hidden_states(idx)  # steps 1-6
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
            return logits, loss
        if not all_logits:
            x = x[:, [-1], :]  # inference only needs the last position: (B, 1, C)
        return self.lm_head(x), None

    # ---------------------------------------------------------------- bookkeeping

    def get_num_params(self, non_embedding=True):
        """Parameters in the model. non_embedding leaves out the embedding lookups, which cost no
        FLOPs: wpe (nanoGPT's convention), and wte when the head is untied (tied, it is the head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.config.rotary_pct == 0:
            n -= self.transformer.wpe.weight.numel()
        if non_embedding and not self.config.tie_embeddings:
            n -= self.transformer.wte.weight.numel()
        return n

    def param_breakdown(self):
        """{'token': token pathway (E, D, embeddings, head), 'predictor': context predictor P (and
        its gain)}."""
        predictor = sum(p.numel() for p in self.context_predictor.parameters())
        predictor += self.context_gain.numel() if hasattr(self, "context_gain") else 0
        return {"token": self.get_num_params(non_embedding=False) - predictor, "predictor": predictor}

    def flops_per_token(self, T=None):
        """Training FLOPs (forward + backward) per token at sequence length T, PaLM-style:
        6 per weight plus attention; P's share is paid on K = T // w chunk positions only (the
        context's gain, one multiply an element like a LayerNorm's, is not counted)."""
        cfg = self.config
        T = T or cfg.block_size
        H, Q = cfg.n_head, cfg.n_embd // cfg.n_head
        token = 6 * (self.get_num_params() - self.param_breakdown()["predictor"]) + 12 * cfg.n_layer * H * Q * T
        K = T // cfg.chunk_size
        n_predictor = sum(p.numel() for p in self.context_predictor.parameters())
        predictor = (6 * n_predictor * K + 12 * cfg.n_ctx_layer * H * Q * K * K) / T
        return token + predictor

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops=312e12):
        """Model FLOPs utilisation: achieved FLOP/s over peak_flops (A100 bf16 dense by default)."""
        T = self.config.block_size
        return self.flops_per_token(T) * T * fwdbwd_per_iter / dt / peak_flops

    def crop_block_size(self, block_size):
        """Shrink the context window, e.g. to fine-tune GPT-2 (1024) on shorter sequences."""
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        self.config.__post_init__()
        if self.config.rotary_pct == 0:  # rotary positions have no table to crop
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW; weight decay on matrices and embeddings (2-D tensors) only; fused on CUDA. With
        predictor_lr_scale != 1, P's parameters form groups of their own, and with
        context_gain_lr_scale != 1 or context_gain_weight_decay != 0 the gain does; the training loop
        multiplies a group's learning rate by its "lr_scale" (groups without one take it as is)."""
        cfg = self.config
        params = [p for p in self.parameters() if p.requires_grad]
        in_p = set(self.context_predictor.parameters()) if cfg.predictor_lr_scale != 1 else set()
        own = hasattr(self, "context_gain") and (cfg.context_gain_lr_scale != 1 or cfg.context_gain_weight_decay)
        in_g = {self.context_gain} if own else set()
        groups = []
        for subset, extra in (([p for p in params if p not in in_p | in_g], {}),
                              ([p for p in params if p in in_p], {"lr_scale": cfg.predictor_lr_scale})):
            decay, no_decay = [p for p in subset if p.dim() >= 2], [p for p in subset if p.dim() < 2]
            groups += [{"params": ps, "weight_decay": wd, **extra}
                       for ps, wd in ((decay, weight_decay), (no_decay, 0.0)) if ps]
        if in_g:  # decoupled decay pulls the gain to 0 (ContextLM = its GPT) unless its gradient holds it
            groups.append({"params": list(in_g), "weight_decay": cfg.context_gain_weight_decay,
                           "lr_scale": cfg.context_gain_lr_scale})
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=device_type == "cuda" or None)
