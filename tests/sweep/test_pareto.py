"""Pareto fronts on cases small enough to check by hand."""

from codesign.sweep.pareto import front


def test_front_maximising_x():
    # (tokens/s, ppl): c is beaten by b (faster, better); a is slowest but best; d is fastest but worst
    pts = [(100.0, 10.0), (200.0, 11.0), (150.0, 12.0), (300.0, 20.0)]
    assert front(pts, maximize_x=True) == [3, 1, 0]  # sorted fastest first


def test_front_minimising_x_and_ties():
    # (energy, ppl): b dominates e (equal energy, lower ppl); exact duplicates a and f are both kept
    pts = [(1.0, 5.0), (2.0, 3.0), (3.0, 1.0), (3.0, 2.0), (2.0, 4.0), (1.0, 5.0)]
    assert front(pts, maximize_x=False) == [0, 5, 1, 2]


def test_single_and_empty():
    assert front([(1.0, 1.0)], maximize_x=True) == [0]
    assert front([], maximize_x=False) == []
