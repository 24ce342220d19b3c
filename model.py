"""
ContextLM in one file: a GPT-2 whose token decoder is guided by a predicted embedding of the
next context chunk. The method follows docs/method.md; its steps are numbered the same way here:

    1. token encoder       h   = blocks_enc(wte[x] + wpe[t])
    2. map to contexts     c_j = mean(h[j*w : (j+1)*w]), complete chunks only
    3. context predictor   ĉ_{j+1} = P(c_0 .. c_j), a causal Transformer over chunks
    4. placeholder         ĉ_0 = c_init = h_0
    5. shifted broadcast   position t receives ĉ_{k(t)}, k(t) = floor((t + 1) / w)
    6. token decoder       logits = lm_head(ln_f(blocks_dec(h + ĉ_{k(t)})))

With n_ctx_layer = 0 steps 2-5 vanish and the model is exactly GPT-2 (nanoGPT's model.py).

The file reads in that order: the configuration, the Transformer block that E, P and D are all
made of, the model and its forward pass (steps 1-6), bookkeeping and GPT-2 weights, and last
incremental decoding (prefill, decode_step, generate, and the caches they fill).
"""

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


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


# ---------------------------------------------------------------- the Transformer block

class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x, cache=None):
        """x (B, T, C) -> (B, T, C). With a KVCache, the new keys and values are appended to it
        and the queries attend to everything cached so far."""
        B, T, C = x.size()  # batch, sequence length, embedding width n_embd
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, nh, cached + T, hs)
        # New positions either fill an empty cache (T > 1, causal among themselves) or arrive one
        # at a time (T == 1, free to see every cached key).
        assert T == 1 or k.size(2) == T, "decode one token at a time after the prefill"
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=T > 1)  # (B, nh, T, hs), flash attention where available
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """A pre-LN Transformer block; E, P and D are all stacks of these."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


def run_blocks(blocks, x, caches=None):
    """x through a stack of blocks; caches, if given, holds one KVCache per block."""
    for i, block in enumerate(blocks):
        x = block(x, None if caches is None else caches[i])
    return x


# ---------------------------------------------------------------- the model

class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),  # E, then D
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        # The context predictor P: its own causal stack over chunk embeddings. It has no final
        # LayerNorm: ĉ is added to h and must stay on h's scale (docs/method.md, "Scale").
        self.context_predictor = nn.ModuleList([Block(config) for _ in range(config.n_ctx_layer)])
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as GPT-2

        # GPT-2 init for both pathways; residual projections scaled down by 1/sqrt(2 * n_layer)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def token_encoder(self):
        return self.transformer.h[:self.config.n_enc_layer]

    @property
    def token_decoder(self):
        return self.transformer.h[self.config.n_enc_layer:]

    # ---------------------------------------------------------------- the forward pass

    def forward(self, idx, targets=None, all_logits=False):
        """idx (B, T) -> (logits, loss). With targets (B, T): logits (B, T, vocab) and the mean
        cross-entropy (targets of -1 are ignored). Without: the last position's logits
        (B, 1, vocab) and None, or every position's with all_logits=True."""
        B, T = idx.size()
        assert T <= self.config.block_size, f"sequence of {T} > block_size {self.config.block_size}"
        h = self.encode(idx)                    # 1. token encoder E
        x = h
        if self.config.n_ctx_layer > 0:
            x = h + self.predicted_context(h)   # 2-5. the context each position receives
        x = self.decode(x)                      # 6. token decoder D
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
            return logits, loss
        if not all_logits:
            x = x[:, [-1], :]  # inference only needs the last position
        return self.lm_head(x), None

    def encode(self, idx, start=0, caches=None):
        """Step 1: token ids (B, T) at positions start .. start+T-1 -> encoder states h (B, T, C).
        With n_enc_layer = 0, h is the embedding sum itself."""
        pos = torch.arange(start, start + idx.size(1), dtype=torch.long, device=idx.device)
        h = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        return run_blocks(self.token_encoder, h, caches)

    def predicted_context(self, h, caches=None):
        """Steps 2-5: encoder states h (B, T, C) -> ĉ_{k(t)} (B, T, C), the predicted context
        each position t receives. caches, if given, are P's KV caches to fill (a prefill)."""
        B, T, C = h.size()
        w = self.config.chunk_size
        K = T // w
        # 2. map to contexts: mean over complete chunks; a trailing partial chunk would leak the future
        c = h[:, :K * w].reshape(B, K, w, C).mean(dim=2)  # (B, K, C): c_0 .. c_{K-1}
        # 3. context predictor: causal over chunks, so ĉ_{j+1} sees c_0 .. c_j only
        c_next = run_blocks(self.context_predictor, c, caches)  # (B, K, C): ĉ_1 .. ĉ_K
        # 4. placeholder: the first chunk has no past to predict it from, so ĉ_0 = c_init = h_0
        c_hat = torch.cat([h[:, :1], c_next], dim=1)  # (B, K + 1, C): ĉ_0 .. ĉ_K
        # 5. shifted broadcast: ĉ_k is built from tokens < k*w and used from position k*w - 1 on
        k = (torch.arange(T, device=h.device) + 1) // w  # (T,): k(t)
        return c_hat[:, k]  # (B, T, C)

    def decode(self, x, caches=None):
        """Step 6 before the head: D's blocks and the final LayerNorm, (B, T, C) -> (B, T, C).
        Exactly GPT-2's remaining blocks."""
        return self.transformer.ln_f(run_blocks(self.token_decoder, x, caches))

    # ---------------------------------------------------------------- bookkeeping

    def get_num_params(self, non_embedding=True):
        """Parameters in the model; nanoGPT's convention leaves out wpe (wte is tied to lm_head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def param_breakdown(self):
        """{'token': token pathway (E, D, embeddings, head), 'predictor': context predictor P}."""
        predictor = sum(p.numel() for p in self.context_predictor.parameters())
        return {"token": self.get_num_params(non_embedding=False) - predictor, "predictor": predictor}

    def flops_per_token(self, T=None):
        """Training FLOPs (forward + backward) per token at sequence length T, PaLM-style:
        6 per weight plus attention; P's share is paid on K = T // w chunk positions only."""
        cfg = self.config
        T = T or cfg.block_size
        H, Q = cfg.n_head, cfg.n_embd // cfg.n_head
        n_predictor = self.param_breakdown()["predictor"]
        token = 6 * (self.get_num_params() - n_predictor) + 12 * cfg.n_layer * H * Q * T
        K = T // cfg.chunk_size
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
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW; weight decay on matrices and embeddings (2-D tensors) only; fused on CUDA."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        use_fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({"fused": True} if use_fused else {}))

    @classmethod
    def from_pretrained(cls, name_or_dir, override_args=None):
        """GPT-2 weights ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl', or a local Hugging Face
        directory) in the token pathway; a freshly initialised context predictor. override_args
        may set dropout, chunk_size, n_ctx_layer, n_enc_layer."""
        override_args = dict(override_args or {})
        allowed = {"dropout", "chunk_size", "n_ctx_layer", "n_enc_layer"}
        if set(override_args) - allowed:
            raise ValueError(f"from_pretrained can only override {sorted(allowed)}, got {sorted(override_args)}")
        from transformers import GPT2LMHeadModel  # optional dependency, only needed here
        hf = GPT2LMHeadModel.from_pretrained(name_or_dir)
        hc = hf.config
        config = GPTConfig(block_size=hc.n_positions, vocab_size=hc.vocab_size, n_layer=hc.n_layer,
                           n_head=hc.n_head, n_embd=hc.n_embd, bias=True, **override_args)
        model = cls(config)
        sd = model.state_dict()
        # GPT-2 stores its Linear weights as Conv1D, i.e. transposed; buffers (masks) are skipped
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            for k, v in hf.state_dict().items():
                if k.endswith((".attn.bias", ".attn.masked_bias")):
                    continue
                if k not in sd:
                    raise ValueError(f"{name_or_dir}: unexpected GPT-2 weight {k}")
                sd[k].copy_(v.t() if k.endswith(transposed) else v)
        return model

    # ---------------------------------------------------------------- incremental decoding
    # (docs/method.md, "Incremental decoding"): a prefill runs steps 1-6 over the prompt and fills a
    # DecodingState; each decode_step then costs one position of E and D, and one position of P
    # every w tokens, when a chunk completes.

    @torch.no_grad()
    def prefill(self, idx):
        """Steps 1-6 over a prompt idx (B, T), T <= block_size, filling a fresh DecodingState.
        Returns (the last position's logits (B, 1, vocab), the state)."""
        B, T = idx.size()
        assert T <= self.config.block_size, f"prompt of {T} > block_size {self.config.block_size}"
        state = DecodingState(self.config)
        h = self.encode(idx, caches=state.encoder)
        x = h
        if self.config.n_ctx_layer > 0:
            context = self.predicted_context(h, caches=state.predictor)
            x = h + context
            # decoding picks up in the chunk being filled, under the context of the last position
            state.chunk = h[:, T // self.config.chunk_size * self.config.chunk_size:]
            state.context = context[:, -1:]
        x = self.decode(x, caches=state.decoder)
        state.pos = T
        return self.lm_head(x[:, [-1], :]), state

    @torch.no_grad()
    def decode_step(self, idx, state):
        """Logits (B, 1, vocab) for one new token per sequence, idx (B, 1), at position
        state.pos, using and extending the state's caches."""
        h = self.encode(idx, start=state.pos, caches=state.encoder)  # 1. E on the new position
        x = h
        if self.config.n_ctx_layer > 0:
            state.chunk = torch.cat([state.chunk, h], dim=1)
            if state.chunk.size(1) == self.config.chunk_size:
                # 2-3. a chunk just completed: pool it and step P once; ĉ_{j+1} is in force
                # from this very position on (k(t) = (t + 1) / w)
                c = state.chunk.mean(dim=1, keepdim=True)  # (B, 1, C)
                state.context = run_blocks(self.context_predictor, c, state.predictor)
                state.chunk = state.chunk[:, :0]
            x = h + state.context  # 5. the context in force at this position
        x = self.decode(x, caches=state.decoder)  # 6. D on the new position
        state.pos += 1
        return self.lm_head(x)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True, vocab_size=None):
        """Append max_new_tokens tokens to idx (B, T) and return it. temperature=0 is greedy;
        vocab_size keeps sampling to the tokenizer's ids (the model's vocabulary may be padded).
        Past block_size each step conditions on the last block_size tokens, like nanoGPT; with
        learned absolute positions the whole window shifts, so it is prefilled again."""
        state = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _ = self(idx[:, -self.config.block_size:])
            elif state is None or state.pos == self.config.block_size:
                logits, state = self.prefill(idx[:, -self.config.block_size:])
            else:
                logits = self.decode_step(idx[:, -1:], state)
            idx_next = sample_next(logits[:, -1, :vocab_size], temperature, top_k)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


