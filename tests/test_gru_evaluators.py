"""GRU text/motion evaluators: real shapes, word features, save/load, loss, training above chance, CLI."""

from __future__ import annotations

import gzip
import importlib.util
import pickle

import numpy as np
import pytest
import torch

from egotwin_bench.constants import HEAD_CENTRIC_DIM, MOTION_FRAMES
from egotwin_bench.training.gru_evaluators import (
    TextMotionData,
    TrainConfig,
    contrastive_loss,
    health_problem,
    motion_statistics,
    train_evaluators,
    validation_r_precision,
)
from egotwin_bench.estimators.gru_evaluators import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    EvaluatorConfig,
    MovementConvEncoder,
    TextMotionEvaluator,
)
from egotwin_bench.estimators.text_features import (
    MAX_TEXT_LEN,
    POS_DIM,
    POS_INDEX,
    WORD_DIM,
    LexiconTagger,
    WordVectorizer,
    WordVectors,
    lemma,
    load_glove,
    tokenize,
    vocabulary,
)
from tests.fixtures_metrics import SMALL_EVALUATOR, write_glove

SENTENCES = ["I walk over to the door.", "I crouch down and pick up the red cup with my left hand."]


def _vectors(texts: list[str], seed: int = 0) -> WordVectors:
    words = sorted(vocabulary(texts) | {"sos", "eos", "unk"})
    return WordVectors(words, np.random.default_rng(seed).standard_normal((len(words), WORD_DIM)))


def test_real_architecture_shapes(torch_one_thread):
    torch.manual_seed(0)
    assert MovementConvEncoder(HEAD_CENTRIC_DIM)(torch.randn(2, MOTION_FRAMES, HEAD_CENTRIC_DIM)).shape == (2, 20, 512)
    model = TextMotionEvaluator(EvaluatorConfig(), _vectors(SENTENCES)).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert model.motion_encoder.gru.hidden_size == 1024 and model.text_encoder.gru.hidden_size == 512
    assert model.motion_encoder.gru.bidirectional and model.text_encoder.gru.bidirectional
    assert model.text_encoder.pos_emb.in_features == POS_DIM == 15
    with torch.no_grad():
        assert model.embed_motion(torch.randn(2, MOTION_FRAMES, HEAD_CENTRIC_DIM)).shape == (2, 512)
        assert model.embed_text(SENTENCES).shape == (2, 512)
    assert n_params > 20e6, n_params  # the original's sizes, not a toy
    with pytest.raises(ValueError, match="288"):
        model.embed_motion(torch.randn(1, MOTION_FRAMES, 275))


def test_tokenize_tag_and_vectorize():
    # the original keeps alphabetic tokens only: "n't", "'m", digits dropped; hyphens removed
    assert tokenize("I don't walk, I'm walking 2 steps to the t-shirt!") == [
        "i", "do", "walk", "i", "walking", "steps", "to", "the", "tshirt"]
    assert [lemma(w) for w in ("walks", "walking", "walked", "picked", "boxes", "stairs", "took")] == [
        "walk", "walk", "walk", "pick", "box", "stair", "take"]
    tags = LexiconTagger().tag(tokenize("I slowly walk to the careful turn"))
    assert [t for _, t in tags] == ["PRON", "ADV", "VERB", "ADP", "DET", "ADJ", "NOUN"]
    tagger = LexiconTagger()
    # -able/-ive nouns are nouns; only NOUN/VERB are lemmatised ("is" stays, "tables" -> "table")
    assert tagger.process("The vegetables are on the tables by the cable") == [
        ("the", "DET"), ("vegetable", "NOUN"), ("are", "AUX"), ("on", "ADP"), ("the", "DET"), ("table", "NOUN"),
        ("by", "ADP"), ("the", "DET"), ("cable", "NOUN")]
    assert tagger.process("a comfortable chair is left") == [
        ("a", "DET"), ("comfortable", "ADJ"), ("chair", "NOUN"), ("is", "AUX"), ("left", "NOUN")]
    vec = WordVectorizer(_vectors(SENTENCES))
    words, pos, length = vec(SENTENCES[1])
    assert words.shape == (MAX_TEXT_LEN + 2, WORD_DIM) and pos.shape == (MAX_TEXT_LEN + 2, POS_DIM)
    assert length == 2 + len(tokenize(SENTENCES[1]))
    assert (pos.sum(1) == 1).all()
    cats = [c for _, c in vec.tokens(SENTENCES[1])]
    # VIP categories override the grammatical tag, as in the original evaluator
    assert cats[:6] == ["OTHER", "PRON", "VERB", "Loc_VIP", "OTHER", "Act_VIP"]
    assert cats[cats.index("Loc_VIP", 4)] == "Loc_VIP" and "Body_VIP" in cats  # "left", "hand"
    np.testing.assert_array_equal(words[1], vec.vectors.get("i"))
    np.testing.assert_array_equal(pos[length:, POS_INDEX["OTHER"]], 1.0)  # padding
    # unknown words become unk; long sentences are cut to MAX_TEXT_LEN words
    assert vec.tokens("I zzyzx")[2] == ("unk", "OTHER")
    assert vec(" ".join(["walk"] * 40))[2] == MAX_TEXT_LEN + 2


