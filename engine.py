"""
Decoding, as nanochat's engine.py: the objects that turn a trained GPT (model.py) into text one
token at a time, fast (docs/method.md, "Incremental decoding").

    KVCache        the keys and values of one attention layer, in buffers written in place
    DecodingState  what decoding carries from one token to the next: a KVCache per layer of E, P
                   and D, the last w encoder states, the context ĉ in force, the position
    sample_next    the next token from the last position's logits
    Engine         prefill (steps 1-6 over a prompt, filling a state), the decode step (one
                   position of E and D, and of P where a chunk completes; compiled once with
                   compile=True, a CUDA graph on CUDA), and generate

model.py threads a cache and a slot through attention; all else about decoding lives here.
"""

import math

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from model import run_blocks

# Decoding's attention kernels, chosen: PyTorch would prefer cuDNN for bf16, which plans each new
# shape for seconds. A step's masked query runs on flash attention on a CPU, on the
# memory-efficient kernel on CUDA (flash takes no mask there); math is the fallback.
DECODE_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def static_buffer(t):
    """t, a tensor that decode steps write in place, marked so on CUDA: the CUDA graph of a
    compiled step may only write inputs whose address it knows, and reads them where they lie
    instead of copying them in at every replay. (Unguarded: another state's buffers make the
    graph be recorded again, not the step compiled again.)"""
    if t.is_cuda:
        torch._dynamo.mark_static_address(t)
    return t


class KVCache:
    """Keys and values of one attention layer in max_len slots, a slot a position (E, D) or a chunk
    (P), allocated at the first write and then written in place: a decode step shows attention the
    same shapes at every position. CausalSelfAttention calls prefill, or write with a step's slot."""

    def __init__(self, max_len):
        self.max_len = max_len
        self.k = self.v = None

    def prefill(self, k, v):
        """k, v (B, nh, T, hs) of positions 0 .. T-1 into the first T slots."""
        if self.k is None:
            B, H, _, D = k.shape
            # zeros: an empty slot is masked out, yet a weight of 0 times NaN would be NaN
            self.k = static_buffer(k.new_zeros(B, H, self.max_len, D))
            self.v = static_buffer(k.new_zeros(B, H, self.max_len, D))
        T = k.size(2)
        self.k[:, :, :T], self.v[:, :, :T] = k, v

    def write(self, k, v, slot):
        """k, v (B, nh, 1, hs) into the slot `slot` (1,), in place. Returns what a query at that
        slot attends to: keys and values (B, nh, S, hs) each and their mask (1, S), True up to
        the query's own slot. S = max_len, the same shapes at every position, in a compiled step
        and on a GPU. Eagerly on a CPU, the filled slots only, S = slot + 1, and no mask: reading
        the whole buffer there costs a quarter of a step (12 layers of 640 slots)."""
        self.k.index_copy_(2, slot, k)
        self.v.index_copy_(2, slot, v)
        if slot.is_cpu and not torch.compiler.is_compiling():
            S = int(slot) + 1
            return self.k[:, :, :S], self.v[:, :, :S], None
        return self.k, self.v, (torch.arange(self.max_len, device=slot.device) <= slot)[None]


class DecodingState:
    """What incremental decoding carries from one token to the next, in buffers allocated for the
    window by the first prefill and then written in place: a KV cache per layer of E and D (a slot
    a position), one per layer of P (a slot a chunk), the last w encoder states, the context ĉ in
    force, and the position. Engine.prefill fills one; decode_step advances it."""

    def __init__(self, config):
        T, w = config.block_size, config.chunk_size
        self.encoder = [KVCache(T) for _ in range(config.n_enc_layer)]
        # a slot for every chunk that starts in the window, the last one perhaps never complete
        self.predictor = [KVCache(math.ceil(T / w)) for _ in range(config.n_ctx_layer)]
        self.decoder = [KVCache(T) for _ in range(config.n_layer - config.n_enc_layer)]
        self.pos = None       # (1,) long: the next token's position (a tensor: no constant of a compiled step)
        self.chunk = None     # (B, w, C): the last w encoder states; when a chunk completes, that chunk's
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


