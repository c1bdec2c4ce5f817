"""Rank fusion on inputs small enough to check by hand."""

from __future__ import annotations

import pytest
from engram.core import fuse, normalize_dbsf, normalize_minmax


def test_minmax() -> None:
    assert normalize_minmax([]) == []
    assert normalize_minmax([3.0]) == [1.0]
    assert normalize_minmax([2.0, 2.0]) == [1.0, 1.0]
    assert normalize_minmax([4.0, 2.0, 0.0]) == [1.0, 0.5, 0.0]


def test_dbsf() -> None:
    assert normalize_dbsf([]) == []
    assert normalize_dbsf([5.0, 5.0]) == [1.0, 1.0]
    # mean 0, population sd 1 -> (s + 3) / 6
    out = normalize_dbsf([1.0, -1.0])
    assert out == pytest.approx([4 / 6, 2 / 6])
    assert all(0.0 <= s <= 1.0 for s in normalize_dbsf([100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))


def test_rrf_by_hand() -> None:
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    lexical = [("c", 12.0), ("a", 3.0)]
    out = dict(fuse({"dense": dense, "lexical": lexical}, {}, method="rrf", rrf_k=60))
    assert out["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert out["b"] == pytest.approx(1 / 62)
    assert out["c"] == pytest.approx(1 / 63 + 1 / 61)
    ranked = fuse({"dense": dense, "lexical": lexical}, {}, method="rrf")
    assert [k for k, _ in ranked] == ["a", "c", "b"]


def test_rrf_weights_and_k() -> None:
    out = dict(fuse({"d": [("x", 1.0)], "l": [("y", 1.0), ("x", 0.5)]}, {"d": 2.0, "l": 0.5}, method="rrf", rrf_k=1))
    assert out["x"] == pytest.approx(2.0 / 2 + 0.5 / 3)
    assert out["y"] == pytest.approx(0.5 / 2)


def test_rsf_by_hand() -> None:
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]  # minmax: 1, 0.5, 0
    lexical = [("c", 10.0), ("b", 5.0)]  # minmax: 1, 0
    out = dict(fuse({"dense": dense, "lexical": lexical}, {"dense": 0.5, "lexical": 0.5}, method="rsf"))
    assert out == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5})
    out = dict(fuse({"dense": dense, "lexical": lexical}, {"dense": 3.0, "lexical": 1.0}, method="rsf"))
    assert out == pytest.approx({"a": 0.75, "b": 0.375, "c": 0.25})


def test_rsf_in_unit_range_and_empty_paths() -> None:
    out = fuse({"dense": [("a", 0.2), ("b", 0.1)], "lexical": []}, {"dense": 0.5, "lexical": 0.5}, method="rsf")
    assert dict(out) == pytest.approx({"a": 1.0, "b": 0.0})  # an empty path does not dilute
    assert fuse({}, {}) == []
    assert fuse({"d": []}, {}) == []
    assert dict(fuse({"d": [("a", 1.0)]}, {"d": 0.0})) == {"a": 0.0}


def test_dbsf_fuses() -> None:
    out = dict(fuse({"d": [("a", 1.0), ("b", -1.0)], "l": [("b", 3.0)]}, {}, method="dbsf"))
    assert out["a"] == pytest.approx(0.5 * 4 / 6)
    assert out["b"] == pytest.approx(0.5 * 2 / 6 + 0.5 * 1.0)


def test_ties_keep_first_appearance() -> None:
    out = fuse({"d": [("a", 1.0)], "l": [("b", 1.0)]}, {}, method="rrf")
    assert [k for k, _ in out] == ["a", "b"]


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown fusion method"):
        fuse({"d": [("a", 1.0)]}, {}, method="borda")
