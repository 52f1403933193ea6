"""What limits the MVPN data plane: py-spy on every lab daemon during an iperf3 transfer.

py-spy (pinned in requirements.txt) samples each ``twistd`` process of the lab from outside
(``--nonblocking``: it never stops the process, so the transfer runs at nearly full speed)
while iperf3 pushes one TCP stream from the CN to the MN. For each role it reports how busy
the process was (samples with Python on the CPU / samples taken) and the functions with the
most samples: by own time (the leaf frame: where the CPU actually goes) and, among mvpn's own
functions, by inclusive time (which of our code paths it is under).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

RATE_HZ = 250
TOP = 8
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``function (file.py)``: the line number splits one
    function's samples into many rows."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    where = "mvpn/" + path.rsplit("/mvpn/", 1)[1] if "/mvpn/" in path else path.rsplit("/", 1)[-1]
    return f"{match['function']} ({where})"


def summarize(raw: str, seconds: float, rate: int = RATE_HZ) -> dict[str, object]:
    """Digest py-spy's raw (collapsed stacks) output: busy fraction, top own-time functions,
    top mvpn functions by inclusive time (each as ``[name, percent of busy samples]``)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if "(mvpn/" in name:
                inclusive[name] += count
    if total == 0:
        return {"busy": 0.0, "samples": 0, "own": [], "mvpn_inclusive": []}
    return {
        "busy": total / (seconds * rate),
        "samples": total,
        "own": [[name, 100.0 * n / total] for name, n in own.most_common(TOP)],
        "mvpn_inclusive": [[name, 100.0 * n / total] for name, n in inclusive.most_common(TOP)],
    }


def profile_during(
    pids: dict[str, int],
    seconds: float,
    workdir: Path,
    load: Callable[[], object],
) -> dict[str, object]:
    """Run py-spy on each of ``pids`` (role -> pid) for ``seconds`` while ``load()`` runs."""
    spy = shutil.which("py-spy") or str(
        Path(__file__).resolve().parent.parent / ".venv/bin/py-spy"
    )
    workdir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for role, pid in pids.items():
        out = workdir / f"{role}.txt"
        argv = [spy, "record", "--pid", str(pid), "--duration", f"{seconds:g}"]
        argv += ["--rate", str(RATE_HZ), "--format", "raw", "--nonblocking", "--full-filenames"]
        argv += ["--output", str(out)]
        procs[role] = (
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
            out,
        )
    load()
    result: dict[str, object] = {}
    for role, (proc, out) in procs.items():
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0 or not out.exists():
            result[role] = {"error": err.decode(errors="replace").strip()[-300:]}
            continue
        result[role] = summarize(out.read_text(), seconds)
    return result
