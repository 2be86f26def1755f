"""Where an unexpected exception goes: a log file in the state dir, so the terminal shows one line, never a traceback
(as pre-commit's error handler does)."""

from __future__ import annotations

import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from runner import __version__
from runner.safe_write import write_text


def write(state_dir: Path, exc: BaseException) -> Path:
    """Write the traceback to `<state dir>/logs/crash-<time>.log` (a temporary directory when that fails)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    text = f"runbook runner {__version__}\n" + "".join(traceback.format_exception(exc))
    for folder in (state_dir / "logs", Path(tempfile.gettempdir())):
        path = folder / f"runbook-crash-{stamp}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_text(path, text, mode=0o600)
        except OSError:
            continue
        return path
    return Path("(nowhere: neither the state dir nor the temporary directory is writable)")
