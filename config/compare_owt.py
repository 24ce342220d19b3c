# The paper's Table 2 comparison at Base size, on GPUs: GPT-2 124M vs ContextLM-Base (+ a 2-layer
# context predictor, w=4) vs the 14-layer parameter-matched GPT-2, each on the same 9B tokens
# of OpenWebText in the same order, with train_contextlm_owt.py's Table 1 settings (12 layers,
# 12 heads, 768, block 1024, ~0.5M tokens a step, lr 1e-3). One seed: at this scale the seed
# spread is far below the effect the paper reports.
#   python prepare.py openwebtext --num_proc=8
#   python compare.py config/compare_owt.py                                        # one GPU
#   torchrun --standalone --nproc_per_node=8 compare.py config/compare_owt.py      # one node of 8
# (gradient accumulation keeps the global batch of 524,288 tokens on any number of GPUs that
# divides 32; an interrupted study resumes run by run, a run itself restarts from scratch.)
#
# Cost, ESTIMATED from FLOPs, not measured: model.flops_per_token(1024) x 9.0e9 tokens over an
# H100's 989e12 bf16 FLOP/s at an assumed 40% MFU (evaluation adds under 1%):
#   gpt        0.855 GFLOP/token  7.69e18 FLOPs  ~5.4 H100-hours
#   contextlm  0.877 GFLOP/token  7.90e18 FLOPs  ~5.5 H100-hours
#   gpt+2L     0.959 GFLOP/token  8.63e18 FLOPs  ~6.1 H100-hours
#   the study: ~17 H100-hours, ~2.1 hours on 8 H100s (at 30% MFU: ~23 H100-hours).
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_contextlm_owt.py")).read())
out_dir = "runs/compare-owt"   # each run trains in runs/compare-owt/<arm>-s<seed>
seed = 1337
seeds = 1
