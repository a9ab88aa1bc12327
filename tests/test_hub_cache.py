"""build_encoder's hub path, offline: weights written into a Hugging Face cache in the hub's own
layout are the weights the encoder gets, for timm's EVA-02 and BEiT-v2 and an open_clip tag.

The hub library reads HF_HUB_CACHE once, at import, into `huggingface_hub.constants`; timm and
open_clip call `hf_hub_download` without a cache_dir, which reads that constant at each call.
So the fixture patches the constant (and the variables, for anything reading them later).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save

from reid.errors import ReidError
from reid.models import build_encoder

REVISION = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as refs/main holds


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache under tmp_path, the one the hub library reads from for this test."""
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE, "conftest sets HF_HUB_OFFLINE=1 before the hub library loads"
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"


def cache_weights(hub: Path, repo: str, filename: str, state: dict[str, torch.Tensor]) -> Path:
    """Write `state` as the hub does: blobs/<sha256>, snapshots/<rev>/<filename> linking to it,
    and refs/main naming <rev>."""
    root = hub / f"models--{repo.replace('/', '--')}"
    data = save({k: v.contiguous() for k, v in state.items()})
    blob = root / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = root / "snapshots" / REVISION / filename
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)
    return link


def random_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict with noise on every float tensor, so no loaded value can equal the
    one the encoder was initialised with (zero biases, constant layer scales) by chance."""
    return {k: v + torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}


def timm_hub_state(hub: Path, name: str) -> dict[str, torch.Tensor]:
    """Random weights for timm's `name` (tag included), cached where timm looks: its
    pretrained config's hf_hub_id, file model.safetensors (tried before pytorch_model.bin)."""
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    torch.manual_seed(0)
    state = random_state(timm.create_model(name, pretrained=False))
    cache_weights(hub, repo, "model.safetensors", state)
    return state


def assert_loaded(encoder: torch.nn.Module, written: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    """Every tensor of the encoder's state dict is the written one of the same name, and every
    written one outside the dropped head (`skip`) is in the encoder."""
    loaded = encoder.state_dict()
    assert set(loaded) == {k for k in written if not k.startswith(skip)}
    different = [k for k, v in loaded.items() if not torch.equal(v, written[k])]
    assert not different, f"{len(different)} tensors differ from the cache, e.g. {different[:3]}"


def test_eva02_tiny_loads_from_the_cache_at_its_size_and_resizes_to_another(hub_cache):
    name = "eva02_tiny_patch14_224.mim_in22k"
    written = timm_hub_state(hub_cache, name)
    encoder, data = build_encoder(name, pretrained=True, img_size=224)
    assert data.img_size == 224
    assert_loaded(encoder, written, skip=("head.",))

    small, data = build_encoder(name, pretrained=True, img_size=56)  # timm resamples the position embedding
    assert data.img_size == 56 and small.pos_embed.shape == (1, 1 + (56 // 14) ** 2, 192)
    assert_loaded(small, {**written, "pos_embed": small.pos_embed.detach()}, skip=("head.",))
    assert small.eval()(torch.zeros(1, 3, 56, 56)).shape == (1, 192)


def test_beitv2_base_loads_from_the_cache(hub_cache):
    """The recipe's BEiT-v2 family at its smallest size (base, 86M parameters)."""
    name = "beitv2_base_patch16_224.in1k_ft_in22k_in1k"
    written = timm_hub_state(hub_cache, name)
    encoder, _ = build_encoder(name, pretrained=True, img_size=224)
    assert_loaded(encoder, written, skip=("head.",))


def test_open_clip_tag_loads_from_the_cache(hub_cache):
    """open_clip's tag names a repo (`hf_hub`: "org/repo/"); with no file named it asks for
    open_clip_pytorch_model.bin and tries open_clip_model.safetensors first."""
    import open_clip

    arch, tag = "ViT-B-32", "laion2b_s34b_b79k"
    repo, filename = os.path.split(open_clip.get_pretrained_cfg(arch, tag)["hf_hub"])
    assert (repo, filename) == ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "")
    torch.manual_seed(0)
    written = random_state(open_clip.create_model(arch))
    cache_weights(hub_cache, repo, "open_clip_model.safetensors", written)
    encoder, data = build_encoder(f"open_clip:{arch}:{tag}", pretrained=True)
    assert data.img_size == 224
    visual = {k.removeprefix("visual."): v for k, v in written.items() if k.startswith("visual.")}
    assert_loaded(encoder.visual, visual)


@pytest.mark.parametrize("name, repo", [
    ("eva02_tiny_patch14_224.mim_in22k", "timm/eva02_tiny_patch14_224.mim_in22k"),
    ("open_clip:ViT-B-32:laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
])
def test_a_missing_cache_entry_offline_is_one_line_naming_the_repo_and_the_ways_out(hub_cache, name, repo):
    with pytest.raises(ReidError) as caught:
        build_encoder(name, pretrained=True)
    message = str(caught.value)
    assert "\n" not in message
    for words in (name, f"hf download {repo}", "run once with network", "--pretrained="):
        assert words in message