class KVCache:
    """Keys and values of one attention layer. Buffers for max_len positions are allocated at the
    first append and written in place, so a decoding step does not copy the whole past."""

    def __init__(self, max_len):
        self.max_len, self.len = max_len, 0
        self.k = self.v = None

    def append(self, k, v):
        """k, v (B, nh, T, hs) -> every key and value so far, (B, nh, len, hs) each."""
        B, H, T, D = k.shape
        if self.k is None:
            self.k, self.v = k.new_empty(B, H, self.max_len, D), v.new_empty(B, H, self.max_len, D)
        assert self.len + T <= self.max_len, "KV cache full: prefill a new DecodingState"
        self.k[:, :, self.len:self.len + T], self.v[:, :, self.len:self.len + T] = k, v
        self.len += T
        return self.k[:, :, :self.len], self.v[:, :, :self.len]


class DecodingState:
    """What incremental decoding carries from one token to the next: a KV cache per layer of each
    of E, P and D, the encoder states of the chunk being filled, and the context ĉ currently
    broadcast. GPT.prefill makes one; GPT.decode_step advances it."""

    def __init__(self, config):
        T, K = config.block_size, config.block_size // config.chunk_size  # at most K chunks in a window
        self.encoder = [KVCache(T) for _ in range(config.n_enc_layer)]
        self.predictor = [KVCache(K) for _ in range(config.n_ctx_layer)]
        self.decoder = [KVCache(T) for _ in range(config.n_layer - config.n_enc_layer)]
        self.pos = 0          # tokens in the window so far
        self.chunk = None     # (B, < w, C): encoder states since the last chunk boundary
        self.context = None   # (B, 1, C): ĉ_{k(t)} for the current position t


def sample_next(logits, temperature=1.0, top_k=None):
    """Next token ids (B, 1) from last-position logits (B, vocab); temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits[logits < v[:, [-1]]] = -float("Inf")
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
