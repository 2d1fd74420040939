"""Checkpoint file format: versioned, written atomically, loaded without unpickling code.

A checkpoint is one ``torch.save`` file holding a dict of plain data (tensors, numbers,
strings, None, lists, tuples, dicts), so it loads with ``torch.load(weights_only=True)``,
which never imports or calls anything named in the file.

Format version 3 (``CURRENT_VERSION``), top-level keys:

    version      int, 3
    online       online Q-network state_dict
    target       target Q-network state_dict
    optimizer    optimiser state_dict
    counters     env steps, updates, episodes ... (numbers)
    rng          ``rng_state()``: Python, NumPy, torch CPU (and CUDA) generators
    exploration  epsilon / RND / intrinsic-annealer state
    curriculum   ``Curriculum.state_dict()``
    layout       the observation layout as plain data
    config       the resolved run config as a plain dict
    world_identity  the world trained on: ``fingerprint`` (SHA-256), ``pack`` (its name)
                 and ``summary`` (every world number by dotted key, the observation
                 layout); see world_identity.py. None in files migrated from version 2,
                 which predate it (evaluate and resume then warn that they cannot check)
    replay       (optional) the replay buffer's state
    averaged     (optional) the averaged online weights (``agent.average_decay`` > 0);
                 ``evaluate`` acts with them when present

Version 2 had no ``world_identity``. Version 1 (legacy) had version 2's content with no
``version`` key and the online network under ``network``. Older files are upgraded on load by ``MIGRATIONS``, a chain of small
functions each taking version ``v`` to ``v + 1``; files from a newer Townlet, and files
that are not Townlet checkpoints at all, are refused with a ``CheckpointError`` that names
the file and the problem.
"""

from __future__ import annotations

import collections
import os
import random
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

CURRENT_VERSION = 3
#: Suffix of the temporary file a checkpoint is written to before its rename.
TEMP_SUFFIX = ".tmp"

#: Keys every version-3 checkpoint must have, and the ones it may have.
REQUIRED_KEYS = frozenset(
    {"version", "online", "target", "optimizer", "counters", "rng", "exploration", "curriculum", "layout", "config",
     "world_identity"}
)
OPTIONAL_KEYS = frozenset({"replay", "world", "averaged"})

#: Version 2: no ``world_identity``.
V2_REQUIRED_KEYS = frozenset(REQUIRED_KEYS - {"world_identity"})
#: Version 1: no ``version`` key, online network under ``network``.
V1_REQUIRED_KEYS = frozenset(V2_REQUIRED_KEYS - {"version", "online"} | {"network"})


PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def resolve_checkpoint(spec: str) -> Path:
    """A checkpoint path, or `pretrained:NAME` for one shipped inside the package
    (townlet_agents/pretrained/NAME.pt)."""
    if not str(spec).startswith("pretrained:"):
        return Path(spec)
    name = str(spec).split(":", 1)[1]
    shipped = sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))
    if name not in shipped:
        have = ", ".join(shipped) if shipped else "none ship with this Townlet"
        raise CheckpointError(f"checkpoint: no pretrained checkpoint named {name!r} (available: {have}); "
                              "pass checkpoint=PATH")
    return PRETRAINED_DIR / f"{name}.pt"


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: the message names the file and the reason."""


# --------------------------------------------------------------------------- migrations
def migrate_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: the online network moves from ``network`` to ``online``; add ``version``."""
    migrated = {key: value for key, value in payload.items() if key != "network"}
    migrated["online"] = payload["network"]
    migrated["version"] = 2
    return migrated


