# ContextLM-Large on OpenWebText (the paper's Table 1: 36 layers, 20 heads, 1280, lr 6e-4), the same
# ~0.5M-token step and 9B tokens as ContextLM-Base. The GPT-2 baseline: add --n_ctx_layer=0
# --out_dir=out-gpt2-owt-large. Smaller micro-batches, more accumulation, to fit 80 GB GPUs.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_owt.py")).read())
out_dir = "out-contextlm-owt-large"
wandb_run_name = "contextlm-large"
n_layer = 36
n_head = 20
n_embd = 1280
learning_rate = 6e-4
min_lr = 6e-05
batch_size = 8                          # 8 x 1024 x 64 = 524,288 tokens per step
gradient_accumulation_steps = 64
