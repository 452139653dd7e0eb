"""Checkpoint files and checkpoint sets: round trips, corruption, selection."""

import pytest
import torch
from torch import nn

from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.checkpoints import CheckpointCorruptError, save_model_checkpoint


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def _save(directory, name, model, epoch, role, run_id="r"):
    return save_model_checkpoint(directory, name, model, run_id=run_id, epoch=epoch, step=10 * epoch,
                                 role=role)


def test_round_trip_separates_parameters_and_buffers(tmp_path):
    model = _net()
    model(torch.randn(2, 1, 8, 8))  # give BN non-trivial running stats
    path = _save(tmp_path / "checkpoints", "epoch_0001", model, 1, "epoch")
    ckpt = CheckpointSet.from_paths([path]).load(0)
    assert set(ckpt.params) == {n for n, _ in model.named_parameters()}
    assert set(ckpt.buffers) == {n for n, _ in model.named_buffers()}
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.state_dict[k], v)
    clone = ckpt.load_into(_net(seed=1))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(clone.eval()(x), model.eval()(x))
    assert ckpt.ref.epoch == 1 and ckpt.ref.step == 10 and ckpt.ref.role == "epoch"


def test_corrupt_weights_are_detected(tmp_path):
    path = _save(tmp_path, "c", _net(), 1, "final")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside a tensor: the file still parses, the hash does not match
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match="SHA-256"):
        CheckpointSet.from_paths([path]).load(0)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointCorruptError):
        CheckpointSet.from_paths([path]).load(0)


def test_truncated_file_without_hash_check_is_still_reported(tmp_path):
    path = _save(tmp_path, "c", _net(), 1, "final")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointCorruptError):
        CheckpointSet.from_paths([path])[0].load(verify=False)


def test_run_set_orders_filters_and_skips_incomplete(tmp_path):
    run = tmp_path / "run"
    model = _net()
    for epoch in (3, 1, 2):
        _save(run / "checkpoints", f"epoch_{epoch:04d}", model, epoch, "epoch")
    _save(run / "checkpoints", "final", model, 3, "final")
    # a weights file whose sidecar was never written (killed mid-save) is ignored
    (run / "checkpoints" / "epoch_0004.safetensors").write_bytes(b"partial")
    everything = CheckpointSet.from_run(run)
    assert everything.epochs == [1, 2, 3, 3]
    assert CheckpointSet.from_run(run, role="epoch").epochs == [1, 2, 3]
    assert CheckpointSet.from_run(run, role="final").roles == ["final"]
    assert CheckpointSet.from_run(run, epochs=[2, 3], role="epoch").epochs == [2, 3]
    assert len(everything[1:3]) == 2
    assert [c.ref.epoch for c in CheckpointSet.from_run(run, role="epoch").load_all()] == [1, 2, 3]


def test_sets_from_several_runs_and_devices(tmp_path):
    for seed in (0, 1):
        _save(tmp_path / f"s{seed}" / "checkpoints", "final", _net(seed), 5, "final", run_id=f"s{seed}")
    members = CheckpointSet.from_runs([tmp_path / "s0", tmp_path / "s1"], role="final")
    assert [r.run_id for r in members] == ["s0", "s1"]
    assert members.select(run_id="s1")[0].run_id == "s1"
    loaded = members.load(1, device="cpu")
    assert all(t.device.type == "cpu" for t in loaded.params.values())


def test_missing_run_dir_and_missing_sidecar(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        CheckpointSet.from_run(tmp_path)
    path = _save(tmp_path, "x", _net(), 1, "final")
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        CheckpointSet.from_paths([path])
