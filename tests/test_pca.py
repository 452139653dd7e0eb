"""PCA directions of a trajectory (Li et al. 2018, §7) and projection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from losslab.landscape import pca_directions, project
from losslab.params import dot, norm


def rand_dict(g: torch.Generator) -> dict:
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64),
            "conv.bias": torch.randn(4, generator=g, dtype=torch.float64),
            "fc.weight": torch.randn(5, 36, generator=g, dtype=torch.float64)}


def plane_trajectory(t: int = 12, noise: float = 0.0):
    g = torch.Generator().manual_seed(0)
    final, u, v = rand_dict(g), rand_dict(g), rand_dict(g)
    a = torch.randn(t, generator=g, dtype=torch.float64) * 3
    b = torch.randn(t, generator=g, dtype=torch.float64)
    a[-1] = b[-1] = 0.0
    traj = []
    for i in range(t):
        p = {k: final[k] + a[i] * u[k] + b[i] * v[k] for k in final}
        if noise and i < t - 1:
            p = {k: w + noise * torch.randn(w.shape, generator=g, dtype=w.dtype)
                 for k, w in p.items()}
        traj.append(p)
    traj[-1] = {k: w.clone() for k, w in final.items()}
    return traj, final, u, v, a, b


def test_plane_trajectory_is_recovered():
    traj, final, u, v, a, b = plane_trajectory()
    dirs, evr, coords = pca_directions(traj, k=2)
    assert float(evr.sum()) == pytest.approx(1.0, abs=1e-10)
    assert evr[0] >= evr[1] > 0
    assert coords.shape == (12, 2) and coords.dtype == torch.float64
    assert torch.equal(coords[-1], torch.zeros(2, dtype=torch.float64))
    for i in range(2):
        assert float(norm(dirs[i])) == pytest.approx(1.0, abs=1e-12)
    assert abs(float(dot(dirs[0], dirs[1]))) < 1e-12
    for i, p in enumerate(traj):
        recon = {k: final[k] + coords[i, 0] * dirs[0][k] + coords[i, 1] * dirs[1][k] for k in p}
        for k in p:
            torch.testing.assert_close(recon[k], p[k], rtol=0, atol=1e-10)
    torch.testing.assert_close(project(traj, final, dirs), coords, rtol=0, atol=1e-10)
    # projecting on the (non-orthogonal) generating directions gives their coefficients back
    ab = project(traj, final, [u, v])
    torch.testing.assert_close(ab, torch.stack([a, b], dim=1), rtol=0, atol=1e-10)


def test_noisy_trajectory_and_checkpoint_like_inputs():
    traj, final, *_ = plane_trajectory(noise=0.01)
    ckpts = [SimpleNamespace(params={k: w.float() for k, w in p.items()}, buffers={})
             for p in traj]
    dirs, evr, coords = pca_directions(ckpts, final=ckpts[-1], k=3)
    assert len(dirs) == 3 and dirs[0]["fc.weight"].dtype == torch.float32
    assert 0.99 < float(evr[:2].sum()) < 1.0 and evr[2] < 0.01
    assert torch.equal(coords[-1], torch.zeros(3, dtype=torch.float64))
    again = pca_directions(ckpts, k=3)  # final defaults to the last point; deterministic signs
    assert all(torch.equal(d[k], e[k]) for d, e in zip(dirs, again.directions, strict=True)
               for k in d)


def test_biasbn_ignored_and_errors():
    traj, *_ = plane_trajectory()
    dirs, _, _ = pca_directions(traj, ignore="biasbn")
    assert torch.count_nonzero(dirs[0]["conv.bias"]) == 0
    assert torch.count_nonzero(dirs[0]["fc.weight"]) > 0
    with pytest.raises(ValueError, match="k must be"):
        pca_directions(traj[:2], k=3)
    with pytest.raises(ValueError, match="empty"):
        pca_directions([])
    with pytest.raises(ValueError, match="equals the final"):
        pca_directions([traj[-1], traj[-1]])


def _sklearn_pca(offsets, k):
    from sklearn.decomposition import PCA

    return PCA(n_components=k, svd_solver="full").fit(offsets)


def test_centered_pca_is_sklearns_on_a_saved_trajectory(tmp_path):
    # Li et al.'s code (loss-landscape's projection.py) fits scikit-learn's PCA to the offsets
    # θ_i − θ_final of the saved epochs; ours must give the same directions and variances.
    from losslab.runs.checkpoint_set import CheckpointSet
    from losslab.runs.config import load_config
    from losslab.train.run import train_run

    run = train_run(load_config(overrides=["epochs=5", "checkpoints.every=1", "log.progress=false",
                                       "log.tensorboard=false", "model.name=mlp"]),
                tmp_path / "run")
    traj = [c.params for c in CheckpointSet.from_run(run, role="epoch").load_all()]
    final = traj[-1]
    flat = torch.stack([torch.cat([p[n].reshape(-1).double() - final[n].reshape(-1).double()
                                   for n in final]) for p in traj]).numpy()
    ours = pca_directions(traj, k=2)
    ref = _sklearn_pca(flat, 2)
    got = torch.stack([torch.cat([d[n].reshape(-1).double() for n in final])
                       for d in ours.directions]).numpy()
    assert ours.explained_variance_ratio.numpy() == pytest.approx(
        ref.explained_variance_ratio_, abs=1e-6)
    for ours_row, ref_row in zip(got, ref.components_, strict=True):  # same sign rule
        assert abs(ours_row - ref_row).max() < 1e-6
    # the path's coordinates are the offsets' projections, θ_final at exactly 0
    assert ours.coords.numpy() == pytest.approx(flat @ got.T, abs=1e-6)
    assert torch.equal(ours.coords[-1], torch.zeros(2, dtype=torch.float64))
    # uncentred: the SVD of the offsets themselves, another plane in general
    plain = pca_directions(traj, k=2, centered=False)
    _, s, vh = torch.linalg.svd(torch.from_numpy(flat), full_matrices=False)
    assert plain.explained_variance_ratio.numpy() == pytest.approx(
        (s[:2].square() / s.square().sum()).numpy(), abs=1e-6)
    assert abs(abs(float(vh[0].numpy() @ got[0])) - 1) > 1e-6  # not the centred direction
