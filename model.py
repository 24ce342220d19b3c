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

Each helper comes before its first user, so the file reads: the configuration; the KV cache of
one attention layer and the Transformer block that E, P and D are all made of; the state that
incremental decoding carries and the sampling of a token; the conversion of Hugging Face GPT-2
and GPT-NeoX weights that from_pretrained uses; then the model: its forward pass (steps 1-6),
bookkeeping and pretrained weights, and incremental decoding (prefill, decode_step, generate).
"""

import inspect
import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


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
        check(math.isfinite(self.predictor_lr_scale) and self.predictor_lr_scale > 0, "predictor_lr_scale",
              "must be a number above 0 (1 = the model's learning rate)")


# ---------------------------------------------------------------- the KV cache of one attention layer

def static_buffer(t):
    """t, a tensor that decode steps write in place, marked so on CUDA: the CUDA graph of a
    compiled step (GPT.compile_decode_step) may only write inputs whose address it knows, and
    reads them where they lie instead of copying them in at every replay. (Unguarded: another
    state's buffers make the graph be recorded again, not the step compiled again.)"""
    if t.is_cuda:
        torch._dynamo.mark_static_address(t)
    return t


class KVCache:
    """Keys and values of one attention layer in max_len slots, one a position of the window (E,
    D) or one a chunk (P). The buffers are allocated at the first write and then written in
    place, so that a decode step can show attention tensors of the same shapes at every position."""

    def __init__(self, max_len):
        self.max_len = max_len
        self.k = self.v = None

    def allocate(self, k):
        """Buffers for keys and values like k (B, nh, T, hs)."""
        B, H, _, D = k.shape
        # zeros: an empty slot is masked out, yet a weight of 0 times NaN would be NaN
        self.k = static_buffer(k.new_zeros(B, H, self.max_len, D))
        self.v = static_buffer(k.new_zeros(B, H, self.max_len, D))

    def prefill(self, k, v):
        """k, v (B, nh, T, hs) of positions 0 .. T-1 into the first T slots."""
        if self.k is None:
            self.allocate(k)
        T = k.size(2)
        self.k[:, :, :T], self.v[:, :, :T] = k, v

    def write(self, k, v, slot):
        """k, v (B, nh, 1, hs) into the slot `slot` (1,), in place. Returns what a query at that
        slot attends to: keys and values (B, nh, S, hs) each and their mask (1, S), True up to
        the query's own slot. S = max_len, the same shapes at every position, in a compiled step
        and on a GPU. Eagerly on a CPU, the filled slots only, S = slot + 1, and no mask: there
        reading the slot is free, and reading the whole buffer costs memory bandwidth (a quarter
        of a step with 12 layers of 640 slots)."""
        self.k.index_copy_(2, slot, k)
        self.v.index_copy_(2, slot, v)
        if slot.is_cpu and not torch.compiler.is_compiling():
            S = int(slot) + 1
            return self.k[:, :, :S], self.v[:, :, :S], None
        return self.k, self.v, (torch.arange(self.max_len, device=slot.device) <= slot)[None]


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
        None with learned positions. With a KVCache, the new keys and values go into it: a prefill
        (no slot) fills the first T slots; a decode step (T = 1) writes the slot `slot` (1,) and
        attends to the slots up to it."""
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


# ---------------------------------------------------------------- incremental decoding: its state, and sampling

class DecodingState:
    """What incremental decoding carries from one token to the next, in buffers allocated for the
    window by the first prefill and then written in place: a KV cache per layer of E and D (a slot
    a position), one per layer of P (a slot a chunk), the last w encoder states, the context ĉ in
    force, and the position. GPT.prefill fills one; GPT.decode_step advances it."""

    def __init__(self, config):
        T, w = config.block_size, config.chunk_size
        self.encoder = [KVCache(T) for _ in range(config.n_enc_layer)]
        # a slot for every chunk that starts in the window, the last one perhaps never complete
        self.predictor = [KVCache(math.ceil(T / w)) for _ in range(config.n_ctx_layer)]
        self.decoder = [KVCache(T) for _ in range(config.n_layer - config.n_enc_layer)]
        self.pos = None       # (1,) long: the next token's position (a tensor: no constant of a compiled step)
        self.chunk = None     # (B, w, C): the last w encoder states; when a chunk completes, that chunk's
        self.context = None   # (B, 1, C): ĉ_{k(t)} for the current position t


# The attention kernels of decoding (GPT.generate), chosen rather than left to PyTorch, which
# prefers cuDNN for bf16 on recent GPUs: cuDNN builds an execution plan for each new shape,
# seconds on a first call (issue 22). A decode step's query looks at every slot through a mask,
# which flash attention takes on a CPU but not on CUDA, where the memory-efficient kernel runs
# it; math is the fallback.
DECODE_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def sample_next(logits, temperature=1.0, top_k=None):
    """Next token ids (B, 1) from last-position logits (B, vocab); temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits[logits < v[:, [-1]]] = -float("Inf")
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)


