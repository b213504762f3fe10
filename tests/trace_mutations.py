"""Damaged copies of a trace file, as hypothesis strategies, and what `Trace.load` made of one.

Shared by tests/test_trace_fuzz.py and benchmarks/bench_trace_fuzz.py. Three kinds of damage: byte flips
anywhere, byte flips in the tensor data, truncations, and edits of the JSON metadata or of the tensor entries with the checksum made to
match (or dropped, as in files saved before sdviz wrote one), so that the structural check is what is tested.
"""

from __future__ import annotations

import json
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import strategies as st

from sdviz.trace import Trace

try:
    from sdviz.trace_file import CHECKSUM_KEY, _checksum
except ImportError:  # an sdviz from before the checksum, fuzzed for comparison
    CHECKSUM_KEY, _checksum = "sdviz_sha256", None

DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "X"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def flipped(draw, data: bytes) -> bytes:
    """Flip 1 to 4 bytes anywhere in the file."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
    return bytes(out)


@st.composite
def data_flipped(draw, data: bytes) -> bytes:
    """Flip 1 to 4 bytes of the tensor data (after the header), where the file still parses."""
    start, out = 8 + int.from_bytes(data[:8], "little"), bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        out[draw(st.integers(start, len(out) - 1))] ^= draw(st.integers(1, 255))
    return bytes(out)


@st.composite
def truncated(draw, data: bytes) -> bytes:
    """Cut the file short anywhere."""
    return data[: draw(st.integers(0, len(data) - 1))]


def _paths(value, prefix=()):
    """Every path into a JSON value, the root included."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def json_edit(draw, value):
    """Return a deep copy of `value` with one node deleted, replaced, or given a new key."""
    value = json.loads(json.dumps(value))
    path = draw(st.sampled_from(sorted(_paths(value), key=repr)))
    if not path:
        return draw(json_values)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["delete", "replace", "add"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "replace" or not isinstance(parent, dict):
        parent[path[-1]] = draw(json_values)
    else:
        parent[draw(st.text(max_size=8))] = draw(json_values)
    return value


@st.composite
def edited(draw, data: bytes) -> bytes:
    """Edit the sdviz metadata or a tensor entry of the header; recompute the checksum, or drop it."""
    header, body = _split(data)
    if draw(st.booleans()):
        meta = json.loads(header["__metadata__"]["sdviz"])
        header["__metadata__"]["sdviz"] = json.dumps(draw(json_edit(meta)))
    else:
        name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
        entry = header[name]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        if field == "dtype":
            entry["dtype"] = draw(st.sampled_from(DTYPES))
        else:
            entry[field] = draw(st.lists(st.integers(-2, 5000), max_size=5))
    if draw(st.booleans()) and _checksum is not None:
        header["__metadata__"][CHECKSUM_KEY] = _checksum(header, body)
    else:
        header["__metadata__"].pop(CHECKSUM_KEY, None)
    return _join(header, body)


def _split(blob: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data


KINDS = {"byte flips": flipped, "tensor-data flips": data_flipped, "truncations": truncated,
         "metadata edits": edited}  # fmt: skip


class Hang(Exception):
    """An example ran past its deadline."""


@contextmanager
def deadline(seconds: float):
    """Raise `Hang` in the block after `seconds` (SIGALRM: Unix, main thread)."""

    def ring(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(data: bytes, original: Trace, folder: Path, seconds: float = 5.0) -> str:
    """Load `data` as a trace file and say what happened: "loaded ...", "ValueError: <why>" or another error."""
    path = folder / "damaged.sdviz"
    path.write_bytes(data)
    try:
        with deadline(seconds):
            trace = Trace.load(path)
            repr(trace), trace.num_inference_steps  # noqa: B018 - a loaded trace must be usable
            with tempfile.TemporaryDirectory(dir=folder) as d:
                Trace.load(trace.save(Path(d) / "again.sdviz"))
    except ValueError as e:
        return f"ValueError: {_why(str(e))}"
    except FileNotFoundError:
        return "FileNotFoundError"
    except Hang:
        return "HANG"
    except Exception as e:  # noqa: BLE001 - what the fuzz looks for
        return f"UNEXPECTED {type(e).__name__}: {str(e)[:120]}"
    return "loaded, equal to the original" if trace == original else "loaded, different"


def _why(message: str) -> str:
    for key, label in [("checksum", "checksum mismatch"), ("not a readable", "unreadable (safetensors)"),
                       ("metadata is corrupted", "structural check"),
                       ("not valid JSON", "metadata not JSON"), ("not an sdviz trace", "not a trace"),
                       ("upgrade", "newer format")]:  # fmt: skip
        if key in message:
            return label
    return message[:80]