def test_process_spacy_is_the_original_text_process():
    """`process_spacy` applies HumanML3D's `process_text` to a spaCy pipeline's tokens (here a
    stand-in pipeline giving fixed text / pos_ / lemma_): hyphens removed before parsing,
    non-alphabetic tokens dropped, NOUN/VERB lemmatised except "left"."""
    from types import SimpleNamespace

    from egotwin_bench.estimators.text_features import process_spacy

    table = {"I": ("PRON", "I"), "am": ("AUX", "be"), "n't": ("PART", "not"), "walking": ("VERB", "walk"),
             "left": ("VERB", "leave"), "tshirts": ("NOUN", "tshirt"), "2": ("NUM", "2"), ".": ("PUNCT", ".")}
    seen = []

    def nlp(text):
        seen.append(text)
        return [SimpleNamespace(text=w, pos_=table[w][0], lemma_=table[w][1]) for w in text.split()]

    assert process_spacy(nlp, "I am n't walking left 2 t-shirts .") == [
        ("i", "PRON"), ("am", "AUX"), ("walk", "VERB"), ("left", "VERB"), ("tshirt", "NOUN")]
    assert seen == ["I am n't walking left 2 tshirts ."]


def test_glove_formats_and_errors(tmp_path):
    words = {"walk", "door", "turn"}
    path = write_glove(tmp_path / "g.txt", words)
    full = load_glove(path)
    assert set(full.words) == words | {"sos", "eos", "unk"} and full.vectors.shape == (6, WORD_DIM)
    sub = load_glove(path, {"walk"})
    np.testing.assert_array_equal(sub.get("walk"), full.get("walk"))
    assert sub.get("door") is None
    with gzip.open(tmp_path / "g.txt.gz", "wt") as fh:
        fh.write(path.read_text())
    np.testing.assert_array_equal(load_glove(tmp_path / "g.txt.gz").vectors, full.vectors)
    folder = tmp_path / "t2m_glove"
    folder.mkdir()
    np.save(folder / "our_vab_data.npy", full.vectors)
    with open(folder / "our_vab_words.pkl", "wb") as fh:
        pickle.dump(full.words, fh)
    np.testing.assert_array_equal(load_glove(folder, {"door"}).get("door"), full.get("door"))
    with pytest.raises(FileNotFoundError, match="glove.6B"):
        load_glove(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("walk 0.1 0.2\n")
    with pytest.raises(ValueError, match="expected 300"):
        load_glove(tmp_path / "bad.txt")


def test_contrastive_loss_known_answer():
    t = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    m = torch.tensor([[0.0, 1.0], [3.0, 4.0]])
    # matched: d = 1, 0 -> mean d^2 = 0.5; mismatched (shift 1): |t0 - m1| = 5, |t1 - m0| = sqrt(18)
    expected = 0.5 + ((10 - 5.0) ** 2 + (10 - np.sqrt(18.0)) ** 2) / 2
    loss = contrastive_loss(t, m, torch.tensor([False, False]), shift=1, margin=10.0)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # a negative pair with identical prompts is left out of the negative term
    loss = contrastive_loss(t, m, torch.tensor([True, False]), shift=1, margin=10.0)
    assert float(loss) == pytest.approx(0.5 + (10 - np.sqrt(18.0)) ** 2, rel=1e-6)


def test_save_load_round_trip_and_missing_folder(tmp_path, torch_one_thread):
    torch.manual_seed(0)
    mean, std = np.random.default_rng(0).standard_normal((2, HEAD_CENTRIC_DIM))
    model = TextMotionEvaluator(EvaluatorConfig(**SMALL_EVALUATOR), _vectors(SENTENCES), mean, np.abs(std) + 0.5).eval()
    model.save(tmp_path)
    back = TextMotionEvaluator.load(tmp_path)
    x = torch.randn(3, MOTION_FRAMES, HEAD_CENTRIC_DIM)
    with torch.no_grad():
        torch.testing.assert_close(back.embed_motion(x), model.embed_motion(x), rtol=0, atol=0)
        torch.testing.assert_close(back.embed_text(SENTENCES), model.embed_text(SENTENCES), rtol=0, atol=0)
    assert back.config.words == model.config.words
    # Weights that do not fit the config's widths: refused, naming the file.
    import json

    from egotwin_bench.weights import WeightsMismatchError

    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "embedding": config["embedding"] * 2}))
    with pytest.raises(WeightsMismatchError, match=f"{WEIGHTS_FILE} does not hold the GRU evaluators.*of another shape"):
        TextMotionEvaluator.load(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"{WEIGHTS_FILE}.*train-evaluators"):
        TextMotionEvaluator.load(tmp_path)


