"""Shared output for the CLI and reports: aligned tables, CSV/JSON, and atomic file writes.

Every file pyioso writes goes through `atomic_write`: a temp file beside the target, renamed
into place, so an interrupted run never leaves a half-written artifact.
"""

import csv
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

from golden.errors import PyiosoError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call write(file) on a temp file beside path, then rename it to path (mode 0644)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pyioso-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    """A Markdown table; the first `left` columns left-aligned, the others right-aligned."""
    rule = ["---" if i < left else "---:" for i in range(len(headers))]
    lines = [headers, rule, *[[str(c) for c in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def write_json(path: str, document: object) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(document, indent=2) + "\n").encode()))


def fmt_int(value: int) -> str:
    return f"{value:,}"


def giga(ops: int) -> str:
    return f"{ops / 1e9:.3f}"


def percent(ratio: float) -> str:
    return f"{100 * ratio:.2f}%"


def pair(values: tuple[int, int]) -> str:
    return f"{values[0]}x{values[1]}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 0) -> str:
    """Aligned text table; the first ``left`` columns are left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def print_csv(records: Sequence[dict]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2))


def check_png_path(path: str) -> None:
    """Reject a bad --plot target before any work is done."""
    if not path.lower().endswith(".png"):
        raise PyiosoError(f"--plot writes a PNG image; give a file name ending in .png, not {path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PyiosoError(f"cannot write {path!r}: directory {directory!r} does not exist; create it first")


def save_png(figure: "Figure", path: str) -> None:
    """Render a matplotlib figure with Agg (no display needed) and write it atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    atomic_write(path, lambda f: FigureCanvasAgg(figure).print_png(f))
