"""Ensemble prediction: averaging against hand computations, vmap against the loop, checkpoints."""

import copy

import pytest
import torch
from torch import nn

from losslab.ensembles.predict import Ensemble
from losslab.models import create_model
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.checkpoints import save_model_checkpoint

D = torch.float64


def _bn_mlp(seed: int, hidden: int = 8, classes: int = 4) -> nn.Module:
    """A small float64 MLP with BatchNorm whose running statistics are not the initial 0/1."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                      nn.Linear(hidden, classes)).to(D)
    with torch.no_grad():
        m.train()(2.0 * torch.randn(32, 6, dtype=D) + 1.0)
    return m.eval()


def _small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8).to(D)
    with torch.no_grad():
        m.train()(torch.randn(16, 1, 8, 8, dtype=D) + 0.5)
    return m.eval()


def _x(*shape, seed=100):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=D)


def _snapshot(module: nn.Module):
    return module.training, {k: v.clone() for k, v in module.state_dict().items()}


def _unchanged(module: nn.Module, snap) -> bool:
    training, state = snap
    now = module.state_dict()
    return (module.training == training and now.keys() == state.keys()
            and all(torch.equal(now[k], state[k]) and now[k].dtype == state[k].dtype
                    for k in state))


@torch.no_grad()
def _hand_logits(members, x):
    return [m.eval()(x) for m in members]


def test_probability_average_matches_hand_computation():
    members = [_bn_mlp(s) for s in range(3)]
    x = _x(5, 6)
    ens = Ensemble(members)
    expected = sum(z.softmax(-1) for z in _hand_logits(members, x)) / 3
    out = ens(x)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.sum(-1), torch.ones(5, dtype=D), rtol=0, atol=1e-12)
    torch.testing.assert_close(ens.predict_proba(x), expected, rtol=0, atol=1e-12)
    assert ens.output == "probabilities" and ens.combine == "probs"
    assert "averages probabilities" in repr(ens) and "3 members" in repr(ens)
    assert "vectorized" in repr(ens) and ens.vectorized
    with pytest.raises(AttributeError):
        ens.output = "logits"


def test_logit_average_and_its_probabilities():
    members = [_bn_mlp(s) for s in range(3)]
    x = _x(5, 6)
    ens = Ensemble(members, combine="logits")
    expected = sum(_hand_logits(members, x)) / 3
    torch.testing.assert_close(ens(x), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(ens.predict_proba(x), expected.softmax(-1), rtol=0, atol=1e-12)
    assert ens.output == "logits" and "averages logits" in repr(ens)
    member = ens.member_logits(x)
    assert member.shape == (3, 5, 4)
    torch.testing.assert_close(member, torch.stack(_hand_logits(members, x)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("vectorize", [True, False])
def test_weights_give_the_hand_weighted_average(vectorize):
    members = [_bn_mlp(s) for s in range(3)]
    x = _x(4, 6)
    raw = [1.0, 2.0, 5.0]
    logits = _hand_logits(members, x)
    probs = Ensemble(members, weights=raw, vectorize=vectorize)
    expected = sum(w / 8 * z.softmax(-1) for w, z in zip(raw, logits, strict=True))
    torch.testing.assert_close(probs(x), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(probs.weights, torch.tensor([1 / 8, 2 / 8, 5 / 8], dtype=D))
    assert "weights=" in repr(probs)
    mean_logits = Ensemble(members, combine="logits", weights=torch.tensor(raw),
                           vectorize=vectorize)
    expected = sum(w / 8 * z for w, z in zip(raw, logits, strict=True))
    torch.testing.assert_close(mean_logits(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("weights, match", [([1.0, -1.0, 1.0], "non-negative"),
                                            ([1.0, 1.0], "3 \\(one per member\\)"),
                                            ([0.0, 0.0, 0.0], "sum to zero"),
                                            ([1.0, float("nan"), 1.0], "finite")])
def test_bad_weights_are_refused(weights, match):
    with pytest.raises(ValueError, match=match):
        Ensemble([_bn_mlp(s) for s in range(3)], weights=weights)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="combine"):
        Ensemble([_bn_mlp(0)], combine="mean")
    with pytest.raises(ValueError, match="chunk_size"):
        Ensemble([_bn_mlp(0)], chunk_size=0)
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
    with pytest.raises(TypeError, match="member 1"):
        Ensemble([_bn_mlp(0), "not a module"])


@pytest.mark.parametrize("build, shape", [(_bn_mlp, (7, 6)), (_small_cnn, (7, 1, 8, 8))])
def test_vectorized_and_looped_prediction_agree(build, shape):
    members = [build(s) for s in range(4)]
    snaps = [_snapshot(m) for m in members]
    x = _x(*shape)
    vec = Ensemble(members, vectorize=True)  # always vmap
    stacked = Ensemble(members)  # stacked weights; on a CPU a loop over them
    loop = Ensemble(members, vectorize=False)
    chunked = Ensemble(members, vectorize=True, chunk_size=3)
    assert vec.vectorized and stacked.vectorized and chunked.vectorized and not loop.vectorized
    assert "looped (vectorize=False)" in repr(loop) and "chunk_size=3" in repr(chunked)
    assert "a loop over the stacked weights on CPU" in repr(stacked)
    for combine in ("probs", "logits"):
        vec._combine = loop._combine = chunked._combine = stacked._combine = combine
        torch.testing.assert_close(vec(x), loop(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(stacked(x), loop(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(chunked(x), loop(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(vec.member_logits(x), torch.stack(_hand_logits(members, x)),
                               rtol=0, atol=1e-12)
    assert all(_unchanged(m, s) for m, s in zip(members, snaps, strict=True))


def test_train_mode_has_no_effect_members_use_running_statistics():
    members = [_bn_mlp(s) for s in range(2)]
    x = _x(3, 6)
    expected = sum(z.softmax(-1) for z in _hand_logits(members, x)) / 2
    for ens in (Ensemble(members), Ensemble(members, vectorize=False)):
        ens.train()
        assert not ens.training
        assert not any(m.training for m in ens.modules())
        torch.testing.assert_close(ens(x), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(ens(x[:1]), expected[:1], rtol=0, atol=1e-12)  # batch of one


def _write_checkpoints(directory, members):
    paths = [save_model_checkpoint(directory, f"member_{i}", m, run_id="r", epoch=i, step=i,
                                   role="snapshot") for i, m in enumerate(members)]
    return CheckpointSet.from_paths(paths)


def test_from_checkpoints_equals_building_from_modules(tmp_path):
    members = [_small_cnn(s) for s in range(3)]
    checkpoints = _write_checkpoints(tmp_path, members)
    template = _small_cnn(99).train()
    snap = _snapshot(template)
    x = _x(6, 1, 8, 8)
    reference = Ensemble(members)(x)
    loaded = list(checkpoints.load_all())
    from_loaded = Ensemble.from_checkpoints(template, loaded)
    assert from_loaded.vectorized and from_loaded.num_members == 3
    torch.testing.assert_close(from_loaded(x), reference, rtol=0, atol=1e-12)
    from_dicts = Ensemble.from_checkpoints(template, [m.state_dict() for m in members])
    torch.testing.assert_close(from_dicts(x), reference, rtol=0, atol=1e-12)
    from_refs = Ensemble.from_checkpoints(template, checkpoints, chunk_size=2)
    torch.testing.assert_close(from_refs(x), reference, rtol=0, atol=1e-12)
    looped = Ensemble.from_checkpoints(template, checkpoints.load_all(), vectorize=False,
                                       combine="logits")
    assert not looped.vectorized
    torch.testing.assert_close(looped(x), Ensemble(members, combine="logits")(x),
                               rtol=0, atol=1e-12)
    assert _unchanged(template, snap)


def test_from_checkpoints_with_a_meta_template_and_mismatches():
    members = [_bn_mlp(s) for s in range(2)]
    with torch.device("meta"):
        template = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                 nn.Linear(8, 4)).to(D)
    x = _x(3, 6)
    ens = Ensemble.from_checkpoints(template, [m.state_dict() for m in members])
    torch.testing.assert_close(ens(x), Ensemble(members)(x), rtol=0, atol=1e-12)
    state = members[0].state_dict()
    missing = {k: v for k, v in state.items() if k != "1.running_mean"}
    with pytest.raises(ValueError, match=r"checkpoint 1 .*missing \['1.running_mean'\]"):
        Ensemble.from_checkpoints(template, [state, missing])
    wrong = {**state, "0.weight": torch.zeros(8, 5, dtype=D)}
    with pytest.raises(ValueError, match="'0.weight' has shape"):
        Ensemble.from_checkpoints(template, [wrong])
    with pytest.raises(ValueError, match="no checkpoints"):
        Ensemble.from_checkpoints(template, [])


def test_to_dtype_and_device_and_state_dict_round_trip():
    members = [_small_cnn(s) for s in range(3)]
    snaps = [_snapshot(m) for m in members]
    x = _x(4, 1, 8, 8)
    ens = Ensemble(members, weights=[1, 1, 2])
    expected = ens(x)
    looped32 = Ensemble(members, weights=[1, 1, 2], vectorize=False).float()
    torch.testing.assert_close(looped32(x.float()), expected.float(), rtol=1e-4, atol=1e-5)
    assert ens.to("cpu") is ens
    ens32 = copy.deepcopy(ens).float()
    assert all(t.dtype == torch.float32 for t in ens32.stacked_params.buffers())
    assert ens32.weights.dtype == torch.float32
    out32 = ens32(x.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, expected.float(), rtol=1e-4, atol=1e-5)
    assert ens32.to(D)(x).dtype == D
    keys = set(ens.state_dict())
    assert "weights" in keys and "stacked_params.classifier.weight" in keys
    assert "stacked_buffers.features.0.1.running_mean" in keys
    other = Ensemble([_small_cnn(s) for s in range(10, 13)], weights=[1, 1, 2])
    other.load_state_dict(ens.state_dict())
    torch.testing.assert_close(other(x), expected, rtol=0, atol=0)
    assert all(_unchanged(m, s) for m, s in zip(members, snaps, strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_moves_to_cuda():
    members = [_small_cnn(s) for s in range(3)]
    x = _x(4, 1, 8, 8)
    expected = Ensemble(members)(x)
    ens = Ensemble(members).to("cuda")
    torch.testing.assert_close(ens(x.cuda()).cpu(), expected, rtol=0, atol=1e-10)


def test_diverse_architectures_fall_back_to_the_loop():
    members = [_bn_mlp(0), _bn_mlp(1, hidden=16), _bn_mlp(2)]
    torch.manual_seed(3)
    members.append(nn.Sequential(nn.Linear(6, 4)).to(D).eval())
    snaps = [_snapshot(m) for m in members]
    x = _x(5, 6)
    ens = Ensemble(members, weights=[1, 2, 3, 4])
    assert not ens.vectorized and "looped (diverse architectures)" in repr(ens)
    logits = _hand_logits(members, x)
    expected = sum(w / 10 * z.softmax(-1) for w, z in zip([1, 2, 3, 4], logits, strict=True))
    torch.testing.assert_close(ens(x), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"member 1 differs from member 0: parameter '0.weight'"):
        Ensemble(members, vectorize=True)
    with pytest.raises(ValueError, match="member 3 differs .*parameter names differ"):
        Ensemble([members[0], members[0], members[2], members[3]], vectorize=True)
    assert all(_unchanged(m, s) for m, s in zip(members, snaps, strict=True))


def test_same_shapes_but_different_settings_are_not_vectorized():
    torch.manual_seed(0)
    # Same tensors (the stride has none): a runs on 5x5 inputs, b on 7x7, both give 2x3x3.
    a = nn.Sequential(nn.Conv2d(1, 2, 3, stride=1), nn.Flatten(), nn.Linear(18, 3)).to(D)
    b = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(18, 3)).to(D)
    ens = Ensemble([a, b], combine="logits")
    assert not ens.vectorized
    with pytest.raises(ValueError, match="submodule '0'"):
        Ensemble([a, b], vectorize=True)


def test_members_must_predict_the_same_number_of_classes():
    ens = Ensemble([_bn_mlp(0, classes=4), _bn_mlp(1, classes=5)])
    with pytest.raises(ValueError,
                       match="same number of classes: member 0 gives 4, member 1 gives 5"):
        ens(_x(2, 6))
