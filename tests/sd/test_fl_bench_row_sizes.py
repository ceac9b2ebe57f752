"""Review FL (B10): a row's file size is the mean over its own identities, not divided by every result's count."""

from __future__ import annotations

from lowdim_sd.bench.report import aggregate


def _record(method, identity, size, seconds):
    return {"method": method, "identity": identity, "reference": "", "seconds": seconds, "bytes": size,
            "hypernet": None, "scores": {"i": [0.5]}, "columns": {"i": "Ident"}, "skipped": {}}


def test_each_rows_file_size_and_seconds_are_the_mean_over_its_own_identities():
    results = [_record("base", "id-0", 100, 1.0), _record("base", "id-1", 300, 3.0),
               _record("ti", "id-0", 5000, 10.0), _record("ti", "id-1", 7000, 20.0), _record("ti", "id-2", 9000, 30.0)]
    rows, _ = aggregate(results, ["base", "ti"])
    base, ti = rows
    assert (base.bytes, base.identities, base.seconds.mean, base.seconds.n) == (200, 2, 2.0, 2)
    assert (ti.bytes, ti.identities, ti.seconds.mean, ti.seconds.n) == (7000, 3, 20.0, 3)
