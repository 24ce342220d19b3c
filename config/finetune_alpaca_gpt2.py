# Instruction tuning on Alpaca, the paper's last experiment (its Figure 3): ContextLM-Base and its
# GPT-2 baseline, each fine-tuned from its pretrained run, then answering MT-Bench (docs/finetuning.md).
#   python prepare.py alpaca --val_fraction=0.02      # GPT-2 BPE; 2% of the examples held out
#   python train.py config/finetune_alpaca_gpt2.py    # ContextLM-Base: out-contextlm-owt -> out-alpaca-contextlm
#   python train.py config/finetune_alpaca_gpt2.py --init_from=out-gpt2-owt --out_dir=out-alpaca-gpt2
# or from OpenAI's GPT-2 (pip install transformers): --init_from=gpt2 --n_ctx_layer=0 (a GPT-2; with
# n_ctx_layer=2 a ContextLM whose predictor starts untrained).
# From a train.py run, its weights and architecture are used (of the model keys only dropout
# applies here), with a fresh optimizer, schedule and iteration count; its tokenizer must be the
# data's. Only the responses (and their end-of-text) are trained on.
#
# The recipe is Stanford Alpaca's (github.com/tatsu-lab/stanford_alpaca, its fine-tuning command):
# 3 epochs, 128 examples a step, lr 2e-5 with 3% warmup and a cosine decay to 0, no weight decay,
# AdamW's default betas (0.9, 0.999), gradients clipped at 1.0. Alpaca cuts examples at 512 tokens;
# we keep GPT-2's 1024 positions, so the fine-tuned model keeps its whole context for MT-Bench's
# two-turn prompts (a row holds one example and masks the rest: longer rows cost more compute).
# Steps: the dataset card's 52,002 examples less 1,040 val = 50,962, x 3 epochs / 128 = 1,194 (rows
# are drawn at random example starts, so an "epoch" is that many examples drawn, not a pass in order).

init_from = "out-contextlm-owt"  # config/train_contextlm_owt.py's run
out_dir = "out-alpaca-contextlm"
wandb_log = False
wandb_run_name = "alpaca-contextlm"

dataset = "alpaca"
batch_size = 16
gradient_accumulation_steps = 8  # 16 x 8 = 128 examples a step
block_size = 1024

dropout = 0.0

learning_rate = 2e-5
max_iters = 1194        # 3 epochs
lr_decay_iters = 1194
warmup_iters = 36       # 3%
min_lr = 0.0
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.999
grad_clip = 1.0

eval_interval = 100
eval_iters = 40         # 640 val rows
log_interval = 10
always_save_checkpoint = True
compile = True