def test_training_resumes_from_checkpoint(tmp_path, text_motion_pairs, torch_one_thread):
    from egotwin_bench.motion import head_centric

    texts, pos, rot = text_motion_pairs["val"]
    data = TextMotionData(texts[:8], np.asarray(head_centric.encode(pos[:8].astype(np.float64), rot[:8].astype(np.float64)), np.float32))
    cfg = EvaluatorConfig(**SMALL_EVALUATOR)
    _, h1 = train_evaluators(data, data, _vectors(texts), tmp_path, TrainConfig(steps=4, batch_size=4, validate_every=2), cfg, progress=False)
    assert [h["step"] for h in h1] == [2, 4] and (tmp_path / "checkpoint.pt").is_file()
    _, h2 = train_evaluators(data, data, _vectors(texts), tmp_path, TrainConfig(steps=6, batch_size=4, validate_every=2), cfg, progress=False)
    assert [h["step"] for h in h2] == [2, 4, 6] and h2[:2] == h1


def test_motion_statistics_one_std_per_part():
    """Guo et al.'s cal_mean_variance: one std per feature part (the mean of its dims' stds). A
    near-constant dimension (numerical noise, std ~1e-6) is not blown up to unit variance: with
    per-dimension stds its one 1e-4 spike became a 100-std input (issue #15: up to 200 in the
    reproduction's data, the inputs of the collapsed evaluator)."""
    from egotwin_bench.motion import head_centric

    rng = np.random.default_rng(0)
    motion = rng.normal(0.0, 0.5, (40, 20, HEAD_CENTRIC_DIM))
    j_r = head_centric.SLICES["j_r"]
    motion[..., j_r.start] = rng.normal(0.0, 1e-6, (40, 20))  # a rigid segment's noise
    motion[3, 7, j_r.start] = 1e-4
    motion[..., head_centric.SLICES["h_pp"]] = 0.0  # a constant part passes through
    mean, std = motion_statistics(motion)
    feats = motion.reshape(-1, HEAD_CENTRIC_DIM)
    np.testing.assert_allclose(mean, feats.mean(0))
    for name, sl in head_centric.SLICES.items():
        expected = 1.0 if name == "h_pp" else feats[:, sl].std(0).mean()
        np.testing.assert_allclose(std[sl], expected, rtol=1e-12)
    z = (feats - mean) / std
    assert np.abs(z[:, j_r.start]).max() < 1e-3  # was ~100 with per-dimension stds
    with pytest.raises(ValueError, match="have 100 dims; the parts h_r, .* cover 288"):
        motion_statistics(motion[..., :100])


def _small_data(texts, pos, rot, n: int) -> TextMotionData:
    from egotwin_bench.motion import head_centric

    return TextMotionData(texts[:n], np.asarray(head_centric.encode(pos[:n].astype(np.float64), rot[:n].astype(np.float64)), np.float32))


def test_training_clips_each_network_and_normalises_per_part(tmp_path, text_motion_pairs, torch_one_thread, monkeypatch):
    """The original's optimisation: the gradient norm of each network is clipped to 0.5 before
    every step; the saved normalisation is `motion_statistics` of the training split."""
    calls = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        calls.append((sum(p.numel() for p in params), max_norm))
        return clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    data = _small_data(*text_motion_pairs["val"], n=8)
    model, _ = train_evaluators(data, data, _vectors(data.texts), tmp_path, TrainConfig(steps=2, batch_size=4, validate_every=2),
                                EvaluatorConfig(**SMALL_EVALUATOR), progress=False)
    nets = (model.movement_encoder, model.motion_encoder, model.text_encoder)
    assert calls == [(sum(p.numel() for p in n.parameters()), 0.5) for n in nets] * 2
    mean, std = motion_statistics(data.motion)
    np.testing.assert_allclose(model.std.numpy(), std.astype(np.float32))
    np.testing.assert_allclose(model.mean.numpy(), mean.astype(np.float32))


