# ContextLM-Pythia-1B on the Pile (the paper's Table 3): Pythia-1B, 16 layers, 8 heads, 2048 wide, lr 2.5e-4
# (EleutherAI/pythia's models/1B/pythia-1b.yml), plus the 2-layer context predictor, trained with the
# same Pythia recipe as config/train_contextlm_pythia_70m.py: 143,000 steps of 2,097,152 tokens.
# (The Pythia paper's Table 1 gives 1B a learning rate of 3e-4; its config files, which its authors
# point to as what ran (EleutherAI/pythia#132), say 2.5e-4 for pythia-1b and pythia-1b-deduped.)
# The Pythia-1B baseline: add --n_ctx_layer=0 --out_dir=out-pythia-1b --wandb_run_name=pythia-1b.
#   torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_pythia_1b.py
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_pythia_70m.py")).read())
out_dir = "out-contextlm-pythia-1b"
wandb_run_name = "contextlm-pythia-1b"
n_layer = 16
n_head = 8
n_embd = 2048
learning_rate = 2.5e-4
min_lr = 2.5e-5
batch_size = 4                         # 4 x 256 = 1024 sequences a step
gradient_accumulation_steps = 256
