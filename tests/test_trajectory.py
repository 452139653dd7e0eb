"""A training trajectory on its PCA plane (Li et al. 2018, §7), from a real run directory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from losslab.landscape.grid import make_axis
from losslab.landscape.pca import project
from losslab.landscape.trajectory import auto_range, trajectory_plane
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.checkpoints import save_model_checkpoint


def make_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 5, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return [(x[:24], y[:24]), (x[24:], y[24:])]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny MLP trained by SGD (momentum) for 18 steps, a role-"epoch" checkpoint every 3
    steps, and the final weights once more as a "snapshot" (a member to project)."""
    root = tmp_path_factory.mktemp("traj") / "run"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    batches = make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    ckdir = root / "checkpoints"
    for epoch in range(7):
        save_model_checkpoint(ckdir, f"e{epoch:02d}", model, run_id="run", epoch=epoch,
                              step=3 * epoch, role="epoch")
        if epoch == 6:
            break
        for _ in range(3):
            for x, y in batches:
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
    save_model_checkpoint(ckdir, "snap_a", model, run_id="run", epoch=6, step=18, role="snapshot")
    return root, model, batches


def test_trajectory_plane(run):
    root, model, batches = run
    traj = CheckpointSet.from_run(root, role="epoch")
    assert traj.epochs == list(range(7))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    members = CheckpointSet.from_run(root, role="snapshot") + traj[:1]
    plane = trajectory_plane(model, traj, batches=batches, grid=9, members=members)

    assert plane.path_coords.shape == (7, 2)
    assert plane.path_epochs == list(range(7))
    assert torch.equal(plane.path_coords[-1], torch.zeros(2, dtype=torch.float64))
    evr = plane.pca.explained_variance_ratio
    assert torch.all((evr >= 0) & (evr <= 1)) and float(evr.sum()) <= 1 + 1e-12
    assert evr[0] >= evr[1]

    # the surface's centre is θ_final, evaluated exactly there
    s = plane.surface
    assert s.loss.shape == (9, 9) and s.metadata["directions"]["kind"] == "pca"
    final = traj.load(-1)
    logits = [functional_call(model, final.state_dict, (x,)) for x, _ in batches]
    expected = float(torch.cat([F.cross_entropy(lg, y, reduction="none")
                                for lg, (_, y) in zip(logits, batches, strict=True)]).mean())
    assert s.value_at(0.0, 0.0) == pytest.approx(expected, rel=1e-6)

    # the automatic ranges hold every path point (with room) and 0 as a grid point
    for axis, values in ((s.x, plane.path_coords[:, 0]), (s.y, plane.path_coords[:, 1])):
        assert float(axis[0]) < float(values.min()) and float(values.max()) < float(axis[-1])
        assert 0.0 in axis.tolist()

    # members: the final checkpoint (as a snapshot) is at the origin, the first at its path point
    assert plane.member_labels == ["run:snapshot@6", "run:epoch@0"]
    assert torch.equal(plane.member_coords[0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(plane.member_coords[1], plane.path_coords[0],
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(project(traj.load_all(), final, plane.pca.directions),
                               plane.path_coords, rtol=1e-5, atol=1e-5)
    # the model was never changed
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


def test_explicit_ranges_centre_index_and_resume(run, tmp_path):
    root, model, batches = run
    traj = CheckpointSet.from_run(root, role="epoch")
    plane = trajectory_plane(model, traj, point=3, batches=batches,
                             grid=((-1, 1, 5), (-0.5, 0.5, 3)), path=str(tmp_path / "surf"))
    assert plane.surface.x.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert plane.surface.y.tolist() == [-0.5, 0.0, 0.5]
    assert torch.equal(plane.path_coords[3], torch.zeros(2, dtype=torch.float64))
    assert plane.member_coords is None and plane.member_labels == []
    again = trajectory_plane(model, traj, point=3, batches=batches,
                             grid=((-1, 1, 5), (-0.5, 0.5, 3)), path=str(tmp_path / "surf"))
    torch.testing.assert_close(again.surface.loss, plane.surface.loss)
    assert again.surface.metadata["evaluated_points"] == 0  # all read back from the file


def test_auto_range():
    lo, hi, n = auto_range(torch.tensor([-0.1, 0.0, 3.0]), 11)
    assert n == 11 and lo <= -0.1 - 0.2 * 3.1 + 1e-12 and hi >= 3.0 + 0.2 * 3.1 - 1e-12
    axis = make_axis(lo, hi, n)  # 0 is a grid point, or make_axis would raise
    assert 0.0 in axis.tolist()
    lo, hi, _ = auto_range(torch.tensor([2.0, 5.0]), 10)  # all positive: made to contain 0
    assert lo < 0 < 5.0 < hi and 0.0 in make_axis(lo, hi, 10).tolist()
    assert auto_range(torch.zeros(3), 5)[:2] == pytest.approx((-1.4, 1.4))
    with pytest.raises(ValueError):
        auto_range(torch.ones(2), 2)
