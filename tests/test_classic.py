"""The classic networks: published shapes and sizes, torchvision compatibility, paper details."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posture.models.classic import (
    CLASSIC_MODELS,
    RECIPES,
    AlexNet,
    AlexNetTwoTower,
    GoogLeNetOutputs,
    Recipe,
    build_classic,
    copy_grouped_to_two_tower,
    googlenet_loss,
    load_torchvision_state_dict,
    make_optimizer,
    make_scheduler,
    remap_densenet_keys,
)
from posture.models.classic.alexnet import GroupedLocalResponseNorm

# name -> (num_classes, parameter count). Published figures where the papers / torchvision give one;
# AlexNet's is the grouped paper network (96-256-384-384-256, 4096-4096); CIFAR counts use option-A shortcuts.
PUBLISHED = {
    "classic_lenet5": (10, 61_706),
    "classic_alexnet": (1000, 60_965_224),
    "classic_alexnet_2tower": (1000, 60_965_224),
    "classic_vgg16": (1000, 138_357_544),
    "classic_vgg16_bn": (1000, 138_365_992),
    "classic_googlenet": (1000, None),  # main path checked against Table 1 below
    "classic_resnet18": (1000, 11_689_512),
    "classic_resnet50": (1000, 25_557_032),
    "classic_cifar_resnet20": (10, 269_722),
    "classic_cifar_resnet32": (10, 464_154),
    "classic_cifar_resnet56": (10, 853_018),
    "classic_densenet121": (1000, 7_978_856),
}
GOOGLENET_TABLE1_PARAMS = 6_797_700  # sum of the "params" column of the paper's Table 1 (weights, rounded)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_registered_model_has_a_published_count() -> None:
    assert set(PUBLISHED) == set(CLASSIC_MODELS)


# Forward + backward at 224 takes tens of seconds each for these on 2 CPU cores.
HEAVY = {"classic_vgg16", "classic_vgg16_bn", "classic_densenet121", "classic_resnet50", "classic_googlenet"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(CLASSIC_MODELS)]
)
def test_classic_model_builds_trains_and_has_published_size(name: str) -> None:
    torch.manual_seed(0)
    spec = CLASSIC_MODELS[name]
    num_classes, expected = PUBLISHED[name]
    model = spec.builder(num_classes=num_classes)
    if expected is not None:
        assert count(model) == expected
    else:  # GoogLeNet: the auxiliary heads are training scaffolding, not part of the paper's 6.8 M
        main = count(model) - count(model.aux1) - count(model.aux2)
        assert abs(main - GOOGLENET_TABLE1_PARAMS) / GOOGLENET_TABLE1_PARAMS < 0.04

    cam_maps: list[torch.Tensor] = []
    handle = model.cam_target_layer().register_forward_hook(lambda m, i, o: cam_maps.append(o))
    x = torch.randn(2, 3, spec.input_size, spec.input_size)
    target = torch.tensor([0, 1])
    model.train()
    out = model(x)
    loss = googlenet_loss(out, target)
    loss.backward()
    handle.remove()
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert cam_maps and cam_maps[0].dim() == 4 and cam_maps[0].shape[0] == 2

    # the zoo's split: a new 2-class Linear on top of forward_features reproduces forward()
    model.reset_classifier(2)
    model.eval()
    small = torch.randn(2, 3, spec.min_input_size or spec.input_size, spec.min_input_size or spec.input_size)
    with torch.no_grad():
        feats = model.forward_features(small)
        assert feats.shape == (2, model.num_features)
        torch.testing.assert_close(model(small), model.get_classifier()(feats))
    assert model(small).shape == (2, 2)


def _torchvision(name: str) -> nn.Module:
    import torchvision

    torch.manual_seed(1)
    return getattr(torchvision.models, name)(weights=None)


@pytest.mark.parametrize(
    "name",
    [
        "classic_resnet18",
        "classic_resnet50",
        "classic_densenet121",
        pytest.param("classic_vgg16", marks=pytest.mark.slow),
        pytest.param("classic_vgg16_bn", marks=pytest.mark.slow),
    ],
)
def test_loads_torchvision_state_dict_strictly_and_matches_outputs(name: str) -> None:
    reference = _torchvision(CLASSIC_MODELS[name].torchvision_equivalent).eval()
    model = build_classic(name, 1000).eval()
    load_torchvision_state_dict(model, reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_densenet_old_style_checkpoint_keys_are_remapped() -> None:
    reference = _torchvision("densenet121").eval()
    old_style = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.") if "denselayer" in k else k: v
        for k, v in reference.state_dict().items()
    }
    assert any(".norm.1." in k for k in old_style)
    model = build_classic("classic_densenet121", 1000).eval()
    load_torchvision_state_dict(model, old_style, strict=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def _hub_checkpoint(arch: str) -> Path | None:
    homes = [os.environ.get("TORCH_HOME"), "../shared/torch-home"]
    dirs = [Path(h) / "hub" for h in homes if h] + [Path(torch.hub.get_dir())]
    for hub in dirs:
        found = sorted((hub / "checkpoints").glob(f"{arch}-*.pth"))
        if found:
            return found[-1]
    return None


@pytest.mark.parametrize("name", ["classic_resnet18", "classic_resnet50", "classic_densenet121"])
def test_genuine_torchvision_weights_from_hub_cache(name: str) -> None:
    arch = CLASSIC_MODELS[name].torchvision_equivalent
    path = _hub_checkpoint(arch)
    if path is None:
        pytest.skip(f"no {arch}-*.pth in the torch hub cache (offline: nothing to download)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    reference = _torchvision(arch).eval()
    reference.load_state_dict(remap_densenet_keys(state) if arch.startswith("densenet") else state)
    model = build_classic(name, 1000).eval()
    load_torchvision_state_dict(model, state, strict=True)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)


def _paired_alexnets(devices: list[str]) -> tuple[AlexNet, AlexNetTwoTower]:
    torch.manual_seed(5)
    grouped = build_classic("classic_alexnet", 7).eval()
    for p in grouped.parameters():  # break the init's constant biases so a mis-mapped row would show
        p.data.add_(torch.randn_like(p) * 0.01)
    two = build_classic("classic_alexnet_2tower", 7, devices=devices).eval()
    return grouped, copy_grouped_to_two_tower(grouped, two)


def test_two_tower_alexnet_matches_grouped_form() -> None:
    grouped, two = _paired_alexnets(["cpu", "cpu"])
    assert count(two) == count(grouped)
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(two(x), grouped(x), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for the second tower")
def test_two_tower_alexnet_runs_across_two_devices() -> None:
    grouped, two = _paired_alexnets(["cpu", "cuda:0"])
    assert next(two.towers[1].parameters()).device.type == "cuda"
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        out = two(x)
        assert out.device.type == "cpu"
        torch.testing.assert_close(out, grouped(x), atol=1e-4, rtol=1e-4)


def test_two_tower_alexnet_takes_one_or_two_devices() -> None:
    assert build_classic("classic_alexnet_2tower", 2, devices=["cpu"]).devices == [torch.device("cpu")] * 2
    with pytest.raises(ValueError, match="one or two devices"):
        build_classic("classic_alexnet_2tower", 2, devices=["cpu"] * 3)


def test_alexnet_lrn_uses_the_papers_alpha_and_stays_within_groups() -> None:
    a = torch.randn(1, 8, 3, 3, generator=torch.Generator().manual_seed(7)) * 30
    n, alpha, beta, k = 5, 1e-4, 0.75, 2.0
    padded = F.pad(a.pow(2), (0, 0, 0, 0, n // 2, n // 2))
    window = torch.stack([padded[:, i : i + a.shape[1]] for i in range(n)]).sum(0)
    paper = a / (k + alpha * window).pow(beta)  # Krizhevsky et al. 2012, section 3.3
    torch.testing.assert_close(GroupedLocalResponseNorm()(a), paper)
    halves = GroupedLocalResponseNorm(groups=2)(a)
    torch.testing.assert_close(halves[:, :4], GroupedLocalResponseNorm()(a[:, :4]))


def test_alexnet_initialisation_follows_the_paper() -> None:
    torch.manual_seed(8)
    model = build_classic("classic_alexnet", 10)
    biases = {n: m.bias for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    ones = {n for n, b in biases.items() if torch.all(b == 1)}
    zeros = {n for n, b in biases.items() if torch.all(b == 0)}
    assert ones == {"features.conv2", "features.conv4", "features.conv5", "hidden.fc6", "hidden.fc7"}
    assert zeros == {"features.conv1", "features.conv3", "fc8"}
    assert model.hidden.fc6.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert model.features.conv2.groups == 2 and model.features.conv3.groups == 1


def test_googlenet_aux_heads_count_only_in_training() -> None:
    torch.manual_seed(9)
    model = build_classic("classic_googlenet", 3, input_size=64)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    model.train()
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs) and all(o.shape == (2, 3) for o in out)
    expected = F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux1, y) + F.cross_entropy(out.aux2, y))
    torch.testing.assert_close(googlenet_loss(out, y), expected)
    model.eval()
    logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3)
    torch.testing.assert_close(googlenet_loss(logits, y), F.cross_entropy(logits, y))
    model.reset_classifier(5)
    assert model.aux1.fc2.out_features == 5 and model.aux2.fc2.out_features == 5


def test_googlenet_uses_true_5x5_branches() -> None:
    model = build_classic("classic_googlenet", 10)
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)


def test_cifar_resnet_option_a_shortcuts_have_no_parameters() -> None:
    model = build_classic("classic_cifar_resnet20", 10)
    shortcuts = [b.shortcut for layer in (model.layer2, model.layer3) for b in layer[:1]]
    assert shortcuts and all(count(s) == 0 for s in shortcuts)
    assert count(build_classic("classic_cifar_resnet20", 10, shortcut="B")) == 272_474
    x = torch.randn(2, 3, 32, 32)
    assert model.eval()(x).shape == (2, 10)


def test_resnet50_paper_stride_placement_has_the_same_weights() -> None:
    v15 = build_classic("classic_resnet50", 10)
    paper = build_classic("classic_resnet50", 10, stride_in_1x1=True)
    paper.load_state_dict(v15.state_dict(), strict=True)
    assert paper.layer2[0].conv1.stride == (2, 2) and v15.layer2[0].conv2.stride == (2, 2)


def test_gradcam_heatmap_on_a_classic_model() -> None:
    from pytorch_grad_cam import GradCAM

    torch.manual_seed(10)
    model = build_classic("classic_cifar_resnet20", 2).eval()
    with GradCAM(model=model, target_layers=[model.cam_target_layer()]) as cam:
        heat = cam(input_tensor=torch.randn(1, 3, 32, 32), targets=None)
    assert heat.shape == (1, 32, 32)


@pytest.mark.parametrize("name, size", [("classic_lenet5", 64), ("classic_alexnet", 32), ("classic_vgg16", 16)])
def test_input_size_hint_rejects_impossible_sizes(name: str, size: int) -> None:
    with pytest.raises(ValueError, match=str(size)):
        build_classic(name, 2, input_size=size)


def test_unknown_classic_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="classic_resnet50"):
        build_classic("classic_resnet51")


def test_lenet_accepts_rgb_via_fixed_luminance() -> None:
    model = build_classic("classic_lenet5", 10).eval()
    grey = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(grey.expand(1, 3, 32, 32)), model(grey))


def test_recipes_carry_the_papers_hyper_parameters() -> None:
    alex, res = RECIPES["alexnet_paper"], RECIPES["resnet_paper"]
    assert (alex.optimizer, alex.lr, alex.momentum, alex.weight_decay) == ("sgd", 0.01, 0.9, 5e-4)
    assert (res.optimizer, res.lr, res.momentum, res.weight_decay, res.gamma) == ("sgd", 0.1, 0.9, 1e-4, 0.1)
    param = nn.Parameter(torch.zeros(1))
    opt = make_optimizer(res, [param])
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["weight_decay"] == 1e-4
    sched = make_scheduler(res, opt, epochs=9)  # the paper's 30/60 of 90 epochs -> 3/6 of 9
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 3)


def test_recipe_on_param_groups_and_unknown_optimizer() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = make_optimizer(RECIPES["densenet_paper"], [{"params": [a], "lr": 0.001}, {"params": [b]}])
    assert [g["lr"] for g in opt.param_groups] == [0.001, 0.1] and opt.defaults["nesterov"]
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(Recipe(optimizer="lbfgs"), [a])
