"""How the command-line tools report a user's mistake: one clear line, exit status 2, no
traceback (set HYDRA_FULL_ERROR=1 to get one)."""

from __future__ import annotations

import os
import sys


def user_error(e: BaseException):
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise e
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2)
