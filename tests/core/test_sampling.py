"""K of N time-ordered items, one per equal stretch: the draw every stage shares."""

import numpy as np
import pytest

from dfpipe.core.sampling import evenly_spaced


@pytest.mark.parametrize(("n", "k"), [(10, 3), (7, 7), (3, 5), (100, 1), (101, 10)])
def test_evenly_spaced_picks_distinct_indices_in_every_slice(n, k):
    picked = evenly_spaced(n, k)
    assert len(picked) == min(n, k) == len(set(picked))
    assert all(0 <= i < n for i in picked)
    if k < n:
        assert all(j * n / k <= i < (j + 1) * n / k for j, i in enumerate(picked))


def test_the_seeded_draw_stays_in_its_stretch_and_the_plain_one_takes_the_middle():
    edges = [0, 3, 6, 10]
    for seed in range(20):
        picked = evenly_spaced(10, 3, np.random.default_rng(seed))
        assert all(lo <= i < hi for i, lo, hi in zip(picked, edges[:-1], edges[1:], strict=True))
    assert evenly_spaced(10, 3) == [1, 4, 8]
    assert evenly_spaced(5, 0) == evenly_spaced(5, None) == evenly_spaced(5, 9) == [0, 1, 2, 3, 4]
