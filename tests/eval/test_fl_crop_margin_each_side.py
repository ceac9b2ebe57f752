"""Review FL (F2): --crop-margin is the room on each side of the face, a fraction of its width (dlib's chip padding):
a margin of 1.0 makes the face a third of the crop, 0.25 two thirds; so the face's share of the crop halves from
0.25 to 1.0. A margin applied as half of that (once in all, not on each side) changes the share by only ~1.45."""

from __future__ import annotations

import pytest

faces = pytest.importorskip("lowdim_sd.faces")


def test_the_margin_is_room_on_each_side_of_the_face(astronaut):
    share = {}
    for margin in (0.25, 1.0):
        crop = faces.crop_face(astronaut, 128, margin=margin)
        found = faces.detect_faces(crop, f"crop at {margin}")
        assert len(found) == 1, (margin, found)
        share[margin] = found[0].width / 128
    assert 1.8 < share[0.25] / share[1.0] < 2.4, share  # (1 + 2 * 1.0) / (1 + 2 * 0.25) = 2
