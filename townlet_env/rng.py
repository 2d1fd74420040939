"""Counter-based randomness: every draw is a hash of (town seed, episode, stream, index).

A town's resets depend only on its own seed and episode count, never on how many towns
are batched with it, so a native vector env of N towns seeded s and N single envs seeded
s, s+1, ... produce the same episodes. It also needs no generator state to checkpoint.
"""

from __future__ import annotations

_M32 = 0xFFFFFFFF

# Streams: independent draws for each purpose.
SPAWN, HOUR, LAYOUT, TOWN, START = 1, 2, 3, 4, 5

# Layout pools (schema.LAYOUT_POOLS) set the top bit of a layout's 32-bit key. Training
# draws from one half of the key space and evaluation from the other, so a held-out town's
# layout comes from a key that training can never use (docs/training.md, "Held-out
# towns"). "any" keeps the key as hashed.
POOL_BIT = {"train": 0, "held_out": 1}


def pcg_hash(x):
    """PCG-RXS-M-XS 32-bit hash on int64 arrays (numpy or torch); products stay < 2**63."""
    state = (x * 747796405 + 2891336453) & _M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & _M32
    return (word >> 22) ^ word


def keys(seed, episode, stream: int):
    """One 32-bit key per town for (seed, episode, stream); inputs are int64 arrays [N]."""
    h = pcg_hash(seed & _M32)
    h = pcg_hash(h ^ ((seed >> 32) & _M32))
    h = pcg_hash(h ^ (episode & _M32))
    return pcg_hash(h ^ stream)


def uniform(ops, seed, episode, stream: int, count: int, pool: str = "any"):
    """[N, count] float64 uniform draws in [0, 1) for each town, keyed from `pool`'s half
    of the key space."""
    k = keys(seed, episode, stream)[:, None]
    if pool in POOL_BIT:
        k = (k & 0x7FFFFFFF) | (POOL_BIT[pool] << 31)
    bits = pcg_hash(k ^ pcg_hash(ops.arange(count)[None, :] + 0x9E3779B9))
    return ops.cast(bits, ops.float64) / 4294967296.0
