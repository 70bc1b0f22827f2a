"""The optional mamba-ssm kernel (`pip install drivewm[mamba]`) is only ever chosen for CUDA inputs:
on CPU the SSM backbone runs drivewm's own scan whether or not mamba_ssm is installed."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from drivewm.backbones import scan
from drivewm.backbones.config import BackboneConfig
from drivewm.backbones.ssm import MambaBlock


def _refuse(*args, **kwargs):
    raise AssertionError("the fused CUDA kernel was chosen for CPU inputs")


def test_fused_kernel_is_available_exactly_when_mamba_ssm_is_installed():
    assert scan.fused_available() == (importlib.util.find_spec("mamba_ssm") is not None)


def test_cpu_inputs_run_drivewms_scan_even_with_the_kernel_installed(monkeypatch):
    torch.manual_seed(0)
    block = MambaBlock(BackboneConfig(kind="ssm", dim=8, d_state=4, expand=2))
    x = torch.randn(2, 5, 8)
    y, conv, h = block(x)
    # Stand a kernel in that fails if called: the CPU path must not reach it.
    monkeypatch.setattr(scan, "_fused_scan", _refuse)
    assert scan.fused_available()
    y2, conv2, h2 = block(x)
    assert torch.equal(y, y2) and torch.equal(h, h2)


def test_requiring_the_kernel_without_mamba_ssm_fails_loudly(monkeypatch):
    monkeypatch.setattr(scan, "_fused_scan", None)
    x = torch.randn(1, 3, 4)
    A = -torch.ones(4, 2)
    with pytest.raises(ValueError, match="mamba_ssm"):
        scan.selective_scan(x, torch.ones_like(x), A, torch.randn(1, 3, 2), torch.randn(1, 3, 2), fused=True)

