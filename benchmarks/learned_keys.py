"""Issue 13 ladder rung 10: the retrieval head keyed by a learned identity embedding instead of DINOv2's CLS.

Takes a retrieval hypernetwork (its θ bank is kept as it is) and the folder of its bank's reference images,
trains a key projection on PEOPLE (an identity folder with two or more photos per person, e.g.
`lowdim tinyfaces-identities -o people --count 3000 --split train --seed 1 --renders 2`), recomputes every
bank key through it and writes OUT/hypernet.safetensors. This is `train-hypernet --set key_dim=64
--key-pairs PEOPLE` for a bank whose precompute folder is not at hand; both call the same functions.

    python benchmarks/learned_keys.py HYPERNET BANK_IMAGES PEOPLE OUT [--features F] [--key-dim 64] [--pool 2]
        [--renders 2 --prompt "a photo of a sks face"]

BANK_IMAGES: the flat identity folder the bank was filled from, in bank order (id-00000.png ...); the first
bank_size images are used and each must give back its stored key (checked). --features: a
`lowdim encoder-features -i PEOPLE -i BANK_IMAGES --pool POOL` file, so the encoder runs once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hypernet", type=Path)
    parser.add_argument("bank_images", type=Path)
    parser.add_argument("people", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--features", type=Path)
    parser.add_argument("--key-dim", type=int, default=64)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--steps", type=int, default=750)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renders", type=int, default=0, help="also key each θ by N images made with it")
    parser.add_argument("--prompt", default="a photo of a sks face", help="the renders' prompt")
    args = parser.parse_args()

    from lowdim.hyper import HyperConfig, build_hypernet
    from lowdim.hyper.storage import load_hypernet, read_hypernet, save_hypernet
    from lowdim_sd.face_inputs import load_face_image
    from lowdim_sd.feature_file import StoredFeatures
    from lowdim_sd.loading import load_sd
    from lowdim_sd.retrieval_fill import backbone_features, learn_keys, render_bank_features

    file = read_hypernet(args.hypernet)
    old = load_hypernet(file).eval()
    config = HyperConfig.from_dict({**old.config.to_dict(), "key_dim": args.key_dim, "encoder_pool": args.pool})
    net = build_hypernet(config, old.space, old.layers).eval()
    for name, buffer in old.named_buffers():
        if name.startswith("values"):
            getattr(net, name).copy_(buffer)
    stored = StoredFeatures(args.features, net.encoder) if args.features else None
    side = 32 if file.header["model"] == "tinyfaces" else 512
    paths = sorted(args.bank_images.glob("id-*.png"))[:config.bank_size]
    features = backbone_features(net, (load_face_image(p, side, crop=False) for p in paths), stored,
                                 [str(p) for p in paths], True, "bank features")
    agreement = (torch.nn.functional.normalize(features[:, 0].float(), dim=-1) * old.keys).sum(-1)
    if len(paths) != config.bank_size or agreement.min() < 0.999:
        raise SystemExit(f"{args.bank_images} is not the bank's image folder (first-token agreement "
                         f"{agreement.min():.3f} with the stored keys)")

    extra = learn_keys(net, args.people, lambda path: load_face_image(path, side, crop=False), stored, args.steps,
                       args.seed, True)
    net.keys.copy_(net.key(features))
    if args.renders:
        model = load_sd(file.header["model"], "auto", "fp32")
        net.add_render_keys(render_bank_features(net, model, file.header["layer_set"], old.metadata.get(
            "adapter_seed", 0), args.prompt, args.renders, args.seed))
        extra.update(key_renders=args.renders, key_render_prompt=args.prompt)
    same = (net.nearest(None, features) == torch.arange(config.bank_size)).float().mean()
    print(f"keys: {json.dumps(extra)}; each bank image finds itself: {same:.3f}")
    metadata = json.loads(file.header.get("extra", "{}"))
    metadata.update(extra)
    save_hypernet(args.out / "hypernet.safetensors", net,
                  {"model": file.header["model"], "layer_set": file.header["layer_set"], **metadata})
    print(f"wrote {args.out / 'hypernet.safetensors'}")


if __name__ == "__main__":
    main()
