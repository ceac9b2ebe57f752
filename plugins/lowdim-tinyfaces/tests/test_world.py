"""Tests for the TinyFaces world: identities, determinism, styles, prompts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lowdim_tinyfaces import (
    CARDINALITIES,
    ENCODING_DIM,
    FACTORS,
    NUM_IDENTITIES,
    STYLES,
    Identity,
    Nuisance,
    decode_identities,
    encode_identities,
    identities_to_array,
    iter_dataset,
    prompt_for,
    render,
    render_grid,
    render_tensor,
    sample_dataset,
    sample_identities,
    save_grid,
)

BASE = Identity(face_shape=1, skin_tone=2, hair_colour=1, hair_style=2, eye_colour=1, mouth=0)
identity_indices = st.integers(min_value=0, max_value=NUM_IDENTITIES - 1)


def _distinct(images: np.ndarray) -> bool:
    flat = images.reshape(len(images), -1)
    return len({row.tobytes() for row in flat}) == len(images)


# --- identities -------------------------------------------------------------


def test_identity_count_is_large_and_matches_factors():
    assert NUM_IDENTITIES >= 10**5
    assert int(np.prod(list(FACTORS.values()))) == NUM_IDENTITIES
    assert tuple(FACTORS) == tuple(f.name for f in dataclasses.fields(Identity))
    assert {"glasses", "beard", "hair_colour", "eye_colour"} <= set(FACTORS)


@given(identity_indices)
def test_index_to_identity_roundtrip(index):
    assert Identity.from_index(index).index == index


@given(st.tuples(*(st.integers(0, c - 1) for c in FACTORS.values())))
def test_identity_to_index_roundtrip(levels):
    ident = Identity(*levels)
    assert Identity.from_index(ident.index) == ident
    assert tuple(ident.to_vector()) == levels


def test_index_is_a_bijection_on_a_prefix():
    seen = {Identity.from_index(i) for i in range(5000)}
    assert len(seen) == 5000


@pytest.mark.parametrize("bad", [-1, NUM_IDENTITIES])
def test_from_index_rejects_out_of_range(bad):
    with pytest.raises(ValueError):
        Identity.from_index(bad)


def test_identity_rejects_bad_levels():
    with pytest.raises(ValueError):
        Identity(glasses=FACTORS["glasses"])


def test_sample_is_reproducible_and_in_range():
    a = sample_identities(50, np.random.default_rng(3))
    b = sample_identities(50, np.random.default_rng(3))
    assert a == b
    arr = identities_to_array(a)
    assert (arr >= 0).all() and (arr < CARDINALITIES).all()
    assert Identity.sample(np.random.default_rng(9)) == Identity.sample(np.random.default_rng(9))


def test_encoding_is_one_hot_per_factor_and_invertible():
    ids = sample_identities(20, np.random.default_rng(0))
    codes = encode_identities(ids)
    assert codes.shape == (20, ENCODING_DIM) and codes.dtype == np.float32
    np.testing.assert_array_equal(codes.sum(1), len(FACTORS))
    assert decode_identities(codes) == ids


# --- rendering ----------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 48, 64])
def test_output_shape_dtype_and_range(size):
    ids = sample_identities(len(STYLES), np.random.default_rng(size))
    images = render(ids, list(STYLES), np.arange(len(STYLES)), size)
    assert images.shape == (len(STYLES), size, size, 3) and images.dtype == np.uint8
    t = render_tensor(ids, list(STYLES), np.arange(len(STYLES)), size)
    assert t.shape == (len(STYLES), 3, size, size) and t.dtype == torch.float32
    assert t.min() >= -1.0 and t.max() <= 1.0
    via_tensor = ((t + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, via_tensor)


def test_repeated_renders_are_bit_identical():
    ids = sample_identities(12, np.random.default_rng(1))
    styles = [STYLES[i % len(STYLES)] for i in range(12)]
    torch.manual_seed(0)
    a = render(ids, styles, np.arange(100, 112))
    torch.manual_seed(1)  # global RNG state must not matter
    np.testing.assert_array_equal(a, render(ids, styles, np.arange(100, 112)))


@settings(max_examples=15, deadline=None)
@given(identity_indices, st.sampled_from(STYLES), st.integers(-(2**62), 2**62))
def test_image_does_not_depend_on_its_batch(index, style, seed):
    ident = Identity.from_index(index)
    alone = render([ident], style, [seed])[0]
    others = sample_identities(3, np.random.default_rng(0))
    batch = render([*others, ident], [*STYLES[:3], style], [1, 2, 3, seed])
    np.testing.assert_array_equal(alone, batch[-1])


def test_different_seeds_change_only_nuisance():
    seeds = np.arange(8)
    nz = Nuisance.from_seeds(seeds)
    assert len(set(nz.dx.tolist())) == 8 and len(set(nz.scale.tolist())) == 8
    images = render([BASE] * 8, "photo", seeds)
    assert _distinct(images)
    # Identity-bearing colours survive the nuisance: the hair colour appears
    # near the top-centre of every render.
    hair = np.array([77, 43, 20])
    top = images[:, 4:12, 12:20].reshape(8, -1, 3).astype(int)
    assert (np.abs(top - hair).sum(-1).min(1) < 60).all()


@pytest.mark.parametrize("style", STYLES)
def test_every_single_factor_change_is_visible(style):
    variants = []
    for name, card in FACTORS.items():
        for level in range(card):
            if level != getattr(BASE, name):
                variants.append(Identity(**{**BASE.__dict__, name: level}))
    images = render([BASE, *variants], style, [7] * (len(variants) + 1))
    base = images[0].astype(int)
    diffs = np.abs(images[1:].astype(int) - base).reshape(len(variants), -1).max(1)
    assert (diffs > 0).all(), [v for v, d in zip(variants, diffs, strict=True) if d == 0]


def test_random_identities_render_distinct_images():
    ids = sample_identities(64, np.random.default_rng(5))
    assert _distinct(render(ids, "photo", [11] * 64))


def test_every_style_differs_from_photo():
    ids = sample_identities(6, np.random.default_rng(2))
    seeds = np.arange(6)
    photo = render(ids, "photo", seeds).astype(float)
    for style in STYLES[1:]:
        other = render(ids, style, seeds).astype(float)
        assert np.abs(other - photo).mean() > 8.0, style


def test_styles_have_their_signature_look():
    ids = sample_identities(6, np.random.default_rng(4))
    seeds = np.arange(6)
    photo, sketch, night, red = (
        render(ids, s, seeds) for s in ("photo", "sketch", "night", "red_background")
    )
    assert (sketch[..., 0] == sketch[..., 1]).all() and (sketch[..., 1] == sketch[..., 2]).all()
    assert night.mean() < 0.6 * photo.mean()
    assert (night[..., 2].astype(int) > night[..., 0]).mean() > 0.9
    corner = red[:, :4, :4].reshape(-1, 3).astype(int)
    assert (corner[:, 0] > corner[:, 1] + 80).all()


def test_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        render([BASE, BASE], "photo", [1])
    with pytest.raises(ValueError):
        render([BASE, BASE], ["photo"], [1, 2])
    with pytest.raises(KeyError):
        render([BASE], "watercolour", [1])


# --- prompts and datasets -------------------------------------------------------


def test_at_least_six_styles_with_subject_prompts():
    assert len(STYLES) >= 6 and len(set(STYLES)) == len(STYLES)
    for style in STYLES:
        prompt = prompt_for(style)
        assert "face" in prompt and "[V]" not in prompt
        assert "[V] face" in prompt_for(style, subject="[V] face")
    assert len({prompt_for(s) for s in STYLES}) == len(STYLES)


def test_sample_dataset_is_reproducible_and_consistent():
    a = sample_dataset(24, seed=5, size=32)
    b = sample_dataset(24, seed=5, size=32)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.prompts == b.prompts and a.styles == b.styles
    assert a.images.shape == (24, 32, 32, 3)
    assert all("[V]" not in p for p in a.prompts)
    assert [prompt_for(s) for s in a.styles] == a.prompts
    np.testing.assert_array_equal(render(a.identities, a.styles, a.seeds), a.images)
    assert not np.array_equal(sample_dataset(24, seed=6).images, a.images)


def test_iter_dataset_streams_reproducible_distinct_batches():
    first, second = (next(iter_dataset(4, seed=1)) for _ in range(2))
    np.testing.assert_array_equal(first.images, second.images)
    stream = iter_dataset(4, seed=1, styles=["night"])
    a, b = next(stream), next(stream)
    assert a.images.shape == (4, 32, 32, 3) and set(a.styles) == {"night"}
    assert not np.array_equal(a.levels, b.levels)


def test_save_grid_writes_png(tmp_path):
    images = render(sample_identities(5, np.random.default_rng(0)), "photo", np.arange(5))
    grid = render_grid(images, ncol=3, pad=1, upscale=2)
    assert grid.shape == (2 * 65 + 1, 3 * 65 + 1, 3)
    path = save_grid(tmp_path / "g" / "grid.png", images, ncol=3)
    assert path.exists() and path.stat().st_size > 0


def test_styled_renders_go_in_name_order_with_nuisances_apart_from_the_references():
    from lowdim_tinyfaces.world import styled_renders

    levels = {f"id-{k}": identities_to_array(sample_identities(3, np.random.default_rng(4)))[k] for k in (2, 0, 1)}
    made = list(styled_renders(levels, ["photo", "photo"]))
    assert [name for name, _ in made] == ["id-0", "id-1", "id-2"]
    first = made[0][1]
    assert first.shape == (2, 32, 32, 3) and not np.array_equal(first[0], first[1])  # two nuisance draws
    reference = render(levels["id-0"][None], ["photo"], [0])[0]
    assert not any(np.array_equal(reference, image) for image in first)
    assert np.array_equal(first, next(styled_renders(levels, ["photo", "photo"]))[1])  # reproducible
