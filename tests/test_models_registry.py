"""The zoo's contract: every registered name builds, classifies, freezes and reloads the same way."""

from __future__ import annotations

import gc
import logging

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision import models as tvm

from _models_helpers import input_size_for, is_heavy
from posture.cli import UserError, run_main
from posture.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from posture.models import (
    HeadSpec,
    PostureClassifier,
    WeightsUnavailableError,
    build_model,
    extractor_parts,
    get_preprocessing,
    list_models,
    model_from_config,
    suggest_models,
    weights_fingerprint,
)
from posture.runs.checkpoint import load_checkpoint, save_checkpoint

SMALL = "mobilenet_v3_small"  # 2.5 M parameters, BatchNorm, a hidden layer kept in the backbone


def _all_models():
    """Every CNN of the zoo (the pose-based names are checked by the tests below)."""
    return [
        pytest.param(n, marks=pytest.mark.slow) if is_heavy(n) else n
        for n in list_models()
        if not extractor_parts(n).pose
    ]


def test_the_zoo_lists_the_pose_extractor_and_fusions():
    names = list_models()
    assert "pose" in names and "efficientnet_lite0+pose" in names
    assert extractor_parts("pose").kind == "pose" and extractor_parts("resnet18+pose").kind == "fusion"
    assert extractor_parts("resnet18").kind == "cnn"


def test_the_pose_extractor_reads_geometry_only_and_standardises_it():
    from posture.pose.geometry import DEFAULT_FEATURES

    model = build_model("pose", num_classes=2).eval()
    assert not model.uses_image and model.pose_features == DEFAULT_FEATURES
    assert model.head.in_features == len(DEFAULT_FEATURES)
    assert {k for k in model.state_dict()} == {"head.weight", "head.bias", "norm.mean", "norm.std"}
    geometry = torch.randn(4, len(DEFAULT_FEATURES))
    assert model(geometry=geometry).shape == (4, 2)
    with pytest.raises(ValueError, match="geometry"):
        model(torch.randn(1, 3, 8, 8))
    custom = build_model("pose", 2, pose_features=["head_height", "ear_shoulder_angle"])
    assert custom.head.in_features == 2
    with pytest.raises(UserError, match="unknown pose feature"):
        build_model("pose", 2, pose_features=["chin_size"])


def test_a_fusion_reads_the_cnn_on_the_crop_and_the_geometry():
    model = build_model(f"{SMALL}+pose", num_classes=2, pretrained=False).eval()
    assert model.uses_image and model.uses_pose and model.preprocessing.crop == "pose"
    assert model.head.in_features == model.num_features + len(model.pose_features)
    size = model.preprocessing.input_size
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size), torch.randn(2, len(model.pose_features)))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert weights_fingerprint("pose") == "none"


@pytest.mark.parametrize("name", _all_models())
def test_every_model_builds_with_a_two_class_head(name):
    torch.manual_seed(0)
    size = input_size_for(name)
    vit = name.startswith("vit_")  # ViTs are built for the test's small size
    model = build_model(name, num_classes=2, pretrained=False, input_size=size if vit else None).eval()
    try:
        assert isinstance(model, PostureClassifier) and model.arch == name
        assert model.preprocessing.input_size == (size if vit else get_preprocessing(name).input_size)
        # The 1000-way ImageNet classifier is gone from the backbone; the head is ours.
        for m in model.backbone.modules():
            assert not (isinstance(m, nn.Linear) and m.out_features == 1000)
            assert not (isinstance(m, nn.Conv2d) and m.out_channels == 1000)
        assert isinstance(model.head, nn.Linear) and model.head.out_features == 2
        assert model.head.in_features == model.num_features
        assert all(k.startswith(("backbone.", "head.")) for k in model.state_dict())
        with torch.no_grad():
            feats = model.backbone(torch.randn(1, 3, size, size))
            logits = model.head(feats)
        assert feats.shape == (1, model.num_features)
        assert logits.shape == (1, 2) and torch.isfinite(logits).all()
        # Stages cover every backbone parameter exactly once; the CAM layer lives in the backbone.
        groups = model.block_parameters()
        assert len(model.backbone_blocks()) >= 2
        assert sum(len(g) for g in groups) == len(list(model.backbone.parameters()))
        assert len({id(p) for g in groups for p in g}) == sum(len(g) for g in groups)
        cam = model.cam_target_layer()
        assert any(cam is m for m in model.backbone.modules()) and cam is not model.backbone
    finally:
        del model
        gc.collect()


def test_registry_holds_torchvision_lite_and_classic_names():
    names = list_models()
    assert set(tvm.list_models(module=tvm)) <= set(names)
    assert "efficientnet_lite0" in names
    assert "classic_lenet5" in names and "classic_resnet50" in names


def test_unknown_name_gets_suggestions_in_one_line():
    assert suggest_models("resnt18")[0] == "resnet18"
    with pytest.raises(UserError, match=r"unknown model 'resnt18'; did you mean: resnet18"):
        build_model("resnt18", 2)
    with pytest.raises(UserError, match="unknown model"):
        get_preprocessing("no_such_thing_at_all")


