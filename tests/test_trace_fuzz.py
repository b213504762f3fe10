"""Property tests of `Trace.load` on damaged copies of a real trace file: a ValueError (or FileNotFoundError),
never another exception, never a hang, and never a silently different trace from a flipped or cut byte.

`benchmarks/bench_trace_fuzz.py` runs the same strategies over thousands of examples and counts the outcomes.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trace_mutations import KINDS, outcome

import sdviz
from sdviz.trace import Trace

FUZZ = settings(max_examples=50, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module")
def original(embedded_pipe_session, tmp_path_factory):
    """A real 2-step trace, with tokens, attention maps and a negative prompt, and its file's bytes."""
    trace = sdviz.generate(embedded_pipe_session, "a red letter A on a blue background", steps=2, seed=0,
                           negative_prompt="green", attention=True)  # fmt: skip
    path = trace.save(tmp_path_factory.mktemp("fuzz") / "run.sdviz")
    return Trace.load(path), path.read_bytes()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_damage_is_a_value_error_or_harmless(original, tmp_path, kind):
    trace, data = original

    @FUZZ
    @given(st.data())
    def check(draw):
        result = outcome(draw.draw(KINDS[kind](data)), trace, tmp_path)
        assert result.startswith(("ValueError", "FileNotFoundError", "loaded")), result
        # a flipped or cut byte is caught: the checksum covers every byte that counts
        if kind != "metadata edits":
            assert result != "loaded, different", result

    check()


def test_the_undamaged_file_loads_equal(original, tmp_path):
    trace, data = original
    assert outcome(data, trace, tmp_path) == "loaded, equal to the original"
