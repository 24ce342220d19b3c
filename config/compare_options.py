# The choices the paper leaves open, each a contextlm arm beside the three of the study, on the
# base cell of config/compare_regimes.py (the GPU recipe scaled down), whose gpt and contextlm
# runs it shares (same out_dir). Each option is compared with gpt and with contextlm, the default,
# paired by seed (docs/study.md). Seeds 1337-1341 decide; an option that wins there is run again
# on seeds 1342-1346 (--seed=1342), which report, and then on BPE
# (config/compare_shakespeare_bpe.py with the same --options) before it may become a default.
#   python compare.py config/compare_options.py --arms="['gpt+2L','contextlm-gain1','contextlm-zero-init','contextlm-tied']" &
#   python compare.py config/compare_options.py --arms="['contextlm-paper','contextlm-ctx-dropout0','contextlm-plr0.5','contextlm-plr2']"; wait
#   python compare.py config/compare_options.py      # the report: runs/regimes/base/results.{md,json}
exec(open(__file__.replace("compare_options.py", "compare_regimes.py")).read())
out_dir = "runs/regimes/base"
sweep = False
cells = {}
options = {
    "gain1": {"context_gain_init": 1.0},          # the learned gain starts at 1, not 0
    "zero-init": {"predictor_init": "zero"},      # P's output projections start at 0: ĉ_{j+1} = c_j at first
    "tied": {"context_scale": "tied"},            # ĉ at h's scale, no gain: the norm alone
    "paper": {"context_scale": "none"},           # no norm: P's output added as is, the paper read literally
    "ctx-dropout0": {"context_dropout": 0.0},     # no dropout inside P (the model's is 0.2)
    "plr0.5": {"predictor_lr_scale": 0.5},        # P learns at half the model's rate
    "plr2": {"predictor_lr_scale": 2.0},          # P learns at twice the model's rate
}