def test_offline_torchvision_weights_give_one_actionable_line(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = tvm.ResNet18_Weights.DEFAULT.url
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("resnet18", 2, pretrained=True)
    msg = str(info.value)
    assert "\n" not in msg
    for part in (
        "resnet18-f37072fd.pth",
        url,
        str(tmp_path / "torch" / "hub" / "checkpoints"),
        "--weights FILE",
        "--weights none",
    ):
        assert part in msg
    with pytest.raises(WeightsUnavailableError):
        weights_fingerprint("resnet18") and build_model("classic_resnet18", 2, pretrained=True)

    def main(argv):
        build_model("resnet18", 2)

    with caplog.at_level(logging.ERROR, logger="posture"):
        assert run_main(main, []) == 2
    assert caplog.records[-1].getMessage().startswith("error: pretrained weights for 'resnet18'")


def test_cached_torchvision_file_is_loaded_from_torch_home(monkeypatch, tmp_path):
    """With the file in TORCH_HOME, weights load normally (here a stand-in with the real name)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = tvm.SqueezeNet1_1_Weights.DEFAULT
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(1)
    original = tvm.squeezenet1_1(num_classes=1000)
    torch.save(original.state_dict(), folder / weights.url.rsplit("/", 1)[-1])
    model = build_model("squeezenet1_1", 2, pretrained=True)
    assert torch.equal(model.backbone.features[0].weight, original.features[0].weight)
    assert weights_fingerprint("squeezenet1_1") == "torchvision:" + weights.url.rsplit("/", 1)[-1]


def test_weights_file_in_original_naming(tmp_path):
    torch.manual_seed(2)
    original = tvm.get_model(SMALL, num_classes=1000)
    path = tmp_path / "imagenet.pth"
    torch.save(original.state_dict(), path)
    model = build_model(SMALL, 3, pretrained=str(path)).eval()
    original.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        hidden = original.classifier[:-1](torch.flatten(original.avgpool(original.features(x)), 1))
        assert torch.allclose(model.backbone(x), hidden, atol=1e-6)
    assert weights_fingerprint(SMALL, str(path)).startswith("file:")


def test_weights_file_round_trip_pth_and_safetensors(tmp_path):
    torch.manual_seed(3)
    trained = build_model(SMALL, 2, pretrained=False, head={"hidden": 8, "dropout": 0.1}).eval()
    state = trained.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "run.safetensors"))
    torch.save(state, tmp_path / "run.pth")
    x = torch.randn(1, 3, 64, 64)
    for name in ("run.safetensors", "run.pth"):
        again = build_model(SMALL, 2, pretrained=tmp_path / name, head=HeadSpec(8, 0.1)).eval()
        with torch.no_grad():
            assert torch.equal(again(x), trained(x))
    # Another class count: the backbone is reused, the head starts fresh.
    three = build_model(SMALL, 3, pretrained=tmp_path / "run.safetensors", head=HeadSpec(8, 0.1))
    assert torch.equal(three.backbone.features[0][0].weight, trained.backbone.features[0][0].weight)
    assert three.head[-1].out_features == 3


def test_bad_weights_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_model(SMALL, 2, pretrained=tmp_path / "missing.pth")
    torch.save(tvm.squeezenet1_1().state_dict(), tmp_path / "other.pth")
    with pytest.raises(UserError, match="do not fit"):
        build_model(SMALL, 2, pretrained=tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        build_model(SMALL, 2, pretrained=tmp_path / "junk.pth")
    torch.save({"optimizer": HeadSpec()}, tmp_path / "pickled.pth")  # needs unpickling: refused
    with pytest.raises(UserError, match="cannot read"):
        build_model(SMALL, 2, pretrained=tmp_path / "pickled.pth")


def test_none_means_random_and_random_backbones_are_reproducible():
    a = build_model(SMALL, 2, pretrained="none")
    b = build_model(SMALL, 2, pretrained=False)
    assert all(torch.equal(p, q) for p, q in zip(a.backbone.parameters(), b.backbone.parameters(), strict=True))
    assert weights_fingerprint(SMALL, "none") == "random:0"
    c = build_model(SMALL, 2, pretrained=False, init_seed=1)
    assert not torch.equal(a.backbone.features[0][0].weight, c.backbone.features[0][0].weight)


def test_head_specs():
    spec = HeadSpec(hidden=16, dropout=0.25)
    assert HeadSpec.from_dict(spec.to_dict()) == spec
    assert HeadSpec.from_dict(None) == HeadSpec()
    model = build_model(SMALL, 4, pretrained=False, head=spec.to_dict())
    assert [type(m) for m in model.head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert model.head[0].in_features == model.num_features and model.head[-1].out_features == 4
    assert model.head[2].p == 0.25
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)
    with pytest.raises(ValueError):
        HeadSpec(hidden=-1)
    with pytest.raises(ValueError):
        HeadSpec(dropout=1.0)


def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics():
    torch.manual_seed(4)
    model = build_model(SMALL, 2, pretrained=False).freeze_backbone()
    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert model.head.training and not any(m.training for m in model.backbone.modules())
    before = _bn_stats(model.backbone)
    model(torch.randn(4, 3, 64, 64) * 3 + 1).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model.backbone), strict=True))
    assert all(p.grad is None for p in model.backbone.parameters())


def test_partial_unfreeze_trains_only_the_last_stages():
    torch.manual_seed(5)
    model = build_model("resnet18", 2, pretrained=False).freeze_backbone()
    model.unfreeze(1).train()
    last = model.backbone_blocks()[-1]
    assert last is model.backbone.layer4
    assert all(p.requires_grad for p in last.parameters())
    assert not any(p.requires_grad for p in model.backbone.layer3.parameters())
    assert model.backbone.layer4[0].bn1.training and not model.backbone.layer3[0].bn1.training
    frozen_before, live_before = _bn_stats(model.backbone.layer3), _bn_stats(model.backbone.layer4)
    model(torch.randn(2, 3, 64, 64) + 1)
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, _bn_stats(model.backbone.layer3), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(live_before, _bn_stats(model.backbone.layer4), strict=True))
    model.unfreeze("all")
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError):
        model.unfreeze(-1)


def test_model_from_config_round_trip_through_checkpoint(tmp_path):
    torch.manual_seed(6)
    model = build_model(SMALL, 2, pretrained=False, head=HeadSpec(hidden=8)).eval()
    # Make the weights differ from the seeded random init so the reload is really tested.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    config = {
        "architecture": SMALL,
        "classes": ["forward_head", "normal"],
        "preprocessing": model.preprocessing.to_dict(),
        "head": HeadSpec(hidden=8).to_dict(),
    }
    save_checkpoint(tmp_path / "run", model.state_dict(), config)
    ckpt = load_checkpoint(tmp_path / "run")
    again = model_from_config(ckpt.config)
    again.load_state_dict(ckpt.state_dict, strict=True)
    again.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert again.preprocessing == model.preprocessing
    with pytest.raises(UserError, match="architecture"):
        model_from_config({"classes": ["a", "b"]})


def test_get_preprocessing_follows_the_weights():
    r18 = get_preprocessing("resnet18")
    assert (r18.input_size, r18.mean, r18.std, r18.interpolation) == (224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    assert get_preprocessing("inception_v3").input_size == 299
    assert get_preprocessing("vit_h_14").input_size == 518
    assert get_preprocessing("efficientnet_b3").interpolation == "bicubic"
    assert get_preprocessing("classic_lenet5").input_size == 32


def test_classic_network_loads_its_torchvision_equivalent(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(7)
    original = tvm.resnet18(num_classes=1000).eval()
    torch.save(original.state_dict(), folder / tvm.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1])
    model = build_model("classic_resnet18", 2, pretrained=True).eval()
    original.fc = nn.Identity()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.backbone(x), original(x), atol=1e-5)
    assert weights_fingerprint("classic_resnet18") == weights_fingerprint("resnet18")
    with pytest.raises(UserError, match="no pretrained weights"):
        build_model("classic_lenet5", 2, pretrained=True)


@pytest.mark.slow
def test_vit_at_another_size_resamples_position_embeddings(tmp_path):
    torch.manual_seed(8)
    original = tvm.vit_b_32(num_classes=1000)  # 224 px, 7x7 patches
    torch.save(original.state_dict(), tmp_path / "vit.pth")
    model = build_model("vit_b_32", 2, pretrained=tmp_path / "vit.pth", input_size=96)
    assert model.preprocessing.input_size == 96
    assert model.backbone.encoder.pos_embedding.shape == (1, 1 + 3 * 3, 768)
    assert model(torch.randn(1, 3, 96, 96)).shape == (1, 2)
    config = {"architecture": "vit_b_32", "classes": ["a", "b"], "preprocessing": model.preprocessing.to_dict()}
    model_from_config(config).load_state_dict(model.state_dict(), strict=True)


def test_every_name_is_registered_once_by_one_typed_family():
    from posture.models.registry import ModelFamily, register_family, registered_models

    entries = registered_models()
    assert {e.family.name for e in entries.values()} == {"torchvision", "efficientnet_lite", "classic"}
    assert all(isinstance(e.family, ModelFamily) and e.name == n for n, e in entries.items())

    class Again(ModelFamily):  # a second family claiming a taken name is a bug, not a silent override
        name = "again"

        def names(self):
            return ["resnet18"]

        def build(self, name, input_size):
            raise AssertionError

        def preprocessing(self, name):
            raise AssertionError

        def weights_file(self, name):
            raise AssertionError

        def weights_id(self, name):
            raise AssertionError

    with pytest.raises(ValueError, match="already registered"):
        register_family(Again)
    assert registered_models()["resnet18"].family.name == "torchvision"
