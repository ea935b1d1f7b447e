"""Policy networks: loss/backward, predict shapes, tiny overfit, and the shared geometry."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from para_bench.envs.camera import intrinsics_from_fovy, look_at
from para_bench.models import geometry
from para_bench.models.base import PolicyModel, add_bin_targets
from para_bench.models.stats import DatasetStats
from para_bench.models.zoo import MODELS, load_model_class

S, GRID, DIM, W = 32, 8, 32, 3
TINY = {"image_size": S, "grid": GRID, "dim": DIM, "n_window": W, "n_height_bins": 8,
        "n_gripper_bins": 4, "n_rot_bins": 8}
EXTRA = {"ar": {"history": 2, "token_grid": 4, "layers": 2},
         "voxel_abs": {"voxel_grid": 8, "voxel_heights": 8, "layers": 2},
         "voxel_rel": {"voxel_grid": 8, "voxel_heights": 8, "layers": 2},
         "act": {"token_grid": 2, "layers": 2}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small machine shared with simulator processes, two
    OpenMP threads fighting for busy cores make these tiny steps 10-100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_stats() -> DatasetStats:
    return DatasetStats(height_lo=0.88, height_hi=1.2, gripper_lo=-1.0, gripper_hi=1.0,
                        rot_ref=np.eye(3).tolist(), rot_mean=[0.0, 0.0, 0.0],
                        rot_axis=[0.0, 0.0, 1.0], rot_lo=-1.0, rot_hi=1.0,
                        rot_explained_variance=1.0, xyz_mean=[0.0, 0.0, 1.0],
                        xyz_std=[0.1, 0.1, 0.08], n_frames=100)


def make_batch(config, stats: DatasetStats, b: int = 4, seed: int = 0
               ) -> dict[str, torch.Tensor]:
    """A random but geometrically consistent training batch (table at z = 0.9)."""
    g = torch.Generator().manual_seed(seed)
    s, w, c = config.image_size, config.n_window, max(config.history, 1)
    k = torch.tensor(intrinsics_from_fovy(45.0, s, s), dtype=torch.float32)
    e = torch.tensor(look_at(np.array([0.6, 0.0, 1.5]), np.array([0.0, 0.0, 0.9])),
                     dtype=torch.float32)
    k, e = k.expand(b, 3, 3).clone(), e.expand(b, 4, 4).clone()

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    lo, hi = torch.tensor([-0.12, -0.12, 0.95]), torch.tensor([0.12, 0.12, 1.12])
    eef = lo + (hi - lo) * rand(b, 3)
    steps = (rand(b, w, 3) - 0.5) * torch.tensor([0.06, 0.06, 0.03])
    target = (eef[:, None] + steps.cumsum(1)).clamp(min=torch.tensor([-1, -1, 0.9]))
    past = eef[:, None] - (rand(b, c, 3) - 0.5) * 0.03 * torch.arange(c - 1, -1, -1)[:, None]
    batch = {
        "rgb": rand(b, 3, s, s), "intrinsics": k, "extrinsics": e, "eef_pos": eef,
        "eef_start": eef + (rand(b, 3) - 0.5) * 0.1, "gripper_state": rand(b, 1) * 0.08,
        "eef_uv": geometry.project(eef[:, None], k, e)[0][:, 0],
        "target_xyz": target, "target_uv": geometry.project(target, k, e)[0],
        "target_gripper": rand(b, w) * 2 - 1, "target_rot": rand(b, w) * 2 - 1,
    }
    if config.history > 1:
        hist = rand(b, c, 3, s, s)
        hist[:, -1] = batch["rgb"]
        batch.update(history_rgb=hist, history_xyz=past,
                     history_uv=geometry.project(past, k, e)[0])
    return add_bin_targets(batch, config, stats)


def build(name: str, **kw) -> PolicyModel:
    cls = load_model_class(name)
    config = cls.config_class(**{**TINY, **EXTRA.get(name, {}), **kw})
    torch.manual_seed(0)
    return cls(config, make_stats())


def test_zoo_names():
    assert set(MODELS) == {"para", "ar", "voxel_abs", "voxel_rel", "act"}
    for name in MODELS:
        cls = load_model_class(name)
        assert cls.name == name
        assert cls.config_class.__name__.endswith("Config")
    assert load_model_class("voxel_rel").config_class().relative
    assert not load_model_class("voxel_abs").config_class().relative
    with pytest.raises(KeyError):
        load_model_class("nope")


def test_batch_is_in_view():
    config = load_model_class("para").config_class(**TINY)
    batch = make_batch(config, make_stats())
    for key in ("eef_uv", "target_uv"):
        assert (batch[key] > 0).all() and (batch[key] < S - 1).all(), key


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_backward_and_predict(name: str):
    model = build(name)
    batch = make_batch(model.config, model.stats)
    loss, parts = model.loss(batch)
    assert torch.isfinite(loss) and parts["loss"] == pytest.approx(loss.item())
    loss.backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no grad for {pname}"
    model.eval()
    out = model.predict(batch)
    b = batch["rgb"].shape[0]
    assert out["xyz"].shape == (b, W, 3) and out["gripper"].shape == (b, W)
    assert out["rot"].shape == (b, W)
    if "uv" in out:
        assert out["uv"].shape == (b, W, 2)
    for v in out.values():
        assert torch.isfinite(v).all()
    assert (out["gripper"].abs() <= 1.0 + 1e-6).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tiny_model_overfits(name: str):
    model = build(name)
    batch = make_batch(model.config, model.stats, b=4, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first, t0 = None, time.perf_counter()
    for _ in range(400):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
        if loss.item() < first / 100 or time.perf_counter() - t0 > 20:
            break
    assert loss.item() < first / 10, f"{name}: {first:.3f} -> {loss.item():.3f}"
    # the fitted model decodes its own training targets: pixel within a cell, height within
    # a bin, gripper and rotation bins (almost all) exact
    model.eval()
    out = model.predict(batch)
    c, st = model.config, model.stats
    cell_px = S / getattr(c, "voxel_grid", c.grid)
    bin_m = (st.height_hi - st.height_lo) / getattr(c, "voxel_heights", c.n_height_bins)
    uv_err = (out["uv"] - batch["target_uv"]).norm(dim=-1).median().item()
    z_err = (out["xyz"][..., 2] - batch["target_xyz"][..., 2]).abs().median().item()
    assert uv_err <= cell_px, f"{name}: median uv error {uv_err:.2f} px"
    assert z_err <= bin_m, f"{name}: median height error {z_err:.3f} m"
    grip_ok = torch.isclose(out["gripper"], model.decode_gripper(batch["target_gripper_bin"]))
    rot_ok = torch.isclose(out["rot"], model.decode_rot(batch["target_rot_bin"]))
    assert grip_ok.float().mean() >= 0.9 and rot_ok.float().mean() >= 0.9, name


def test_para_joint_volume_trains():
    model = build("para", volume="joint")
    batch = make_batch(model.config, model.stats)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(batch)[0].item()
    for _ in range(60):
        loss, parts = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 3 and parts["cell_acc"] > 0.5
    assert model.predict(batch)["xyz"].shape == (4, W, 3)


def test_para_factored_volume_is_a_distribution():
    model = build("para")
    feats = model.features(make_batch(model.config, model.stats))
    vol = model.volume_logits(feats)
    assert vol.shape == (4, W, model.config.n_height_bins, GRID, GRID)
    assert torch.allclose(vol.flatten(2).logsumexp(-1), torch.zeros(4, W), atol=1e-4)


def test_para_sees_the_eef_height_only_when_eef_height_is_on():
    """Two batches that differ only in the EEF's height (same pixel, same image): para's
    feature map differs with ``eef_height`` and is identical without it."""
    for on in (True, False):
        model = build("para", eef_height=on)
        batch = make_batch(model.config, model.stats, b=2)
        higher = {**batch, "eef_pos": batch["eef_pos"] + torch.tensor([0.0, 0.0, 0.05])}
        same = torch.equal(model.features(batch), model.features(higher))
        assert same != on


def test_voxel_autoregressive_off_trains():
    model = build("voxel_rel", autoregressive=False)
    loss, _ = model.loss(make_batch(model.config, model.stats))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.predict(make_batch(model.config, model.stats))["xyz"].shape == (4, W, 3)


def test_voxel_offset_head_decodes_between_height_levels():
    """A fitted voxel model places points by its offsets, not at the level centres: with
    centres only, heights uniform within a level are off by a quarter level at the median."""
    model = build("voxel_abs")
    batch = make_batch(model.config, model.stats, b=4, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss, parts = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    z = model.predict(batch)["xyz"][..., 2]
    spacing = model.level_spacing()
    z_err = (z - batch["target_xyz"][..., 2]).abs().median().item()
    assert parts["offset"] < 0.05 and z_err < spacing / 8, (parts["offset"], z_err, spacing)
    centres = model.voxel_heights()
    assert not torch.isclose(z.flatten()[:, None], centres[None], atol=1e-4).any(1).all()


# ---------------------------------------------------------------------------- geometry
def test_ar_reuses_the_current_frame_for_identical_past_frames():
    """The past frames' features: one backbone pass per distinct frame, a past frame equal
    to the current one reuses its features; the context equals running every frame."""
    model = build("ar", history=3)
    model.eval()
    batch = make_batch(model.config, model.stats, b=3)
    hist = batch["history_rgb"].clone()
    hist[0, :2] = hist[0, 2]  # an episode's first decision: every past frame is the current
    hist[1, 0] = hist[1, 2]  # one of two
    batch["history_rgb"] = hist
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    with torch.no_grad():
        ctx, cur, keys = model.encode(batch)
        model.config.history_grad = True  # the reference: every frame through the backbone
        ref = model.encode(batch)
    assert calls[:2] == [3, 3]  # current frames, then 6 past frames less the 3 copies
    assert torch.allclose(ctx, ref[0], atol=1e-5)
    assert torch.allclose(cur, ref[1]) and torch.allclose(keys, ref[2])


def test_shift_images_pads_with_the_border_and_crops():
    """Each image moves by its own (du, dv), the border row / column filling the gap."""
    import torch.nn.functional as F

    from para_bench.training.augment import shift_images

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (5, 2, 3, 12, 12), dtype=torch.uint8, generator=g)
    du, dv = torch.tensor([3, -3, 0, 1, -2]), torch.tensor([0, 2, -3, 3, -1])
    out = shift_images(x, du, dv, pad=3)
    padded = F.pad(x.flatten(1, 2).float(), (3, 3, 3, 3), mode="replicate")
    for i in range(5):
        r, c = 3 - int(dv[i]), 3 - int(du[i])
        want = padded[i, :, r:r + 12, c:c + 12].to(torch.uint8).view(2, 3, 12, 12)
        assert torch.equal(out[i], want), i
    assert out.dtype == torch.uint8 and torch.equal(out[2, :, :, :, 0], x[2, :, :, 3:, 0][
        ..., [*range(9), 8, 8, 8]])  # moved up by 3: the bottom row repeats
    with pytest.raises(ValueError):
        shift_images(x, du * 2, dv, pad=3)


def test_ray_at_height_inverts_project():
    config = load_model_class("para").config_class(**TINY)
    batch = make_batch(config, make_stats(), b=3)
    k, e = batch["intrinsics"], batch["extrinsics"]
    uv = torch.rand(3, 10, 2) * (S - 1)
    h = 0.9 + torch.rand(3, 10) * 0.3
    xyz = geometry.ray_at_height(uv, h, k, e)
    assert torch.allclose(xyz[..., 2], h, atol=1e-4)
    assert torch.allclose(geometry.project(xyz, k, e)[0], uv, atol=1e-3)


def test_cells_and_bins_round_trip():
    cells = torch.arange(GRID * GRID)
    uv = geometry.cell_to_uv(cells, GRID, S)
    assert torch.equal(geometry.uv_to_cell(uv, GRID, S), cells)
    # every pixel of a cell maps to it; its centre is inside the cell's pixel span
    px = torch.stack(torch.meshgrid(torch.arange(S), torch.arange(S), indexing="xy"), -1)
    c = geometry.uv_to_cell(px.reshape(-1, 2).float(), GRID, S)
    assert (geometry.cell_to_uv(c, GRID, S) - px.reshape(-1, 2)).abs().max() <= S / GRID / 2
    b = torch.arange(16)
    v = geometry.bin_to_value(b, 0.9, 1.3, 16)
    assert torch.equal(geometry.value_to_bin(v, 0.9, 1.3, 16), b)
    x = 0.9 + torch.rand(100) * 0.4
    err = (geometry.bin_to_value(geometry.value_to_bin(x, 0.9, 1.3, 16), 0.9, 1.3, 16) - x)
    assert err.abs().max() <= 0.4 / 16 / 2 + 1e-6
    assert geometry.value_to_bin(torch.tensor([0.0, 5.0]), 0.9, 1.3, 16).tolist() == [0, 15]


def test_voxel_xyz_projects_to_cell_centres():
    config = load_model_class("para").config_class(**TINY)
    batch = make_batch(config, make_stats(), b=2)
    heights = torch.tensor([0.9, 1.0, 1.1])
    vox = geometry.voxel_xyz(batch["intrinsics"], batch["extrinsics"], 4, S, heights)
    assert vox.shape == (2, 16, 3, 3)
    uv = geometry.project(vox.reshape(2, -1, 3), batch["intrinsics"], batch["extrinsics"])[0]
    centres = geometry.grid_uv(4, S)[:, None].expand(-1, 3, -1).reshape(-1, 2)
    assert torch.allclose(uv, centres.expand(2, -1, -1), atol=1e-3)


def test_unknown_backbone_raises():
    with pytest.raises(ValueError):
        build("para", backbone="resnet")
