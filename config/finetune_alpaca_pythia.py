# Instruction tuning on Alpaca for the Pythia backbone: ContextLM-Pythia-160M and its Pythia-160M
# baseline, each fine-tuned from its pretrained run with the same recipe as the GPT-2 models
# (config/finetune_alpaca_gpt2.py: Stanford Alpaca's 3 epochs, 128 examples a step, lr 2e-5).
#   python prepare.py alpaca --ckpt=out-contextlm-pythia-160m --val_fraction=0.02  # NeoX BPE -> data/alpaca_neox/
#   python train.py config/finetune_alpaca_pythia.py      # -> out-alpaca-contextlm-pythia-160m
#   python train.py config/finetune_alpaca_pythia.py --init_from=out-pythia-160m --out_dir=out-alpaca-pythia-160m
# or from EleutherAI's weights (pip install transformers): --init_from=pythia-160m --n_ctx_layer=0
# (a Pythia; with n_ctx_layer=2 a ContextLM whose predictor starts untrained). Another size: its run's
# out_dir, e.g. --init_from=out-contextlm-pythia-410m.
# What differs from the GPT-2 config: the data are in the GPT-NeoX BPE (end-of-text is id 0), and the
# rows keep all of Pythia's 2048 positions, for the same reason GPT-2 keeps its 1024 (MT-Bench's
# two-turn prompts fit whole); half the rows a micro-batch, twice the micro-batches, 128 examples a step.
import os

exec(open(os.path.join(os.path.dirname(__file__), "finetune_alpaca_gpt2.py")).read())

init_from = "out-contextlm-pythia-160m"  # config/train_contextlm_pythia_160m.py's run
out_dir = "out-alpaca-contextlm-pythia-160m"
wandb_run_name = "alpaca-contextlm-pythia-160m"

dataset = "alpaca_neox"
batch_size = 8
gradient_accumulation_steps = 16  # 8 x 16 = 128 examples a step
block_size = 2048
