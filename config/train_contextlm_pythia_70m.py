# ContextLM-Pythia-70M on the Pile, the paper's Table 3: Pythia-70M (6 layers, 8 heads, 512 wide,
# the GPT-NeoX block) plus a 2-layer context predictor with chunk size 4, trained with Pythia's own
# hyperparameters, as the paper says its Pythia runs were ("following official hyperparameters
# including tokenizer, optimizer, learning rate schedule, and batch size"; 300B tokens, 2048 long).
# Pythia's are those of EleutherAI/pythia's models/70M/pythia-70m.yml (the other sizes: the
# config files next to this one): 1024 sequences of 2048 tokens a step (2,097,152 tokens), 143,000
# steps (299.9B tokens, one pass over the Pile), Adam betas (0.9, 0.95), warm-up over 1% of the
# steps, cosine decay to 10% of the peak, weight decay 0.1 (the Pythia paper's appendix says 0.01;
# its authors call that an error, EleutherAI/pythia#132), gradient clipping 1.0, no dropout.
# The Pythia-70M baseline is the same command with --n_ctx_layer=0 --out_dir=out-pythia-70m
# --wandb_run_name=pythia-70m. Sized for one node of 8 GPUs (80 GB each):
#   python prepare.py pile --num_proc=16
#   torchrun --standalone --nproc_per_node=8 train.py config/train_contextlm_pythia_70m.py
# What differs from Pythia's own runs (docs/pythia.md): the Pile less its copyrighted subsets,
# batches at random offsets rather than Pythia's fixed order, this repo's GPT-2 initialisation
# rather than GPT-NeoX's small_init/wang_init, bf16 autocast rather than fp16 with loss scaling.

out_dir = "out-contextlm-pythia-70m"
wandb_log = False
wandb_run_name = "contextlm-pythia-70m"

dataset = "pile"  # python prepare.py pile: Pythia's tokenizer, vocabulary padded to 50304 like its models
block_size = 2048
# 1024 sequences a step: micro-batches of as many tokens as the GPT-2 config of about the same
# size takes (train_contextlm_owt*.py), times accumulation; not measured on this backbone
batch_size = 16
gradient_accumulation_steps = 64  # 16 x 64 = 1024 sequences x 2048 = 2,097,152 tokens a step

# the GPT-NeoX block of Pythia (config.BACKBONES["pythia"]), with biases
rotary_pct = 0.25
rotary_base = 10000.0
parallel_residual = True
tie_embeddings = False
gelu_approximate = "none"
layer_norm_eps = 1e-5
bias = True

n_layer = 6
n_head = 8
n_embd = 512
dropout = 0.0
chunk_size = 4
n_ctx_layer = 2
n_enc_layer = 0

learning_rate = 1e-3
min_lr = 1e-4            # 10% of the peak
max_iters = 143000       # 143,000 x 2,097,152 = 299.9B tokens
lr_decay_iters = 143000
warmup_iters = 1430      # 1% of the steps
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000     # and a checkpoint: Pythia saved one every 1000 steps
eval_iters = 100
log_interval = 10
compile = True
