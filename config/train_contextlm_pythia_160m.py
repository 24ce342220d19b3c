# ContextLM-Pythia-160M on the Pile (the paper's Table 3): Pythia-160M, 12 layers, 12 heads, 768 wide, lr 6e-4
# (EleutherAI/pythia's models/160M/pythia-160m.yml), plus the 2-layer context predictor, trained with the
# same Pythia recipe as config/train_contextlm_pythia_70m.py: 143,000 steps of 2,097,152 tokens.
# The Pythia-160M baseline: add --n_ctx_layer=0 --out_dir=out-pythia-160m --wandb_run_name=pythia-160m.
#   torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_pythia_160m.py
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_pythia_70m.py")).read())
out_dir = "out-contextlm-pythia-160m"
wandb_run_name = "contextlm-pythia-160m"
n_layer = 12
n_head = 12
n_embd = 768
learning_rate = 6e-4
min_lr = 6e-5
batch_size = 8                         # 8 x 128 = 1024 sequences a step
gradient_accumulation_steps = 128
