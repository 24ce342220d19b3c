# The parameter-matched baseline the reviewers asked for: a plain GPT-2 with 2 more token layers
# (14), which has as many parameters as ContextLM-Base (12 token layers + a 2-layer predictor).
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_owt.py")).read())
n_ctx_layer = 0
n_layer = 14
out_dir = "out-gpt2-owt-14l"
wandb_run_name = "gpt2-base-14l"
