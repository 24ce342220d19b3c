# ContextLM-Pythia-410M on the Pile (the paper's Table 3): Pythia-410M, 24 layers, 16 heads, 1024 wide, lr 3e-4
# (EleutherAI/pythia's models/410M/pythia-410m.yml), plus the 2-layer context predictor, trained with the
# same Pythia recipe as config/train_contextlm_pythia_70m.py: 143,000 steps of 2,097,152 tokens.
# The Pythia-410M baseline: add --n_ctx_layer=0 --out_dir=out-pythia-410m --wandb_run_name=pythia-410m.
#   torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_pythia_410m.py
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_pythia_70m.py")).read())
out_dir = "out-contextlm-pythia-410m"
wandb_run_name = "contextlm-pythia-410m"
n_layer = 24
n_head = 16
n_embd = 1024
learning_rate = 3e-4
min_lr = 3e-5
batch_size = 8                         # 8 x 128 = 1024 sequences a step
gradient_accumulation_steps = 128
