# ContextLM-Pythia-1.4B on the Pile (the paper's Table 3): Pythia-1.4B, 24 layers, 16 heads, 2048 wide, lr 2e-4
# (EleutherAI/pythia's models/1.4B/pythia-1.4b.yml), plus the 2-layer context predictor, trained with the
# same Pythia recipe as config/train_contextlm_pythia_70m.py: 143,000 steps of 2,097,152 tokens.
# The Pythia-1.4B baseline: add --n_ctx_layer=0 --out_dir=out-pythia-1.4b --wandb_run_name=pythia-1.4b.
#   torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_pythia_1.4b.py
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_pythia_70m.py")).read())
out_dir = "out-contextlm-pythia-1.4b"
wandb_run_name = "contextlm-pythia-1.4b"
n_layer = 24
n_head = 16
n_embd = 2048
learning_rate = 2e-4
min_lr = 2e-5
batch_size = 2                         # 2 x 512 = 1024 sequences a step
gradient_accumulation_steps = 512