# ---------------------------------------------------------------- pretrained weights
# A Hugging Face model -> (GPTConfig fields, its state_dict in this file's names), for
# GPT.from_pretrained; export.py goes back the same way (GPT2_TRANSPOSED, neox_name).

def hf_architecture(name_or_dir):
    """(the Hugging Face repository or folder, its config.json's model_type) of from_pretrained's
    name_or_dir: Pythia's short names ('pythia-160m', like GPT-2's 'gpt2-medium') stand for
    EleutherAI/pythia-...; 'gpt2' is GPT-2, 'gpt_neox' Pythia."""
    from transformers import PretrainedConfig
    if name_or_dir.startswith("pythia-"):
        name_or_dir = f"EleutherAI/{name_or_dir}"
    return name_or_dir, PretrainedConfig.get_config_dict(name_or_dir)[0].get("model_type")


GPT2_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")  # Conv1D


def gpt2_weights(hf):
    """GPT2LMHeadModel: the same names as ours; its Linear weights are stored as Conv1D, i.e.
    transposed; its attention masks (buffers) are not weights."""
    hc = hf.config
    config = dict(block_size=hc.n_positions, vocab_size=hc.vocab_size, n_layer=hc.n_layer,
                  n_head=hc.n_head, n_embd=hc.n_embd, bias=True)
    sd = {k: v.t() if k.endswith(GPT2_TRANSPOSED) else v for k, v in hf.state_dict().items()
          if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    return config, sd


NEOX_NAMES = (("gpt_neox.embed_in.", "transformer.wte."), ("gpt_neox.final_layer_norm.", "transformer.ln_f."),
              ("gpt_neox.layers.", "transformer.h."), (".input_layernorm.", ".ln_1."),
              (".post_attention_layernorm.", ".ln_2."), (".attention.query_key_value.", ".attn.c_attn."),
              (".attention.dense.", ".attn.c_proj."), (".mlp.dense_h_to_4h.", ".mlp.c_fc."),
              (".mlp.dense_4h_to_h.", ".mlp.c_proj."), ("embed_out.", "lm_head."))  # (transformers 4's head name)
NEOX_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}  # hidden_act -> gelu_approximate


def neox_name(name):
    """A GPTNeoXForCausalLM weight's name -> ours."""
    for theirs, ours in NEOX_NAMES:
        name = name.replace(theirs, ours)
    return name


def neox_weights(hf):
    """GPTNeoXForCausalLM (Pythia): renamed, and q, k, v regrouped. A GPT-NeoX variant that this
    block does not express (another MLP width, activation, no biases, scaled RoPE) is refused."""
    hc = hf.config
    rope = getattr(hc, "rope_parameters", None) or {  # transformers 5, else 4
        "partial_rotary_factor": hc.rotary_pct, "rope_theta": hc.rotary_emb_base}
    unsupported = [what for what, ok in (
        (f"intermediate_size={hc.intermediate_size}", hc.intermediate_size == 4 * hc.hidden_size),
        (f"hidden_act={hc.hidden_act}", hc.hidden_act in NEOX_GELU),
        ("attention_bias=False", getattr(hc, "attention_bias", True)),
        (f"rope_type={rope.get('rope_type')}", rope.get("rope_type", "default") == "default")) if not ok]
    if unsupported:
        raise ValueError(f"a GPT-NeoX variant this model does not build: {', '.join(unsupported)}")
    config = dict(block_size=hc.max_position_embeddings, vocab_size=hc.vocab_size,
                  n_layer=hc.num_hidden_layers, n_head=hc.num_attention_heads, n_embd=hc.hidden_size,
                  bias=True, rotary_pct=float(rope["partial_rotary_factor"]), rotary_base=float(rope["rope_theta"]),
                  parallel_residual=hc.use_parallel_residual, tie_embeddings=hc.tie_word_embeddings,
                  gelu_approximate=NEOX_GELU[hc.hidden_act], layer_norm_eps=hc.layer_norm_eps)
    nh = hc.num_attention_heads
    sd = {}
    for k, v in hf.state_dict().items():
        if k.endswith((".attention.bias", ".attention.masked_bias", ".inv_freq")):
            continue  # masks and RoPE frequencies that transformers 4 kept as buffers
        k = neox_name(k)
        if ".attn.c_attn." in k:  # GPT-NeoX's rows are q, k, v head by head (nh, 3, hs); ours (3, nh, hs)
            v = v.view(nh, 3, -1, *v.shape[1:]).transpose(0, 1).reshape(v.shape)
        sd[k] = v
    return config, sd


