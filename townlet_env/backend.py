"""The few array operations whose spelling differs between numpy and torch.

The world's step is written once against this small surface: the vector env runs it on
torch tensors (any device, thousands of towns), the single env on numpy arrays (one town,
where numpy's per-call overhead is several times lower than torch's).
"""

from __future__ import annotations

import numpy as np
import torch


class NumpyOps:
    name = "numpy"
    xp = np
    float32, float64, int64, int8, bool = np.float32, np.float64, np.int64, np.int8, np.bool_

    def asarray(self, x, dtype):
        return np.asarray(x, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def lookup(self, table, idx):
        """Rows of `table` at `idx` (any shape): table[idx]."""
        return table[idx]

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype=dtype)

    def arange(self, n):
        return np.arange(n, dtype=np.int64)

    def take(self, a, idx):
        """Row-wise gather: out[i, j] = a[i, idx[i, j]] (plain fancy indexing: cheaper
        than take_along_axis for the one-town case)."""
        return a[np.arange(a.shape[0])[:, None], idx]

    def none(self, flags) -> bool:
        """True when no flag is set: lets the one-town numpy path skip no-op work. (The
        torch backend always answers False, so it never reads values on the host.)"""
        return not flags.any()

    def rows_where(self, flags):
        """Indices of the set flags when computing for those rows alone pays, else None.
        One town (the single env) never needs it: None."""
        return None

    def columns(self, a, idx):
        return a[:, idx]

    def clip(self, a, lo, hi):
        a = np.maximum(a, lo)
        return a if hi is None else np.minimum(a, hi)

    def put(self, a, idx, values):
        """Row-wise scatter in place: a[i, idx[i, j]] = values[i, j]."""
        np.put_along_axis(a, idx, values, axis=1)
        return a

    def argsort(self, a):
        return np.argsort(a, axis=1, kind="stable")

    def copy(self, a):
        return a.copy()

    def cast(self, a, dtype):
        return a.astype(dtype)

    def to_numpy(self, a):
        return a


class TorchOps:
    name = "torch"
    xp = torch
    float32, float64, int64, int8, bool = torch.float32, torch.float64, torch.int64, torch.int8, torch.bool

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        # Whether `none` may read a flag back to skip no-op work: free on the CPU, a host
        # sync on a GPU. Tests switch it off to run the GPU branch on the CPU.
        self.read_flags = self.device.type == "cpu"
        # Fewer towns than this: a step costs its number of operations, not its rows, so
        # `rows_where` (an index plus a gather and a scatter) would only add work.
        self.subset_min_rows = 2048

    def asarray(self, x, dtype):
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=dtype,
                               device=self.device)

    def zeros(self, shape, dtype):
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def empty(self, shape, dtype):
        return torch.empty(shape, dtype=dtype, device=self.device)

    def lookup(self, table, idx):
        """Rows of `table` at `idx` (any shape); index_select is far faster than
        advanced indexing on the CPU."""
        out = torch.index_select(table, 0, idx.reshape(-1))
        return out.reshape(idx.shape + table.shape[1:])

    def full(self, shape, value, dtype):
        return torch.full(shape, value, dtype=dtype, device=self.device)

    def arange(self, n):
        return torch.arange(n, dtype=torch.int64, device=self.device)

    def take(self, a, idx):
        return torch.gather(a, 1, idx)

    def none(self, flags) -> bool:
        """On the CPU reading a flag costs nothing, so skip no-op work as numpy does; on a
        GPU always answer False so the step never waits for the device."""
        return self.read_flags and not bool(flags.any())

    def rows_where(self, flags):
        """Indices of the set flags, when reading them is free (the CPU) and the batch is
        large; else None: on a GPU callers compute every row and select with `where`,
        without waiting for the device."""
        if self.read_flags and flags.shape[0] >= self.subset_min_rows:
            return torch.nonzero(flags).flatten()
        return None

    def columns(self, a, idx):
        return torch.index_select(a, 1, idx)

    def clip(self, a, lo, hi):
        return a.clamp(lo, hi)

    def put(self, a, idx, values):
        return a.scatter_(1, idx, values)

    def argsort(self, a):
        return torch.argsort(a, dim=1, stable=True)

    def copy(self, a):
        return a.clone()

    def cast(self, a, dtype):
        return a.to(dtype)

    def to_numpy(self, a):
        return a.detach().cpu().numpy()

    def from_numpy(self, a):
        """A CPU tensor sharing the memory of numpy array `a`."""
        return torch.from_numpy(a)
