"""Review FK (session 65): tests for the mutation audit's survivors in lowdim/hyper (each fails on its mutant)."""

from __future__ import annotations

import torch

from lowdim.hyper.retrieval_keys import KeyProjection, fit_key_projection


def test_the_pair_score_compares_each_first_photo_with_its_own_identity_s_second_photo():
    """KeyFit.pair_top1: identity i's second photo is identity i+1's first (bit for bit), so every first photo's
    nearest second photo is identity i-1's: 0 of the pairs are right. Scoring a photo against itself gives 1."""
    torch.manual_seed(0)
    shared = torch.randn(7, 3, 8)  # 6 identities: photos (shared[i], shared[i + 1])
    identities = [shared[i: i + 2] for i in range(6)]
    projection = KeyProjection(3 * 8, 16, 8)
    fit = fit_key_projection(projection, identities, steps=1, batch_size=6, learning_rate=1e-12, seed=0)
    assert fit.pair_top1 == 0.0
    same = [torch.stack([photo, photo]) for photo in shared[:6]]  # each identity's two photos alike: all right
    assert fit_key_projection(KeyProjection(3 * 8, 16, 8), same, steps=1, learning_rate=1e-12).pair_top1 == 1.0


def test_a_prediction_is_the_last_iterate_of_the_refinement():
    """net(images) is θ_s (eq. 3), the last of return_all's iterates, not θ_1: personalize, bench and the
    validation all call it without return_all."""
    from test_hyper import images, make_net

    net = make_net(head_init_scale=1.0).eval()
    x = images(2)
    with torch.no_grad():
        every = net(x, iterations=3, return_all=True)
        last = net(x, iterations=3)
    assert not torch.allclose(every[0]["q"]["A_train"], every[-1]["q"]["A_train"])
    for layer, params in every[-1].items():
        for name, value in params.items():
            torch.testing.assert_close(last[layer][name], value, rtol=0, atol=0)


def test_a_describer_reads_features_standardized_by_its_fitted_mean_and_spread():
    """fit_describer keeps each feature's mean and spread: reading, the heads see (x - mean) / std, as they were
    trained (a describer file's mean/std buffers are not ignored)."""
    from lowdim.hyper.describer import fit_describer

    generator = torch.Generator().manual_seed(0)
    base = torch.randn(40, 2, 4, generator=generator)
    labels = {"hair": (base[:, 0, 0] > 0).long()}
    describer = fit_describer(base, labels, {"hair": ["dark", "light"]}, steps=50)
    torch.testing.assert_close(describer.mean, base.flatten(1).mean(0))
    with torch.no_grad():
        expected = describer.heads["hair"]((base.flatten(1) - describer.mean) / describer.std)
        torch.testing.assert_close(describer(base)["hair"], expected)


def test_the_decoder_reads_layer_normalized_backbone_tokens():
    """ImageEncoder.project is proj(LayerNorm(tokens)): a backbone whose tokens come out louder or shifted (another
    encoder's scale, a fp16 backbone's drift) gives the decoder the same memory, hence the same prediction."""
    from test_hyper import images, make_net

    net = make_net(head_init_scale=1.0).eval()
    with torch.no_grad():
        features = net.encoder.features(images(2))
        plain = net(None, features=features)
        louder = net(None, features=features * 7.0 + 3.0)
    for layer, params in plain.items():
        for name, value in params.items():
            torch.testing.assert_close(louder[layer][name], value, atol=1e-4, rtol=1e-4)
