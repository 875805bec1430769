"""spamd/speed.py: answer times compared at the same load, and the cool-down's back-off."""

from __future__ import annotations

import pytest

from spambridge.spamd.speed import FRESH, MAX_LEVEL, Backoff, LoadTable, load_level, reference


@pytest.mark.parametrize(
    ("in_flight", "weight", "level"),
    [(1, 1, 1), (2, 1, 2), (1, 4, 1), (4, 4, 1), (5, 4, 2), (8, 2, 4), (0, 1, 1), (999, 1, 64)],
)
def test_spamd_speed_load_level_is_scans_per_unit_of_weight(
    in_flight: int, weight: int, level: int
) -> None:
    assert load_level(in_flight, weight) == level
    assert 1 <= level <= MAX_LEVEL


def test_spamd_speed_estimate_at_the_level_itself() -> None:
    table = LoadTable()
    table.add(3, 0.3, now=0.0)
    table.add(1, 0.1, now=0.0)
    assert table.estimate(3, now=1.0) == pytest.approx(0.3)
    assert table.estimate(1, now=1.0) == pytest.approx(0.1)


def test_spamd_speed_estimate_is_a_running_average() -> None:
    table = LoadTable()
    table.add(1, 0.1, now=0.0)
    table.add(1, 0.2, now=0.0)
    assert table.estimate(1, now=0.0) == pytest.approx(0.1 + 0.3 * 0.1)


def test_spamd_speed_estimate_scales_up_from_the_nearest_lower_level() -> None:
    """10 scans ahead take at most 10/2 times what 2 do: an upper bound, so lenient."""
    table = LoadTable()
    table.add(1, 0.02, now=0.0)
    table.add(2, 0.03, now=0.0)
    assert table.estimate(10, now=0.0) == pytest.approx(0.03 * 10 / 2)


def test_spamd_speed_estimate_takes_a_higher_level_as_it_stands() -> None:
    table = LoadTable()
    table.add(8, 0.4, now=0.0)
    table.add(5, 0.3, now=0.0)
    assert table.estimate(1, now=0.0) == pytest.approx(0.3)


def test_spamd_speed_estimate_is_the_least_upper_bound() -> None:
    """A slow first answer at level 1 (a cold start) is bounded by a faster one at 10."""
    table = LoadTable()
    table.add(1, 0.18, now=0.0)
    table.add(10, 0.1, now=0.0)
    assert table.estimate(1, now=0.0) == pytest.approx(0.1)
    assert table.estimate(20, now=0.0) == pytest.approx(0.2)


def test_spamd_speed_estimate_ignores_stale_levels() -> None:
    table = LoadTable()
    table.add(1, 0.02, now=0.0)  # the pool was idle once, long ago
    table.add(10, 0.5, now=FRESH)
    assert table.estimate(1, now=FRESH + 1) == pytest.approx(0.5)
    assert table.estimate(1, now=FRESH) == pytest.approx(0.02)
    assert LoadTable().estimate(1, now=0.0) is None
    table.clear()
    assert table.estimate(1, now=FRESH) is None


def test_spamd_speed_reference_is_the_upper_median_of_the_others() -> None:
    tables = []
    for seconds in (0.01, 0.03, 0.02, 0.5):
        t = LoadTable()
        t.add(1, seconds, now=0.0)
        tables.append(t)
    assert reference(tables[:3], 1, now=0.0) == pytest.approx(0.02)
    assert reference(tables[:2], 1, now=0.0) == pytest.approx(0.03)  # of two, the slower
    assert reference([LoadTable()], 1, now=0.0) is None


def test_spamd_speed_backoff_doubles_on_probation_up_to_the_cap() -> None:
    backoff = Backoff(5.0, 30.0)
    assert backoff.at_set_aside(on_probation=False, back_for=None) == 5.0
    assert backoff.at_set_aside(on_probation=True, back_for=None) == 10.0
    assert backoff.at_set_aside(on_probation=True, back_for=None) == 20.0
    assert backoff.at_set_aside(on_probation=True, back_for=None) == 30.0
    assert backoff.at_set_aside(on_probation=True, back_for=None) == 30.0


def test_spamd_speed_backoff_doubles_when_set_aside_soon_after_returning() -> None:
    backoff = Backoff(5.0, 600.0)
    backoff.at_set_aside(on_probation=False, back_for=None)
    assert backoff.at_set_aside(on_probation=False, back_for=4.9) == 10.0
    assert backoff.shown(up=True, back_for=1.0) == 20.0  # what the next would get
    assert backoff.shown(up=False, back_for=1.0) == 10.0


def test_spamd_speed_backoff_resets_after_staying_in_the_pool_its_cool_down() -> None:
    backoff = Backoff(5.0, 600.0)
    backoff.at_set_aside(on_probation=False, back_for=None)
    for _ in range(3):
        backoff.at_set_aside(on_probation=True, back_for=None)
    assert backoff.current == 40.0
    assert backoff.shown(up=True, back_for=40.0) == 5.0
    assert backoff.at_set_aside(on_probation=False, back_for=40.0) == 5.0


def test_spamd_speed_backoff_cap_below_the_base_means_no_doubling() -> None:
    backoff = Backoff(30.0, 10.0)
    assert backoff.at_set_aside(on_probation=True, back_for=None) == 30.0
