"""Evaluation: alignment and error metrics, a synthetic whole-body benchmark, the eval runner."""

from .metrics import mpjpe, pa_mpjpe, procrustes_align, v2v

__all__ = ["mpjpe", "pa_mpjpe", "procrustes_align", "v2v"]