def migrate_v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: the world it was trained on is unknown (``world_identity`` None)."""
    return {**payload, "world_identity": None, "version": 3}


#: ``MIGRATIONS[v]`` turns a version-``v`` payload into a version-``v + 1`` payload.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: migrate_v1_to_v2, 2: migrate_v2_to_v3}

_REQUIRED_BY_VERSION = {1: V1_REQUIRED_KEYS, 2: V2_REQUIRED_KEYS, 3: REQUIRED_KEYS}


# ------------------------------------------------------------------------------ saving
def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus ``version``) to ``path`` atomically; return the path.

    The payload must have every required version-3 key (``version`` is added) and hold only
    plain data; anything else raises ``CheckpointError`` before a byte is written, so a
    checkpoint that cannot be loaded back is never produced. The file is written to a
    temporary file in the same directory, flushed and fsynced, then renamed over ``path``:
    a crash at any point leaves either the old file or the new one, never a partial one.
    """
    path = Path(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: checkpoint payload must be a dict, got {type(payload).__name__}")
    if "version" in payload and payload["version"] != CURRENT_VERSION:
        raise CheckpointError(
            f"{path}: payload says version {payload['version']!r}, but this Townlet writes version {CURRENT_VERSION}"
        )
    payload = {**payload, "version": CURRENT_VERSION}
    _check_keys(path, payload, CURRENT_VERSION)
    for key, value in payload.items():
        _check_plain(path, value, f"[{key!r}]")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot write checkpoint: {_os_reason(err)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as err:
        # The reason first: a full disk has space again once the temporary file is gone.
        disk = isinstance(err, OSError) or _is_disk_error(err)
        reason = _os_reason(err, path.parent) if disk else ""
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if disk:
            raise CheckpointError(f"{path}: cannot write checkpoint: {reason} "
                                  "(the previous checkpoint is unchanged)") from None
        raise
    _fsync_directory(path.parent)
    return path


def _is_disk_error(err: BaseException) -> bool:
    """torch.save reports a failed write as a RuntimeError from its zip writer."""
    return isinstance(err, RuntimeError) and ("file write failed" in str(err) or "unexpected pos" in str(err))


def _os_reason(err: BaseException, folder: Path | None = None) -> str:
    """The cause in words: the OS's (``No space left on device``), or for torch's zip
    writer, which loses the errno, a full disk when the folder has no space left."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    if folder is not None:
        try:
            if shutil.disk_usage(folder).free < 1 << 20:
                return "No space left on device"
        except OSError:
            pass
    text = str(err).strip().splitlines()
    return f"write failed ({text[0] if text else type(err).__name__})"


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); harmless no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_PLAIN_LEAVES = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size)
_PLAIN_CONTAINERS = (list, tuple, set, frozenset)


def _check_plain(path: Path, value: Any, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` would not load back."""
    kind = type(value)
    if isinstance(value, torch.Tensor) or kind in _PLAIN_LEAVES:
        return
    if kind in _PLAIN_CONTAINERS:
        for i, item in enumerate(value):
            _check_plain(path, item, f"{where}[{i}]")
        return
    if kind in (dict, collections.OrderedDict):
        for key, item in value.items():
            if type(key) not in _PLAIN_LEAVES:
                raise CheckpointError(
                    f"{path}: payload{where} has a key of type {type(key).__name__}; keys must be plain numbers or strings"
                )
            _check_plain(path, item, f"{where}[{key!r}]")
        return
    raise CheckpointError(
        f"{path}: payload{where} is a {kind.__module__}.{kind.__qualname__}; a checkpoint holds only tensors, "
        "numbers, strings, None, lists, tuples and dicts (convert it, e.g. float(x), x.tolist(), "
        "dataclasses.asdict(x), OmegaConf.to_container(cfg))"
    )


# ----------------------------------------------------------------------------- loading
def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely and return it as a current-version (3) payload.

    Never unpickles code (``weights_only=True``). Older versions are migrated; newer
    versions, foreign files, garbage and truncated files raise ``CheckpointError``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: cannot read checkpoint: not a complete torch checkpoint archive "
            "(the file is truncated, corrupt, or not a checkpoint at all)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # every failure mode of a bad file lands here
        raise CheckpointError(f"{path}: cannot read checkpoint: {_explain_load_error(err)}") from err

    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a Townlet checkpoint (it holds a {type(payload).__name__}, not a dict)")
    version = payload.get("version", 1)
    if type(version) is not int:
        raise CheckpointError(f"{path}: checkpoint version must be an integer, got {version!r}")
    if version > CURRENT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} was written by a newer Townlet; this Townlet "
            f"reads versions 1 to {CURRENT_VERSION}. Upgrade Townlet to load it."
        )
    if version < 1:
        raise CheckpointError(f"{path}: invalid checkpoint version {version}; versions start at 1")
    _check_keys(path, payload, version)

    while version < CURRENT_VERSION:
        payload = MIGRATIONS[version](payload)
        if payload.get("version") != version + 1:
            raise CheckpointError(f"{path}: migration from version {version} did not produce version {version + 1}")
        version += 1
        _check_keys(path, payload, version)
    return payload


def _check_keys(path: Path, payload: dict[str, Any], version: int) -> None:
    required = _REQUIRED_BY_VERSION[version]
    missing = sorted(required - payload.keys())
    unknown = sorted(str(k) for k in payload.keys() - required - OPTIONAL_KEYS)
    if not missing and not unknown:
        return
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unknown:
        problems.append(f"unknown keys {unknown}")
    label = "a Townlet checkpoint" if "version" in payload else "a Townlet checkpoint (no 'version' key: read as version 1)"
    raise CheckpointError(f"{path}: not {label} of version {version}: {'; '.join(problems)}")


def _explain_load_error(err: Exception) -> str:
    text = str(err)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (
            f"it contains Python code or objects ({refused.group(1)}) that a checkpoint must not hold; "
            "refused without running it"
        )
    if "Weights only load failed" in text:
        match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        detail = match.group(1).strip() if match else "unsupported content"
        return f"not a plain-data checkpoint ({detail[:200]}); refused without running it"
    if isinstance(err, EOFError):
        return "file ended early (truncated)"
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"file is corrupt or truncated ({type(err).__name__}: {first[:200]})"


# ---------------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """Capture the Python, NumPy-global, torch CPU and (if present) CUDA generators as plain data."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators captured by ``rng_state()`` (tensors may sit on any device).

    CUDA states are restored for as many devices as both the checkpoint and this machine
    have; a CPU-only machine ignores them.
    """
    missing = {"python", "numpy", "torch"} - state.keys()
    if missing:
        raise CheckpointError(f"RNG state is missing {sorted(missing)}")
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].cpu().numpy().astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for device, cuda_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu().to(torch.uint8), device)


__all__ = [
    "CURRENT_VERSION",
    "MIGRATIONS",
    "OPTIONAL_KEYS",
    "REQUIRED_KEYS",
    "V1_REQUIRED_KEYS",
    "V2_REQUIRED_KEYS",
    "CheckpointError",
    "load_checkpoint",
    "migrate_v1_to_v2",
    "migrate_v2_to_v3",
    "rng_state",
    "save_checkpoint",
]
