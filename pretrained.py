"""
Pretrained weights, in one place: a Hugging Face GPT-2 or Pythia (GPT-NeoX) model becomes
model.py's GPT, as nanoGPT's GPT.from_pretrained does for GPT-2. Each converter maps a model to
(GPTConfig fields, its state_dict in our names); export.py runs them backwards.
"""

from model import GPT, GPTConfig


def from_pretrained(name_or_dir, override_args=None):
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
    model = GPT(GPTConfig(**config_args, **override_args))
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    unfilled = [k for k in missing if not k.startswith(("context_predictor.", "context_gain"))] + unexpected
    if unfilled:
        raise ValueError(f"{name_or_dir}: {', '.join(unfilled[:3])} did not map onto this model's weights")
    return model


def hf_architecture(name_or_dir):
    """(the Hugging Face repository or folder, its config.json's model_type) of from_pretrained's
    name_or_dir: Pythia's short names ('pythia-160m', like GPT-2's 'gpt2-medium') stand for
    EleutherAI/pythia-...; 'gpt2' is GPT-2, 'gpt_neox' Pythia."""
    from transformers import PretrainedConfig
    if name_or_dir.startswith("pythia-"):
        name_or_dir = f"EleutherAI/{name_or_dir}"
    config = PretrainedConfig.get_config_dict(name_or_dir)[0]
    if not isinstance(config, dict):
        raise ValueError(f"its config.json holds a {type(config).__name__}, not a JSON object")
    return name_or_dir, config.get("model_type")


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