@torch.no_grad()
def decode_step(model, idx, state):
    """Logits (B, 1, vocab) for one new token per sequence, idx (B, 1), at position state.pos,
    writing the state's buffers in place. Compiled, it runs the same operations on tensors of
    the same shapes whatever the position, with no Python branch on it, so that torch.compile
    traces it once (Engine with compile=True)."""
    w = model.config.chunk_size
    pos = state.pos  # (1,): the new token's position, and its slot in E's and D's caches
    h = model.token_encoder(idx, pos, state.encoder, slot=pos)  # 1. E on the new position: (B, 1, C)
    x = h
    if model.config.n_ctx_layer > 0:
        state.chunk.copy_(torch.cat([state.chunk[:, 1:], h], dim=1))  # (B, w, C): the last w states
        complete = pos % w == w - 1  # (1,): chunk j = pos // w has just completed
        # 2-3. Where it has, pool it and step P once at the chunk's position: ĉ_{j+1} is in force
        # from this very position on (k(t) = (t + 1) / w). A compiled step cannot branch on the
        # position, so it steps P at every position, on the chunk as far as it is filled, and
        # keeps ĉ_{j+1} only where the chunk is complete (slot j of P's caches holds the partial
        # chunk until then, seen by discarded steps only). Eagerly, P runs only where it counts.
        if torch.compiler.is_compiling() or complete.item():
            j = pos // w  # (1,): the chunk, and its slot in P's caches
            c = state.chunk.mean(dim=1, keepdim=True)  # (B, 1, C): c_j once the chunk is complete
            rope = model.rotary(model.chunk_position(j))
            c_next = run_blocks(model.context_predictor, c, state.predictor, rope, slot=j)  # (B, 1, C): ĉ_{j+1}
            state.context.copy_(torch.where(complete, c_next, state.context))
        x = model.add_context(h, state.context)  # 5-6. the context in force at this position
    x = model.token_decoder(x, pos, state.decoder, slot=pos)  # 6. D on the new position: (B, 1, C)
    state.pos += 1  # in place: the same tensor, one position on
    return model.lm_head(x)


class Engine:
    """Incremental decoding of a GPT: prefill a prompt, then decode one token at a time, each at
    the cost of one position. compile=True compiles the decode step (sample.py --compile, bench.py
    on a GPU): its shapes do not change with the position, so it compiles once (per batch size),
    in one graph; on CUDA as a CUDA graph ("reduce-overhead"), a whole step in one launch where
    eager decoding launches hundreds of small kernels. prefill stays eager: once per prompt."""

    def __init__(self, model, compile=False):
        self.model = model
        self.step = decode_step  # (model, idx (B, 1), state) -> logits (B, 1, vocab)
        if compile:
            mode = "reduce-overhead" if model.lm_head.weight.is_cuda else "default"
            self.step = torch.compile(decode_step, fullgraph=True, dynamic=False, mode=mode)

    @torch.no_grad()
    def prefill(self, idx, state=None):
        """Steps 1-6 over a prompt idx (B, T), T <= block_size, filling a DecodingState: a fresh
        one, or `state` again, in its buffers (of the same batch size, dtype and device), as
        generate does for each new window past block_size. Returns (the last position's logits
        (B, 1, vocab), the state)."""
        model = self.model
        B, T = idx.size()
        assert T <= model.config.block_size, f"prompt of {T} > block_size {model.config.block_size}"
        w = model.config.chunk_size
        state = DecodingState(model.config) if state is None else state
        h, context, x = model.hidden_states(idx, (state.encoder, state.predictor, state.decoder))  # (B, T, C) each
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
        return model.lm_head(x[:, [-1], :]), state  # (B, 1, vocab)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True, vocab_size=None,
                 stop_token=None, state=None, on_step=None):
        """Append max_new_tokens tokens to idx (B, T) and return it. temperature=0 is greedy;
        vocab_size keeps sampling to the tokenizer's ids (the model's vocabulary may be padded);
        stop_token (an end-of-text id) ends generation early, once every row has produced it: a
        row's tokens after its first stop_token are what it sampled while the others went on.
        use_cache=False runs the full forward at every token (the naive path the tests compare
        against). state: a DecodingState of an earlier call with the same batch size, to decode
        in its buffers again (on CUDA, the compiled step's CUDA graph then replays as recorded);
        None, a new one. on_step: called with no arguments after each decode step (sample.py
        times them). Past block_size each step conditions on the last block_size tokens, like
        nanoGPT, and the window is prefilled again: a slid cache is not the forward over the new
        window, even with rotary positions (docs/pythia.md)."""
        block_size = self.model.config.block_size
        start = None  # where the state's window begins in idx; None before the first prefill
        stopped = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
        with sdpa_kernel(DECODE_ATTENTION):  # once a call, not at every step: choosing has a cost too
            for _ in range(max_new_tokens):
                if not use_cache:
                    logits, _ = self.model(idx[:, -block_size:])  # the last block_size tokens
                elif start is None or idx.size(1) - start > block_size:
                    # the first window, or one with no room for the new token: prefill the last
                    # block_size tokens, into the same buffers (counted here: reading state.pos
                    # would wait for the GPU at every token)
                    start = max(0, idx.size(1) - block_size)
                    logits, state = self.prefill(idx[:, start:], state)
                else:
                    # the token sampled last, a tensor of its own: a view of idx would change its
                    # strides, and with them a compiled step, at every token
                    logits = self.step(self.model, idx_next, state)
                    if on_step is not None:
                        on_step()
                idx_next = sample_next(logits[:, -1, :vocab_size], temperature, top_k)  # (B, 1)
                idx = torch.cat((idx, idx_next), dim=1)
                if stop_token is not None:
                    stopped |= idx_next[:, 0] == stop_token
                    if stopped.all():
                        break
        return idx
