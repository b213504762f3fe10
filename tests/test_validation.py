"""Property-based tests of sdviz.validation: every check accepts exactly its documented range, returns the
value normalised, and refuses the rest with a UsageError (never another exception)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdviz.validation import (
    MAX_SEED,
    MAX_SIDE,
    UsageError,
    UsageTypeError,
    check_device_name,
    check_float,
    check_guidance,
    check_int,
    check_names,
    check_prompt,
    check_seed,
    check_size,
    check_strength,
    min_strength,
    one_line,
    steps_for_strength,
)

FEW = settings(max_examples=50, deadline=None)
ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5),
                     st.lists(st.integers(), max_size=3), st.binary(max_size=3))  # fmt: skip


@FEW
@given(st.integers(-(2**70), 2**70), st.integers(-100, 100), st.integers(-100, 100))
def test_check_int_accepts_exactly_its_range(value, low, high):
    if low <= value <= high:
        assert check_int("n", value, low=low, high=high) == value
    else:
        with pytest.raises(UsageError, match=rf"n must be an int in \[{low}, {high}\], got {value}"):
            check_int("n", value, low=low, high=high)


@FEW
@given(ANYTHING)
def test_check_int_refuses_what_is_not_an_int_with_a_type_error(value):
    if isinstance(value, int) and not isinstance(value, bool):
        assert check_int("n", value) == value
    else:
        with pytest.raises(UsageTypeError) as e:
            check_int("n", value)
        assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)


@FEW
@given(st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.booleans())
def test_check_float_refuses_nan_infinity_and_out_of_range(value, low_open, high_open):
    inside = (
        math.isfinite(value)
        and (0 < value if low_open else 0 <= value)
        and (value < 1 if high_open else value <= 1)
    )
    if inside:
        assert check_float("x", value, low=0.0, high=1.0, low_open=low_open, high_open=high_open) == value
    else:
        with pytest.raises(UsageError, match="x must be"):
            check_float("x", value, low=0.0, high=1.0, low_open=low_open, high_open=high_open)


@FEW
@given(ANYTHING)
def test_guidance_is_a_finite_number_at_least_zero(value):
    ok = (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )
    if ok:
        assert check_guidance(value) == float(value)
    else:
        with pytest.raises(UsageError, match="guidance_scale must be"):
            check_guidance(value)


@FEW
@given(st.one_of(st.none(), st.integers(-(2**70), 2**70)))
def test_seeds_are_none_or_within_torch_range(seed):
    if seed is None or 0 <= seed <= MAX_SEED:
        assert check_seed(seed) == seed
    else:
        with pytest.raises(UsageError, match="seed must be an int in"):
            check_seed(seed)


@FEW
@given(st.one_of(st.none(), st.integers(-100, 5000)), st.one_of(st.none(), st.integers(-100, 5000)),
       st.sampled_from([8, 16]))  # fmt: skip
def test_sizes_are_multiples_of_the_factor_and_a_lone_side_keeps_the_default(height, width, factor):
    def ok(v):
        return v is None or (factor <= v <= MAX_SIDE and v % factor == 0)

    if ok(height) and ok(width):
        h, w, note = check_size(height, width, factor=factor, default=(64, 48))
        assert (h, w) == (64 if height is None else height, 48 if width is None else width)
        assert (note is not None) == ((height is None) != (width is None))
        assert h % factor == 0 and w % factor == 0
    else:
        with pytest.raises(
            UsageError, match=rf"(height|width) must be .*(multiple of {factor}|\[{factor}, 4096\])"
        ):
            check_size(height, width, factor=factor, default=(64, 48))


@FEW
@given(st.integers(1, 1000))
def test_min_strength_is_the_least_that_runs_one_step(steps):
    s = min_strength(steps)
    assert steps_for_strength(steps, s) == 1
    assert steps_for_strength(steps, math.nextafter(s, 0.0)) == 0
    assert check_strength(s, steps) == s


@FEW
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(1, 1000))
def test_strength_leaves_a_step_or_is_refused(strength, steps):
    if math.isfinite(strength) and 0 < strength <= 1 and steps_for_strength(steps, strength) >= 1:
        assert check_strength(strength, steps) == strength
    else:
        with pytest.raises(UsageError, match="strength"):
            check_strength(strength, steps)


@FEW
@given(st.one_of(st.text(max_size=8), st.lists(st.text(max_size=4), max_size=3), ANYTHING))
def test_prompts_are_a_string_or_a_non_empty_list_of_strings(prompt):
    ok = isinstance(prompt, str) or (
        isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt)
    )
    if ok:
        assert check_prompt(prompt) == prompt
    else:
        with pytest.raises(UsageError, match="prompt must be a string or a non-empty list"):
            check_prompt(prompt)


@FEW
@given(
    st.one_of(st.text(max_size=4), st.lists(st.sampled_from(["x0", "latents", "x1", "noise"]), max_size=3))
)
def test_names_are_a_list_from_the_choices(value):
    choices = {"x0", "latents"}
    if isinstance(value, list) and set(value) <= choices:
        assert check_names("keep", value, choices) == value
    else:
        with pytest.raises(UsageError, match="keep"):
            check_names("keep", value, choices)


@FEW
@given(st.text(max_size=8))
def test_device_names_are_spelt_as_torch_spells_them(name):
    kind, _, index = name.partition(":")
    if name == "auto" or (kind in ("cpu", "cuda", "mps", "xpu") and (not index or index.isdigit())):
        assert check_device_name(name) == name
    else:
        with pytest.raises(UsageError, match="device"):
            check_device_name(name)


@FEW
@given(st.text())
def test_one_line_has_no_newline(text):
    assert "\n" not in one_line(UsageError(text)) and one_line(UsageError(text))