def test_collapsed_evaluator_is_not_saved(tmp_path, text_motion_pairs, torch_one_thread):
    """Motion embeddings that do not vary across clips (here: every clip has the same motion, the
    signature of the saturated motion GRU of issue #15) are never kept: nothing is saved and the
    error says what to do."""
    from egotwin_bench.metrics.motion_quality import EvaluatorCollapsedError

    data = _small_data(*text_motion_pairs["val"], n=8)
    same = TextMotionData(data.texts, np.repeat(data.motion[:1], len(data.texts), axis=0))
    with pytest.raises(EvaluatorCollapsedError, match=r"collapsed at every validation.*relative spread 0.*Lower --lr"):
        train_evaluators(same, same, _vectors(data.texts), tmp_path, TrainConfig(steps=2, batch_size=4, validate_every=1),
                         EvaluatorConfig(**SMALL_EVALUATOR), progress=False)
    assert not (tmp_path / WEIGHTS_FILE).exists() and not (tmp_path / CONFIG_FILE).exists()


def test_evaluator_at_chance_is_saved_marked_unusable_and_refused(tmp_path, text_motion_pairs, torch_one_thread):
    """Two steps on 8 clips cannot show ranking above chance: saved, marked unusable with the
    binomial test's numbers, and the motion-quality provider refuses the folder."""
    from egotwin_bench.evaluate.providers.motion_quality import MotionQualityConfig, MotionQualityProvider

    data = _small_data(*text_motion_pairs["val"], n=8)
    model, history = train_evaluators(data, data, _vectors(data.texts), tmp_path, TrainConfig(steps=2, batch_size=4, validate_every=2),
                                      EvaluatorConfig(**SMALL_EVALUATOR), progress=False)
    record = history[-1]
    assert record["chance_top3"] == 3 / 8 and record["pairs"] == 8 and record["spread"] > 1e-3
    training = model.config.training
    assert training["usable"] is False and "not above chance 0.375" in training["unusable_reason"]
    assert training["unusable_reason"] == health_problem(record)
    reason = MotionQualityProvider(MotionQualityConfig(evaluator_dir=str(tmp_path))).unavailable_reason()
    assert "marked unusable by train-evaluators" in reason and "not above chance" in reason


def test_health_problem_thresholds():
    ok = {"step": 5, "spread": 0.3, "top3": 0.5, "pairs": 32, "chance_top3": 3 / 32, "p_top3": 1e-6}
    assert health_problem(ok) is None
    assert "collapsed at step 5" in health_problem({**ok, "spread": 3e-8})
    assert "not above chance" in health_problem({**ok, "p_top3": 0.2})
    assert "not above chance" in health_problem({**ok, "p_top3": float("nan")})