# ---------------------------------------------------------------- the model

def init_weights(module):
    """GPT-2's initialisation of one module: N(0, 0.02) weights for Linear and Embedding, zero biases."""
    if isinstance(module, nn.Linear):
        torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)


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
        # The context predictor P: its own causal stack over chunk embeddings. It has no final
        # LayerNorm: ĉ is added to h and must stay on h's scale (docs/method.md, "Scale").
        p_config = replace(config, dropout=config.dropout if config.context_dropout < 0 else config.context_dropout)
        self.context_predictor = nn.ModuleList([Block(p_config) for _ in range(config.n_ctx_layer)])
        if config.context_scale == "learned" and config.n_ctx_layer > 0:  # how much context D receives
            self.context_gain = nn.Parameter(torch.tensor(config.context_gain_init))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight  # weight tying, as GPT-2

        # GPT-2 init for both pathways; residual projections scaled down by 1/sqrt(2 * n_layer)
        self.apply(init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.predictor_init == "zero":  # P's blocks add nothing at first: ĉ_{j+1} = c_j
            for pn, p in self.context_predictor.named_parameters():
                if "c_proj" in pn:
                    torch.nn.init.zeros_(p)

    @property
    def token_encoder(self):
        return self.transformer.h[:self.config.n_enc_layer]

    @property
    def token_decoder(self):
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
        """The position of context chunk j (a tensor of chunk indices) on a rotary backbone: that of
        its first token, j * w, as the paper says. RoPE sees only differences of positions, so
        what this fixes for P is that its chunks lie w token positions apart."""
        return j * self.config.chunk_size

    def encode(self, idx, pos, caches=None, slot=None):
        """Step 1: token ids (B, T) at positions pos (T,) -> encoder states h (B, T, C). Positions
        enter as wpe[pos] added to the embeddings or, on a rotary backbone, as E's rotations.
        With n_enc_layer = 0, h is the embedding (sum) itself. caches and slot: E's KV caches
        and where a decode step writes in them (run_blocks)."""
        h = self.transformer.wte(idx)  # (B, T, C)
        if self.config.rotary_pct == 0:
            h = h + self.transformer.wpe(pos)
        return run_blocks(self.token_encoder, self.transformer.drop(h), caches, self.rotary(pos), slot)

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
        """Step 6's input, h + ĉ_{k(t)}: (B, T, C) each. P is a residual stream, and like every
        one it grows in training; left as is (context_scale='none'), a context tens of times larger
        than h drowns the token in D's first LayerNorm. So ĉ is brought to the root-mean-square of
        the token state it joins, position by position ('tied'), and by default times a learned
        gain that starts at 0 ('learned'): ContextLM starts as its GPT, and training decides how
        much context to let in (docs/method.md, "Scale")."""
        if self.config.context_scale != "none":
            context = context * (rms(h) / rms(context).clamp_min(1e-12))  # the clamp: a context of zeros stays zeros
        if self.config.context_scale == "learned":
            context = self.context_gain * context
        return h + context


    def decode(self, x, pos, caches=None, slot=None):
        """Step 6 before the head: D's blocks and the final LayerNorm, (B, T, C) at positions pos
        (T,) -> (B, T, C). Exactly GPT-2's (or Pythia's) remaining blocks. caches and slot: D's
        KV caches and where a decode step writes in them (run_blocks)."""
        return self.transformer.ln_f(run_blocks(self.token_decoder, x, caches, self.rotary(pos), slot))

    def hidden_states(self, idx, state=None, context=True):
        """Steps 1-6 up to the head, over idx (B, T) at positions 0 .. T-1: (h, the context each
        position receives or None, ln_f of D's output), (B, T, C) each. The context is None
        without a predictor, and with context=False (zeros in its place, see forward). With a
        DecodingState, the KV caches of E, P and D are filled on the way (GPT.prefill)."""
        B, T = idx.size()
        assert T <= self.config.block_size, f"sequence of {T} > block_size {self.config.block_size}"
        caches = (None, None, None) if state is None else (state.encoder, state.predictor, state.decoder)
        e_caches, p_caches, d_caches = caches  # E's, P's and D's KV caches, filled in a prefill
        pos = torch.arange(T, device=idx.device)  # (T,): token positions 0 .. T-1
        h = self.encode(idx, pos, e_caches)     # 1. token encoder E
        x, c_hat = h, None
        if self.config.n_ctx_layer > 0 and context:
            c_hat = self.predicted_context(h, p_caches)  # 2-5. the context each position receives
            x = self.add_context(h, c_hat)
        return h, c_hat, self.decode(x, pos, d_caches)  # 6. token decoder D

    def forward(self, idx, targets=None, all_logits=False, context=True):
        """idx (B, T) -> (logits, loss). With targets (B, T): logits (B, T, vocab) and the mean
        cross-entropy (targets of -1 are ignored). Without: the last position's logits
        (B, 1, vocab) and None, or every position's with all_logits=True. context=False leaves ĉ
        out (zeros in its place): an ablation that shows how much the decoder relies on it."""
        _, _, x = self.hidden_states(idx, context=context)  # steps 1-6
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
            return logits, loss
        if not all_logits:
            x = x[:, [-1], :]  # inference only needs the last position: (B, 1, C)
        return self.lm_head(x), None

    @torch.no_grad()
    def context_ratio(self, idx):
        """‖ĉ‖ / ‖h‖ where the context is added (step 6), mean over the positions of idx (B, T): how
        large the context is beside the token state it joins (docs/method.md, "Scale")."""
        pos = torch.arange(idx.size(1), device=idx.device)
        h = self.encode(idx, pos)
        context = self.add_context(h, self.predicted_context(h)) - h
        return (context.norm(dim=-1) / h.norm(dim=-1)).mean().item()

    @torch.no_grad()
    def context_gradient_share(self, idx, targets):
        """How much of the loss's gradient at the encoder's output h arrives through the context
        path (the chunk means, P, ĉ) rather than straight into D: ‖g_ctx‖ / (‖g_ctx‖ + ‖g_D‖) on
        the batch idx, targets (B, T), in [0, 1]. h is used twice, once by each path, so a copy
        of it goes to each and each copy's gradient is that path's share (the scale add_context
        takes from h counts with D's path)."""
        pos = torch.arange(idx.size(1), device=idx.device)
        h = self.encode(idx, pos)
        with torch.enable_grad():
            h_direct, h_context = h.detach().requires_grad_(), h.detach().requires_grad_()
            x = self.add_context(h_direct, self.predicted_context(h_context))
            logits = self.lm_head(self.decode(x, pos))
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
            g_direct, g_context = torch.autograd.grad(loss, (h_direct, h_context))
        return (g_context.norm() / (g_context.norm() + g_direct.norm()).clamp_min(1e-30)).item()

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
        predictor_lr_scale != 1, P's parameters form groups of their own whose "lr_scale" the
        training loop multiplies its learning rate by (groups without one take it as is)."""
        params = [p for p in self.parameters() if p.requires_grad]
        scaled = set(self.context_predictor.parameters()) if self.config.predictor_lr_scale != 1 else set()
        groups = []
        for subset, extra in (([p for p in params if p not in scaled], {}),
                              ([p for p in params if p in scaled], {"lr_scale": self.config.predictor_lr_scale})):
            if subset:
                groups += [{"params": [p for p in subset if p.dim() >= 2], "weight_decay": weight_decay, **extra},
                           {"params": [p for p in subset if p.dim() < 2], "weight_decay": 0.0, **extra}]
        use_fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({"fused": True} if use_fused else {}))

    @classmethod
    def from_pretrained(cls, name_or_dir, override_args=None):
        """Pretrained weights in the token pathway, a freshly initialised context predictor.
        name_or_dir: GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'), Pythia ('pythia-70m'
        ... 'pythia-1.4b', or 'EleutherAI/pythia-...'), or a local Hugging Face folder of either,
        whose config.json says which. override_args may set dropout, chunk_size, n_ctx_layer,
        n_enc_layer. Any other architecture, and a tensor the checkpoint lacks, has in excess or
        shapes otherwise, is refused with a ValueError: nothing is silently initialised afresh."""
        override_args = dict(override_args or {})
        allowed = {"dropout", "chunk_size", "n_ctx_layer", "n_enc_layer"}
        if set(override_args) - allowed:
            raise ValueError(f"from_pretrained can only override {sorted(allowed)}, got {sorted(override_args)}")
        from transformers import GPT2LMHeadModel, GPTNeoXForCausalLM  # optional dependency, only needed here
        name_or_dir, arch = hf_architecture(name_or_dir)
        hf_class = {"gpt2": GPT2LMHeadModel, "gpt_neox": GPTNeoXForCausalLM}.get(arch)
        if hf_class is None:
            raise ValueError(f"{name_or_dir} holds a model of type {arch!r}; from_pretrained loads "
                             "'gpt2' (GPT-2) and 'gpt_neox' (Pythia) models")
        hf, info = hf_class.from_pretrained(name_or_dir, output_loading_info=True, ignore_mismatched_sizes=True)
        # transformers initialises what a checkpoint lacks or mis-shapes afresh: refuse it instead
        bad = {"missing": info["missing_keys"], "unexpected": info["unexpected_keys"],
               "mis-shaped": {k for k, *_ in info["mismatched_keys"]}}
        bad = "; ".join(f"{what} {', '.join(sorted(keys)[:3])}" for what, keys in bad.items() if keys)
        if bad:
            raise ValueError(f"{name_or_dir}: the weights do not fit its config.json ({bad})")
        config_args, state_dict = (gpt2_weights if arch == "gpt2" else neox_weights)(hf)
        model = cls(GPTConfig(**config_args, **override_args))
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        unfilled = [k for k in missing if not k.startswith(("context_predictor.", "context_gain"))] + unexpected
        if unfilled:
            raise ValueError(f"{name_or_dir}: {', '.join(unfilled[:3])} did not map onto this model's weights")
        return model

    # ---------------------------------------------------------------- incremental decoding
    # (docs/method.md, "Incremental decoding"): a prefill runs steps 1-6 over the prompt and fills a
    # DecodingState; each decode_step then costs one position of E and D, and one of P where a chunk
    # completes (compiled: at every position, on tensors of the same shapes, see decode_step).

    @torch.no_grad()
    def prefill(self, idx, state=None):
        """Steps 1-6 over a prompt idx (B, T), T <= block_size, filling a DecodingState: a fresh
        one, or `state` again, in its buffers (of the same batch size, dtype and device), as
        generate does for each new window past block_size. Returns (the last position's logits
        (B, 1, vocab), the state)."""
        B, T = idx.size()
        assert T <= self.config.block_size, f"prompt of {T} > block_size {self.config.block_size}"
        w = self.config.chunk_size
        state = DecodingState(self.config) if state is None else state
        h, context, x = self.hidden_states(idx, state)  # (B, T, C) each; the KV caches filled
        if state.pos is None:  # the first prefill allocates; decode steps and later prefills write in place
            state.pos = static_buffer(torch.zeros(1, dtype=torch.long, device=idx.device))
            if context is not None:
                state.chunk = static_buffer(h.new_zeros(B, w, h.size(2)))
                state.context = static_buffer(context.new_zeros(B, 1, h.size(2)))
        state.pos.fill_(T)
        if context is not None:
            # decoding picks up with the last w encoder states (all of a prompt shorter than w),
            # under the context of the last position
            last = h[:, -w:]  # (B, min(T, w), C)
            state.chunk[:, w - last.size(1):] = last
            state.context.copy_(context[:, -1:])  # (B, 1, C)
        return self.lm_head(x[:, [-1], :]), state  # (B, 1, vocab)

    @torch.no_grad()
    def decode_step(self, idx, state):
        """Logits (B, 1, vocab) for one new token per sequence, idx (B, 1), at position
        state.pos, writing the state's buffers in place. Compiled, it runs the same operations on
        tensors of the same shapes whatever the position, with no Python branch on it, so that
        torch.compile traces it once (compile_decode_step)."""
        w = self.config.chunk_size
        pos = state.pos  # (1,): the new token's position, and its slot in E's and D's caches
        h = self.encode(idx, pos, state.encoder, slot=pos)  # 1. E on the new position: (B, 1, C)
        x = h
        if self.config.n_ctx_layer > 0:
            state.chunk.copy_(torch.cat([state.chunk[:, 1:], h], dim=1))  # (B, w, C): the last w states
            complete = pos % w == w - 1  # (1,): chunk j = pos // w has just completed
            # 2-3. Where it has, pool it and step P once at the chunk's position: ĉ_{j+1} is in force
            # from this very position on (k(t) = (t + 1) / w). A compiled step cannot branch on the
            # position, so it steps P at every position, on the chunk as far as it is filled, and
            # keeps ĉ_{j+1} only where the chunk is complete; until then slot j of P's caches holds
            # the partial chunk, seen by these discarded steps only. Run eagerly, decode_step steps P
            # only where it counts, as a step of P costs what a token layer costs (on a GPU, reading
            # `complete` waits for it: a short wait, as eager decoding leaves the GPU mostly idle).
            if torch.compiler.is_compiling() or complete.item():
                j = pos // w  # (1,): the chunk, and its slot in P's caches
                c = state.chunk.mean(dim=1, keepdim=True)  # (B, 1, C): c_j once the chunk is complete
                rope = self.rotary(self.chunk_position(j))
                c_next = run_blocks(self.context_predictor, c, state.predictor, rope, slot=j)  # (B, 1, C): ĉ_{j+1}
                state.context.copy_(torch.where(complete, c_next, state.context))
            x = self.add_context(h, state.context)  # 5-6. the context in force at this position
        x = self.decode(x, pos, state.decoder, slot=pos)  # 6. D on the new position: (B, 1, C)
        state.pos += 1  # in place: the same tensor, one position on
        return self.lm_head(x)

    def compile_decode_step(self):
        """Replace decode_step by a compiled one (sample.py --compile, bench.py on a GPU). As its
        shapes do not change with the position, it compiles once (once per batch size), in one
        graph; on CUDA as a CUDA graph ("reduce-overhead"), which replays a whole step in one
        launch where eager decoding launches hundreds of small kernels, one after the other.
        prefill stays eager: it runs once per prompt, at the prompt's length."""
        mode = "reduce-overhead" if self.lm_head.weight.is_cuda else "default"
        self.decode_step = torch.compile(self.decode_step, fullgraph=True, dynamic=False, mode=mode)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True, vocab_size=None,
                 stop_token=None, state=None):
        """Append max_new_tokens tokens to idx (B, T) and return it. temperature=0 is greedy;
        vocab_size keeps sampling to the tokenizer's ids (the model's vocabulary may be padded);
        stop_token (an end-of-text id) ends generation early, once every row has produced it: a
        row's tokens after its first stop_token are what it sampled while the others went on.
        state: a DecodingState of an earlier call with the same batch size, to decode in its
        buffers again (on CUDA, the compiled step's CUDA graph then replays as recorded); None, a
        new one. Past block_size each step conditions on the last block_size tokens, like nanoGPT,
        and the window is prefilled again: with learned positions every position shifts; with
        rotary ones the cached keys would keep their relative positions, but a deeper layer's key
        depends on every token that was in the window, and the chunk grid starts at the window's
        first token, so a slid cache is not the forward over the new window (docs/pythia.md)."""
        start = None  # where the state's window begins in idx; None before the first prefill
        stopped = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
        with sdpa_kernel(DECODE_ATTENTION):  # once a call, not at every step: choosing has a cost too
            for _ in range(max_new_tokens):
                if not use_cache:
                    logits, _ = self(idx[:, -self.config.block_size:])  # the last block_size tokens
                elif start is None or idx.size(1) - start > self.config.block_size:
                    # the first window, or one with no room for the new token: prefill the last
                    # block_size tokens, into the same buffers (counted here: reading state.pos
                    # would wait for the GPU at every token)
                    start = max(0, idx.size(1) - self.config.block_size)
                    logits, state = self.prefill(idx[:, start:], state)
                else:
                    # the token sampled last, a tensor of its own: a view of idx would change its
                    # strides, and with them a compiled step, at every token
                    logits = self.decode_step(idx_next, state)
                idx_next = sample_next(logits[:, -1, :vocab_size], temperature, top_k)  # (B, 1)
                idx = torch.cat((idx, idx_next), dim=1)
                if stop_token is not None:
                    stopped |= idx_next[:, 0] == stop_token
                    if stopped.all():
                        break
        return idx
