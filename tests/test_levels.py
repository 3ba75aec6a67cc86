"""Levels for any number of found vertebrae, anchored by the dataset's levels and their positions."""

import pytest

from xvfa_ext.layout import assign_levels, level_positions, order_levels

T1_L5 = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
POSITIONS = {lv: 0.05 + 0.05 * k for k, lv in enumerate(T1_L5)}  # 17 levels down a 1000 px film


def _centres(levels, jitter=0.0):
    return [1000 * POSITIONS[lv] + jitter for lv in levels]


@pytest.mark.parametrize("found", [T1_L5, T1_L5[:5], T1_L5[6:13], T1_L5[-4:]])
def test_a_run_of_found_vertebrae_gets_its_own_levels(found):
    levels, certain = assign_levels(_centres(found, jitter=8), 1000, T1_L5, POSITIONS)
    assert levels == list(found) and all(certain)


def test_a_lone_vertebra_gets_the_nearest_level_without_certainty():
    # Its position alone places it: a sixth of a spacing from T4, five sixths from T5.
    assert assign_levels(_centres(["T4"], jitter=8), 1000, T1_L5, POSITIONS) == (["T4"], [False])


def test_a_missed_vertebra_inside_the_run_leaves_a_gap_of_one_level():
    # T7 is missed and the film sits a third of a spacing low: sliding the run would shift every
    # level below the gap by one; its spacing says where the gap is.
    found = T1_L5[:6] + T1_L5[7:]
    levels, certain = assign_levels(_centres(found, jitter=17), 1000, T1_L5, POSITIONS)
    assert levels == found and all(certain[1:-1])


def test_a_false_box_inside_the_run_gets_no_level():
    centres = sorted(_centres(T1_L5) + [1000 * POSITIONS["T9"] + 22])  # half-way to T10
    levels, _ = assign_levels(centres, 1000, T1_L5, POSITIONS)
    assert levels.count(None) == 1 and [lv for lv in levels if lv] == T1_L5
    assert levels.index(None) in (9, 10)  # either of the two boxes between T9 and T10


def test_two_boxes_on_one_vertebra_share_no_level():
    # Exactly tied: either box could be the vertebra, never both.
    centres = sorted(_centres(T1_L5) + _centres(["T9"]))
    levels, _ = assign_levels(centres, 1000, T1_L5, POSITIONS)
    assert levels.count(None) == 1 and [lv for lv in levels if lv] == T1_L5


def test_usual_positions_that_cross_still_give_levels_in_order():
    # Few, partly annotated films: T8's usual position came out above T7's.
    crossed = dict(POSITIONS, T8=POSITIONS["T7"] - 0.005)
    levels, _ = assign_levels(_centres(T1_L5), 1000, T1_L5, crossed)
    assert levels == T1_L5


def test_more_vertebrae_than_levels_leave_the_extra_ones_without_a_level():
    extra = _centres(T1_L5) + [1000 * 0.93]  # a sacral vertebra below L5
    levels, certain = assign_levels(extra, 1000, T1_L5, POSITIONS)
    assert levels == T1_L5 + [None] and certain == [True] * 17 + [False]


def test_a_poor_fit_is_marked_uncertain():
    # Half a level off everywhere: the levels are a guess.
    levels, certain = assign_levels(_centres(T1_L5[4:8], jitter=26), 1000, T1_L5, POSITIONS)
    assert len(levels) == 4 and not any(certain)


def test_without_positions_levels_only_when_every_level_was_found():
    assert assign_levels([10, 20, 30], 100, ["T4", "T5", "T6"]) == (["T4", "T5", "T6"], [True] * 3)
    assert assign_levels([10, 20], 100, ["T4", "T5", "T6"]) == ([None, None], [False, False])


def test_levels_are_ordered_anatomically_or_by_position():
    assert order_levels(["L1", "T12", "C7", "S1", "T2"]) == ["C7", "T2", "T12", "L1", "S1"]
    assert order_levels(["b", "a"], {"a": 0.7, "b": 0.2}) == ["b", "a"]
    with pytest.raises(ValueError, match="needs positions"):
        order_levels(["upper", "lower"])


def test_level_positions_are_medians_of_box_centres():
    records = [{"height": 100, "annotations": [{"level": "T1", "bbox": [0, 10, 5, 10]}, {"level": "T2", "bbox": [0, 30, 5, 10]}]},
               {"height": 200, "annotations": [{"level": "T1", "bbox": [0, 40, 5, 20]}]}]
    assert level_positions(records) == {"T1": 0.25, "T2": 0.35}