def test_trained_evaluators_rank_matched_pairs_above_chance(trained_evaluator):
    """A short training on synthetic narrated motion: held-out R-Precision well above chance (3/32)."""
    folder, model, train, val, history = trained_evaluator
    assert (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    assert len(val.texts) >= 32
    matched = validation_r_precision(model, val)
    shuffled_texts = list(np.random.default_rng(1).permutation(np.array(val.texts, dtype=object)))
    mismatched = validation_r_precision(model, TextMotionData(shuffled_texts, val.motion))
    print(f"held-out R-Precision matched {matched}, mismatched {mismatched}, history {history}")
    chance = 3 / 32
    assert matched["top3"] >= 0.35 > 3 * chance
    assert matched["top1"] <= matched["top2"] <= matched["top3"]
    assert mismatched["top3"] < 0.3 and mismatched["top3"] < matched["top3"] - 0.2
    assert matched["mm_dist"] < mismatched["mm_dist"]
    assert model.config.training["best"]["top3"] == max(h["top3"] for h in history)
    assert model.config.training["usable"] is True and model.config.training["unusable_reason"] == ""


def test_train_evaluators_cli(built_dataset, tmp_path):
    from typer.testing import CliRunner

    from egotwin_bench.cli import app
    from egotwin_bench.data import CuratedDataset

    texts = CuratedDataset(built_dataset).manifest.column("text").to_pylist()
    glove = write_glove(tmp_path / "glove.txt", vocabulary(texts))
    out = tmp_path / "evaluators"
    args = ["train-evaluators", "--dataset", str(built_dataset), "--glove", str(glove), "--out", str(out),
            "--steps", "2", "--validate-every", "2", "--batch-size", "4", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    # two steps cannot rank above chance: saved, marked unusable, exit 1 (evaluate refuses it)
    assert result.exit_code == 1 and "marked unusable" in result.output, result.output
    assert "R-Precision top-1" in result.output and "optimistic: chosen on that split" in result.output
    model = TextMotionEvaluator.load(out)
    data = CuratedDataset(built_dataset)
    assert model.config.training["train_clips"] == len(data.clip_ids("train"))
    # Selected on val, reported once on test: the unbiased number is stored and printed.
    if len(data.clip_ids("test")) >= 2:
        held = model.config.training["held_out"]
        assert held["split"] == "test" and held["clips"] == len(data.clip_ids("test")) and 0 <= held["top3"] <= 1
        assert "held-out test" in result.output
    same = CliRunner().invoke(app, args + ["--report-split", "val"])
    assert same.exit_code == 2 and "report on another split" in same.output
    assert set(vocabulary(texts)) & set(model.config.words)
    bad = CliRunner().invoke(app, args[:4] + [str(tmp_path / "none.txt")] + args[5:])
    assert bad.exit_code == 2 and "glove.6B" in bad.output
    assert model.config.training["word_vectors"] == "glove:glove.txt"


def test_train_evaluators_random_word_vectors(built_dataset, tmp_path):
    """--random-word-vectors (synthetic data, the demo) trains and records where its vectors came from;
    neither --glove nor it is an error naming both."""
    from typer.testing import CliRunner

    from egotwin_bench.cli import app

    out = tmp_path / "evaluators"
    args = ["train-evaluators", "--dataset", str(built_dataset), "--out", str(out),
            "--steps", "2", "--validate-every", "2", "--batch-size", "4", "--device", "cpu"]
    result = CliRunner().invoke(app, args + ["--random-word-vectors"])
    assert result.exit_code == 1 and "marked unusable" in result.output, result.output  # two steps: at chance
    assert TextMotionEvaluator.load(out).config.training["word_vectors"] == "random(seed=0)"
    neither = CliRunner().invoke(app, args)
    assert neither.exit_code == 2 and "--glove" in neither.output and "--random-word-vectors" in neither.output


def test_tagger_choice_and_recording(monkeypatch):
    """auto falls back to the lexicon tagger without spaCy; a spaCy tagger is named by pipeline and
    version and is what an evaluator trained with it loads again; older taggers are refused."""
    from types import SimpleNamespace

    from egotwin_bench.estimators import text_features
    from egotwin_bench.estimators.text_features import SpacyTagger, make_tagger

    monkeypatch.setattr(text_features, "spacy_pipeline_installed", lambda pipeline="": False)
    assert isinstance(make_tagger("auto"), LexiconTagger) and isinstance(make_tagger("lexicon"), LexiconTagger)
    if importlib.util.find_spec("spacy") is None:
        with pytest.raises(ImportError, match="spaCy is not installed.*--tagger lexicon"):
            make_tagger("en_core_web_sm")

    def nlp(text):
        return [SimpleNamespace(text=w, pos_="VERB" if w == "walking" else "PRON", lemma_=w.rstrip("ing"))
                for w in text.split()]

    nlp.meta = {"lang": "en", "name": "core_web_sm", "version": "3.8.0"}
    tagger = SpacyTagger(nlp, "/models/en_core_web_sm")
    assert tagger.name == "spacy:en_core_web_sm-3.8.0" and tagger.process("I walking") == [("i", "PRON"), ("walk", "VERB")]
    config = EvaluatorConfig(**SMALL_EVALUATOR, tagger=tagger.name, tagger_pipeline=tagger.pipeline)
    model = TextMotionEvaluator(config, _vectors(SENTENCES))
    monkeypatch.setattr(SpacyTagger, "load", classmethod(lambda cls, p: SpacyTagger(nlp, p)))
    assert model.vectorizer.tagger.name == tagger.name  # loaded from the recorded pipeline
    nlp.meta = {**nlp.meta, "version": "3.7.1"}
    other = TextMotionEvaluator(config, _vectors(SENTENCES))
    with pytest.raises(ValueError, match="trained with 'spacy:en_core_web_sm-3.8.0'"):
        other.vectorizer
    with pytest.raises(ValueError, match="tagger 'lexicon/1'"):
        TextMotionEvaluator(EvaluatorConfig(**SMALL_EVALUATOR, tagger="lexicon/1"))
