"""
Where a script runs and in what precision: setup_device picks the device and the autocast
context, synchronize waits for it (for timers), peak_flops knows a GPU's bf16 peak for MFU.
"""

from contextlib import nullcontext

import torch

from configurator import UserError


def setup_device(device="auto", dtype="auto"):
    """(device, device_type, torch dtype, autocast context). 'auto' picks cuda, then mps, then
    cpu, and bfloat16 where the GPU supports it, float16 on other GPUs, float32 elsewhere (TF32 on)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device_type = device.split(":")[0]
    if device_type not in ("cuda", "mps", "cpu"):
        raise UserError(f"device '{device}' not understood: use auto, cpu, cuda, cuda:N or mps")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' asked for but CUDA is not available: use --device=cpu")
    if device_type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{device}' asked for but MPS is not available: use --device=cpu")
    if dtype == "auto":
        dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if device_type == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"dtype '{dtype}' not understood: use auto, float32, bfloat16 or float16")
    ptdtype = getattr(torch, dtype)
    torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls and convolutions on the GPU's tensor cores
    torch.backends.cudnn.allow_tf32 = True
    ctx = nullcontext() if ptdtype == torch.float32 else torch.autocast(device_type=device_type, dtype=ptdtype)
    return device, device_type, ptdtype, ctx


def synchronize(device):
    """Wait for the GPU: its kernels run asynchronously, and a timer must see them finish."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)
    elif str(device).startswith("mps"):
        torch.mps.synchronize()


def peak_flops(device):
    """Dense bf16 peak FLOP/s of the GPU, for MFU; None where we do not know it (CPU, MPS)."""
    if not str(device).startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in (("H100", 989e12), ("H200", 989e12), ("A100", 312e12), ("L4", 121e12), ("A10", 125e12)):
        if key in name:
            return flops
    return None
