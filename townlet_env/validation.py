"""Checks on what users pass in (actions, difficulty multipliers), with clear messages.

They run before anything touches the state, so a rejected call leaves the env as it was.
"""

from __future__ import annotations

import numpy as np
import torch

from .schema import ACTIONS, NUM_ACTIONS

_ACTION_HELP = ", ".join(f"{i}={a}" for i, a in enumerate(ACTIONS))


def _as_array(x, what: str):
    if torch.is_tensor(x):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{what} could not be read as an array: {e}") from None


def check_actions(actions, n: int, device=None):
    """Return actions as an int64 [n] torch tensor on `device` (numpy if device is None).

    Raises ValueError for a wrong shape, a non-integer dtype or an index outside 0..5.
    """
    a = _as_array(actions, "actions")
    shape = tuple(a.shape)
    if shape != (n,):
        raise ValueError(f"actions must have shape ({n},), one per town; got shape {shape}")
    is_int = (not a.dtype.is_floating_point and not a.dtype.is_complex and a.dtype != torch.bool) \
        if torch.is_tensor(a) else np.issubdtype(a.dtype, np.integer)
    if not is_int:
        raise ValueError(f"actions must be integers ({_ACTION_HELP}); got dtype {a.dtype}")
    if torch.is_tensor(a):
        a = a.to(device=device, dtype=torch.int64)
        bad = (a < 0) | (a >= NUM_ACTIONS)
        if bool(bad.any()):
            raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1} ({_ACTION_HELP}); "
                             f"got {a[bad][:5].tolist()} at towns {bad.nonzero()[:5, 0].tolist()}")
        return a
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= NUM_ACTIONS)
    if bad.any():
        raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1} ({_ACTION_HELP}); "
                         f"got {a[bad][:5].tolist()} at towns {np.flatnonzero(bad)[:5].tolist()}")
    return a if device is None else torch.from_numpy(a).to(device)


def check_multipliers(multipliers, n: int, device=None):
    """Return difficulty multipliers as float32 [n] (torch on `device`, else numpy)."""
    m = _as_array(multipliers, "multipliers")
    m = m.detach().cpu().numpy() if torch.is_tensor(m) else m
    if m.shape == () and n == 1:
        m = m.reshape(1)
    if tuple(m.shape) != (n,):
        raise ValueError(f"multipliers must have shape ({n},), one per town; got {tuple(m.shape)}")
    if not np.issubdtype(m.dtype, np.number) or np.issubdtype(m.dtype, np.complexfloating):
        raise ValueError(f"multipliers must be numbers; got dtype {m.dtype}")
    m = m.astype(np.float32)
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("multipliers must be finite and >= 0")
    return m if device is None else torch.from_numpy(m).to(device)
