# The GPT-2 124M baseline for ContextLM-Base: the same data, batch, schedule and token budget,
# without the context predictor. `__file__` is this config's path (set by the config loader).
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_owt.py")).read())
n_ctx_layer = 0
out_dir = "out-gpt2-owt"
wandb_run_name = "gpt2-base"
