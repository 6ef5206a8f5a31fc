"""The evidence transformer (signxai/text_demo.py), token flipping (signxai/metrics/token_flipping.py) and the text
faithfulness study (docs/transformers.md#text-faithfulness)."""
import numpy as np
import pytest
import torch

from signxai import text_demo
from signxai.metrics import token_flipping
from signxai.metrics._common import softmax

ATTN = text_demo.METHODS[0][0]


@pytest.fixture(scope="module")
def model():
    return text_demo.load_model()


def label_by_rule(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The task's label and evidence read back from the ids alone (docs/transformers.md#text-faithfulness): 1 where
    the positive evidence words outnumber the negative ones."""
    positive, negative = np.isin(ids, text_demo.POSITIVE), np.isin(ids, text_demo.NEGATIVE)
    return (positive.sum(axis=1) > negative.sum(axis=1)).astype(np.int64), positive | negative


def test_task_labels_and_evidence_follow_the_stated_rule():
    ids, labels, evidence = text_demo.make_sequences(300, np.random.RandomState(7))
    assert ids.shape == (300, text_demo.LENGTH) and ids.dtype == np.int64
    assert 0 <= ids.min() and ids.max() < text_demo.VOCAB
    by_rule, evidence_by_rule = label_by_rule(ids)
    assert np.array_equal(labels, by_rule) and np.array_equal(evidence, evidence_by_rule)
    assert 0.4 < labels.mean() < 0.6
    counts = evidence.sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= 2 * text_demo.MAX_EVIDENCE and not evidence[:, -1].any()
    assert (ids == text_demo.PAD).any()
    again = text_demo.make_sequences(300, np.random.RandomState(7))
    assert all(np.array_equal(a, b) for a, b in zip((ids, labels, evidence), again))


def test_stored_model_has_its_recorded_held_out_accuracy(model):
    net, accuracy = model
    ids, labels, _ = text_demo.load_test_sequences()
    assert ids.shape == (500, text_demo.LENGTH)
    with torch.no_grad():
        predicted = net(torch.from_numpy(ids)).argmax(1).numpy()
    assert np.mean(predicted == labels) == pytest.approx(accuracy, abs=1e-12)
    assert accuracy >= 0.9


def test_token_flipping_curves_pad_and_random(model):
    net, _ = model
    ids, _, _ = text_demo.load_test_sequences(3)
    with torch.no_grad():
        p = softmax(net(torch.from_numpy(ids)).numpy())
    maps = np.random.RandomState(1).standard_normal(ids.shape)
    pad = token_flipping(net, ids, maps, replacement=text_demo.PAD)
    assert np.array_equal(pad.fractions, np.arange(49) / 48)
    np.testing.assert_allclose(pad.curves[:, 0], p.max(axis=1), rtol=0, atol=1e-6)
    with torch.no_grad():  # the last step: every token is PAD
        p_pad = softmax(net(torch.full((1, text_demo.LENGTH), text_demo.PAD)).numpy())[0]
    np.testing.assert_allclose(pad.curves[:, -1], p_pad[pad.targets], rtol=0, atol=1e-6)
    # step 1 removes exactly the most relevant token
    first = ids.copy()
    first[np.arange(3), maps.argmax(axis=1)] = text_demo.PAD
    with torch.no_grad():
        p_first = softmax(net(torch.from_numpy(first)).numpy())
    np.testing.assert_allclose(pad.curves[:, 1], p_first[np.arange(3), pad.targets], rtol=0, atol=1e-6)
    np.testing.assert_allclose(pad.random_curves[:, 0], pad.curves[:, 0], rtol=0, atol=0)
    random = token_flipping(net, ids, maps, replacement="random", vocabulary=text_demo.VOCAB, seed=3)
    # one replacement sequence for every sequence: at the end each has the same probability of class 1
    last = np.where(random.targets == 1, random.curves[:, -1], 1 - random.curves[:, -1])
    assert np.ptp(last) < 1e-9 and np.ptp(random.curves[:, 1]) > 0
    one = token_flipping(net, ids[1:2], maps[1:2], replacement="random", vocabulary=text_demo.VOCAB, seed=3)
    np.testing.assert_allclose(one.curves, random.curves[1:2], rtol=0, atol=1e-6)  # independent of the batch


def test_token_flipping_refuses_bad_input(model):
    net, _ = model
    ids, _, _ = text_demo.load_test_sequences(2)
    maps = np.zeros(ids.shape)
    with pytest.raises(ValueError, match="integer token ids"):
        token_flipping(net, ids.astype(np.float32), maps)
    with pytest.raises(ValueError, match="needs vocabulary"):
        token_flipping(net, ids, maps, replacement="random")
    with pytest.raises(ValueError, match="replacement must be a non-negative token id"):
        token_flipping(net, ids, maps, replacement=-1)
    with pytest.raises(ValueError, match="R has shape"):
        token_flipping(net, ids, maps[:, :5])


def test_command_writes_tables_curves_and_arrays(tmp_path, model):
    assert text_demo.main([str(tmp_path), "--n", "2", "--seeds", "0"]) == 0
    table = (tmp_path / "faithfulness.md").read_text(encoding="utf-8")
    labels = [label for label, _, _ in text_demo.METHODS] + [text_demo.RANDOM_ROW]
    for label in labels[1:-1]:
        assert table.count(f"| {label} | ") == 6  # flipping, paired difference, localisation; pad and random
    assert table.count(f"| {ATTN} | ") == 4  # the reference of the paired differences
    assert table.count(f"| {text_demo.RANDOM_ROW} | ") == 2 and table.count("| random map (baseline) | ") == 2
    assert "first 2 held-out sequences" in table and "seeds 0)" in table
    assert (tmp_path / "faithfulness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ids, _, evidence = text_demo.load_test_sequences(2)
    with torch.no_grad():
        p_top = softmax(model[0](torch.from_numpy(ids)).numpy()).max(axis=1)
    with np.load(tmp_path / "faithfulness.npz") as data:
        fractions = data["fractions"]
        assert np.array_equal(fractions, np.arange(49) / 48)
        assert np.array_equal(data["ids"], ids) and np.array_equal(data["evidence"], evidence)
        for kind in text_demo.REPLACEMENTS:
            for label in labels:
                morf, lerf = data[f"{kind}/morf_curve:{label}"], data[f"{kind}/lerf_curve:{label}"]
                assert morf.shape == lerf.shape == (2, 49)
                np.testing.assert_allclose(morf[:, 0], p_top, rtol=0, atol=1e-6)  # the unperturbed sequence
                np.testing.assert_allclose(lerf[:, 0], p_top, rtol=0, atol=1e-6)
                np.testing.assert_allclose(morf[:, -1], lerf[:, -1], rtol=0, atol=1e-6)  # all replaced
                auc = lambda c: (0.5 * (c[:, 1:] + c[:, :-1]) * np.diff(fractions)).sum(axis=1)  # noqa: E731
                np.testing.assert_allclose(data[f"{kind}/morf:{label}"], auc(morf), rtol=0, atol=1e-12)
                np.testing.assert_allclose(data[f"{kind}/lerf:{label}"], auc(lerf), rtol=0, atol=1e-12)
                expected = data[f"{kind}/lerf:{label}"] - data[f"{kind}/morf:{label}"] \
                    if label != text_demo.RANDOM_ROW else 0
                np.testing.assert_allclose(data[f"{kind}/abpc:{label}"], expected, rtol=0, atol=1e-12)
                maps = data[f"{kind}/maps:{label}"]
                assert maps.shape == (2, text_demo.LENGTH)
                localised = text_demo.localisation(maps, evidence)
                np.testing.assert_array_equal(data[f"{kind}/auroc:{label}"], localised["auroc"])
        np.testing.assert_array_equal(data[f"pad/maps:{ATTN}"], data[f"random/maps:{ATTN}"])


def test_study_is_deterministic_and_averages_the_random_seeds():
    methods = text_demo.METHODS[3:4]  # input × gradient
    label = methods[0][0]

    def abpc(seeds):
        return text_demo.faithfulness_study(2, "random", seeds=seeds, methods=methods)["rows"][label]["abpc"]

    one = [abpc((s,)) for s in (0, 1)]
    both, again = abpc((0, 1)), abpc((0, 1))
    assert np.array_equal(both, again)
    np.testing.assert_allclose(both, (one[0] + one[1]) / 2, rtol=0, atol=1e-12)


def test_localisation_scores():
    evidence = np.array([[True, False, False, True]])
    assert text_demo.localisation(np.array([[3.0, 0.0, -1.0, -2.0]]), evidence)["auroc"][0] == 1.0
    assert text_demo.localisation(np.array([[3.0, 0.0, -1.0, -2.0]]), evidence)["mass"][0] == pytest.approx(5 / 6)
    assert text_demo.localisation(np.array([[1.0, 1.0, 1.0, 1.0]]), evidence)["auroc"][0] == 0.5
    assert text_demo.localisation(np.array([[0.0, 2.0, 1.0, 0.5]]), evidence)["auroc"][0] == 0.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n must be between 1 and 500"):
        text_demo.faithfulness_study(0)
    with pytest.raises(ValueError, match="replacement must be one of"):
        text_demo.faithfulness_study(2, "uniform")
    with pytest.raises(ValueError, match="seeds must name at least one seed"):
        text_demo.faithfulness_study(2, "random", seeds=())


@pytest.mark.slow
def test_attnlrp_localises_the_evidence_and_is_faithful_on_100_sequences():
    """What holds robustly (docs/transformers.md#text-faithfulness), PAD replacement, 100 held-out sequences:
    AttnLRP-ε puts its relevance on the planted evidence far above chance (AUROC and mass, by more than 5 standard
    errors), its ABPC is positive and above the gradient's, input × gradient's and integrated gradients' by more than
    2 standard errors of the paired per-sequence difference."""
    study = text_demo.faithfulness_study(100, "pad")
    rows = study["rows"]
    chance = study["evidence"].mean(axis=1)
    for key, level in (("auroc", 0.5), ("mass", chance)):
        excess = rows[ATTN][key] - level
        assert excess.mean() > 5 * excess.std(ddof=1) / np.sqrt(len(excess)), key
    abpc = rows[ATTN]["abpc"]
    assert abpc.mean() > 5 * abpc.std(ddof=1) / np.sqrt(len(abpc))
    for label in ("gradient (norm per token)", "input × gradient", "integrated gradients (50 steps, zero embedding)"):
        mean, se = text_demo.paired_difference(study, label)
        assert mean > 2 * se, (label, mean, se)
    assert rows[ATTN]["morf"].mean() < rows[text_demo.RANDOM_ROW]["morf"].mean()


def test_token_flipping_gives_the_same_curves_on_the_keras_and_pytorch_text_twins():
    from text_twins import VOCAB, text_twin

    keras_model, torch_model, ids = text_twin(n=3)
    maps = np.random.RandomState(2).standard_normal(ids.shape)
    for options in (dict(replacement=0), dict(replacement="random", vocabulary=VOCAB, seed=5)):
        rt = token_flipping(torch_model, ids, maps, **options)
        rk = token_flipping(keras_model, ids, maps, **options)
        assert np.array_equal(rt.targets, rk.targets)
        np.testing.assert_allclose(rk.curves, rt.curves, rtol=0, atol=1e-5)
        np.testing.assert_allclose(rk.random_curves, rt.random_curves, rtol=0, atol=1e-5)
    # a method name is explained here, for the predicted class, as calculate_relevancemaps does for ids
    from signxai.api import calculate_relevancemaps

    by_name = token_flipping(torch_model, ids, "lrp_epsilon_0_1", random_baseline=False)
    given = token_flipping(torch_model, ids, calculate_relevancemaps(torch_model, ids, "lrp_epsilon_0_1"),
                           random_baseline=False)
    np.testing.assert_array_equal(by_name.curves, given.curves)
