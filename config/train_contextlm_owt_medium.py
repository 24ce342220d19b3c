# ContextLM-Medium on OpenWebText (the paper's Table 1: 24 layers, 16 heads, 1024, lr 8e-4), the same
# ~0.5M-token step and 9B tokens as ContextLM-Base. The GPT-2 baseline: add --n_ctx_layer=0
# --out_dir=out-gpt2-owt-medium. Smaller micro-batches, more accumulation, to fit 80 GB GPUs.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_owt.py")).read())
out_dir = "out-contextlm-owt-medium"
wandb_run_name = "contextlm-medium"
n_layer = 24
n_head = 16
n_embd = 1024
learning_rate = 8e-4
min_lr = 8e-05
batch_size = 16                          # 16 x 1024 x 32 = 524,288 tokens per step
gradient_accumulation_steps = 32
