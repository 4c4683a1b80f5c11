"""A budget in the units a lab has (docs/design.md §5.9): FLOPs, GPU-hours at a measured
throughput (x 3600 x peak x MFU) or dollars (divided by the hourly price first), as FLOPs
(`to_flops`); and the refusal of a budget beyond what the fit can reach (`ExtrapolationRefused`)."""

from __future__ import annotations

import math


UNITS = {"flops": "flops", "flop": "flops", "gpu-hours": "gpu-hours", "gpu_hours": "gpu-hours",
         "gpuh": "gpu-hours", "usd": "usd", "$": "usd", "dollars": "usd"}


class ExtrapolationRefused(ValueError):
    """The budget is more than EXTRAPOLATION_REFUSE times the largest fitted run's compute."""


def to_flops(budget: float, unit: str = "flops", peak_flops: float | None = None, mfu: float | None = None,
             usd_per_hour: float | None = None) -> float:
    """A budget in FLOPs.

    unit = flops: as is; gpu-hours: hours x 3600 x peak_flops x mfu (peak FLOP/s of one GPU and
    the measured model-FLOPs utilisation); usd: usd / usd_per_hour (one GPU's hourly price) gives
    GPU-hours, then as gpu-hours. A rate the unit needs and that is missing is a ValueError.
    """
    key = UNITS.get(str(unit).strip().lower())
    if key is None:
        raise ValueError(f"budget unit {unit!r}: expected one of flops, gpu-hours, usd")
    budget = float(budget)
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive finite number, got {budget}")
    if key == "flops":
        return budget
    if key == "usd":
        if usd_per_hour is None or not usd_per_hour > 0:
            raise ValueError("a budget in usd needs usd_per_hour (the price of one GPU-hour, > 0)")
        budget = budget / float(usd_per_hour)
    missing = [name for name, v in (("peak_flops", peak_flops), ("mfu", mfu)) if v is None]
    if missing:
        raise ValueError(f"a budget in {key} needs {' and '.join(missing)} (peak FLOP/s of one GPU and the "
                         "measured utilisation) to convert GPU-hours to FLOPs")
    if not peak_flops > 0 or not 0 < mfu <= 1:  # type: ignore[operator]
        raise ValueError(f"peak_flops must be > 0 and mfu in (0, 1], got {peak_flops}, {mfu}")
    return budget * 3600.0 * float(peak_flops) * float(mfu)  # type: ignore[arg-type]
