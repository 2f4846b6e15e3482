"""The domain-adaptation study's parts: the telephone target corpus (band, rate and codec really
applied, speakers and text apart from the source), lhotse augmentation, init_from for every
method, train.max_steps=0 for the source model as it is, and the protocol's source/fixed rows."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bljust.cli import CONF_DIR
from bljust.data.audio import read_audio
from bljust.data.augment import CutAugment, noise_cuts
from bljust.data.demo_corpus import load_sentences, partition_sentences
from bljust.data.target_corpus import (CODECS, LABELLED_VOICES, TargetCorpusSpec, coloured_noise,
                                       load_target_sentences, make_target_corpus, rms_db, speak, telephone_channel,
                                       write_codec)

needs_flite = pytest.mark.skipif(shutil.which("flite") is None or not Path("/usr/share/wordnet/data.noun").is_file(),
                                 reason="flite and wordnet-base are installed by make setup")
SENTENCE = "the committee approved the new telephone plan on tuesday"
TINY = TargetCorpusSpec(train_minutes=3.0, subsets_minutes=[0.5, 2.0], unlabelled_minutes=1.0, dev_minutes=0.5,
                        test_minutes=0.5, noise_minutes=0.25)


def band_energy(wave: torch.Tensor, rate: int, low: float, high: float | None = None) -> float:
    """Share of the signal's energy between low and high Hz (power spectrum of the whole file)."""
    power = np.abs(np.fft.rfft(wave.numpy().astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / rate)
    mask = (freqs >= low) & (freqs < (high if high is not None else np.inf))
    return float(power[mask].sum() / power.sum())


@pytest.fixture(scope="session")
def target_corpus(tmp_path_factory) -> Path:
    if shutil.which("flite") is None:
        pytest.skip("flite is installed by make setup")
    root = tmp_path_factory.mktemp("target") / "corpus"
    make_target_corpus(root, TINY)
    return root


@needs_flite
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_the_phone_line_leaves_nothing_above_4khz_and_stores_the_codec(tmp_path, codec):
    speech, rate = speak("slt", 1.0, 200, SENTENCE)
    wide = band_energy(torch.from_numpy(speech), rate, 4300)
    assert rate == 16000 and wide > 2e-4  # flite's wideband speech has energy up there
    line = telephone_channel(speech, rate, "white", 40.0, 0.0, seed=0)
    write_codec(tmp_path / "call.wav", line, codec)
    info = sf.info(str(tmp_path / "call.wav"))
    assert (info.samplerate, info.subtype) == (8000, CODECS[codec])
    up = read_audio(tmp_path / "call.wav")  # decoded and upsampled to the model's 16 kHz
    above = band_energy(up, 16000, 4300)  # past the line's Nyquist and the resampler's transition band
    assert above < 2e-5 and above < wide / 20
    assert band_energy(up, 16000, 300, 3400) > 0.5  # the telephone band holds the speech
    assert band_energy(up, 16000, 0, 150) < 0.01  # and the band's lower edge is cut too
    # the codec is lossy but keeps the waveform: the decoded line follows what went in
    decoded = sf.read(str(tmp_path / "call.wav"), frames=info.frames, dtype="float32")[0][:len(line)]
    assert np.corrcoef(decoded, line[:len(decoded)])[0, 1] > (0.9 if codec == "gsm" else 0.99)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(0)
    for kind, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        noise = coloured_noise(2**16, kind, rng)
        assert abs(rms_db(noise)) < 0.01  # unit RMS
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(len(noise))
        bands = np.logspace(-3, -0.5, 12)
        levels = [np.log10(power[(freqs >= a) & (freqs < b)].mean()) for a, b in zip(bands[:-1], bands[1:])]
        fitted = np.polyfit(np.log10(np.sqrt(bands[:-1] * bands[1:])), levels, 1)[0]
        assert abs(fitted - slope) < 0.15, (kind, fitted)


@needs_flite
def test_the_line_adds_noise_at_the_asked_snr_and_sets_the_level():
    speech, rate = speak("slt", 1.0, 200, SENTENCE)
    clean = telephone_channel(speech, rate, "pink", 200.0, -6.0, seed=3)  # no noise to speak of
    noisy = telephone_channel(speech, rate, "pink", 5.0, -6.0, seed=3)
    assert rms_db(clean) == pytest.approx(-26.0 - 6.0, abs=0.1)  # the nominal level plus the gain
    assert rms_db(noisy) == pytest.approx(-32.0, abs=0.1)  # the level is set after the noise
    # 5 dB of pink noise over the whole band, most of it below 300 Hz where the line cuts it:
    # the two lines still share the speech, but far from wholly
    assert 0.3 < np.corrcoef(clean, noisy)[0, 1] < 0.95


@needs_flite
def test_the_target_corpus_keeps_speakers_text_and_subsets_apart(target_corpus):
    summary = json.loads((target_corpus / "corpus.json").read_text())
    assert {"dev", "test", "train", "unlabelled", "train_0.5min", "train_2min"} <= set(summary["splits"])
    rows = [line.split("\t") for line in (target_corpus / "speakers.tsv").read_text().splitlines()[1:]]
    identity = {}
    for speaker, split, voice, stretch, f0, codec in rows:
        identity.setdefault((voice, stretch, f0), set()).add(split)
        if split == "train":
            assert voice in LABELLED_VOICES
    assert all(len(splits) == 1 for splits in identity.values())  # no caller in two splits
    assert {r[2] for r in rows if r[1] in ("dev", "test")} - set(LABELLED_VOICES)  # unseen voices in dev/test
    # nested labelled subsets of whole speakers
    subsets = {m: list(csv.DictReader((target_corpus / f"train_{m}min.csv").open())) for m in ("0.5", "2")}
    small, large = ({r["audio"] for r in subsets[m]} for m in ("0.5", "2"))
    assert small < large and all((target_corpus / a).is_file() for a in large)
    # every file is 8 kHz audio in one of the codecs, and test text is no training text
    texts = {split: {line.split(" ", 1)[1] for t in (target_corpus / split).rglob("*.trans.txt")
                     for line in t.read_text().splitlines()} for split in ("train", "unlabelled", "dev", "test")}
    assert not texts["test"] & (texts["train"] | texts["unlabelled"] | texts["dev"])
    assert {sf.info(str(p)).subtype for p in (target_corpus / "dev").rglob("*.wav")} <= set(CODECS.values())


@needs_flite
def test_target_text_is_not_the_source_corpus_text():
    target = load_target_sentences(0)
    assert len(target) > 50_000
    assert not set(target[:20_000]) & set(load_sentences(0))


@needs_flite
def test_the_target_lm_text_holds_no_dev_or_test_sentence(target_corpus):
    from bljust.data.target_corpus import lm_sentences

    text = set(lm_sentences(TargetCorpusSpec()))
    held = {line.split(" ", 1)[1] for split in ("dev", "test") for t in (target_corpus / split).rglob("*.trans.txt")
            for line in t.read_text().splitlines()}
    assert held and not held & text
    # the default corpus's dev/test reserves are held out too; its own labelled text is LM text,
    # as a company's LM text would hold its own domain's
    pools = partition_sentences(load_target_sentences(0), TargetCorpusSpec())
    assert not (set(pools["dev"]) | set(pools["test"])) & text
    assert set(pools["unlabelled"]) <= text
    assert len(text) > 100_000


@needs_flite
def test_speed_perturbation_changes_duration_by_the_factor_and_noise_keeps_it(target_corpus):
    files = sorted((target_corpus / "train").rglob("*.wav"))[:4]
    waves = [(p.stem, read_audio(p)) for p in files]
    for factor in (0.9, 1.1):
        out = CutAugment([factor], 1.0, None, 0.0, (10, 20), 0.0, 16000)(waves)
        for (_, w), o in zip(waves, out):
            assert len(o) / len(w) == pytest.approx(1 / factor, abs=2e-3)  # 0.9x speed: 1.11x as long
    noise = noise_cuts([str(target_corpus / "noise")], 16000)
    mixed = CutAugment([1.0], 0.0, noise, 1.0, (10.0, 10.0), 0.0, 16000)(waves)
    for (_, w), m in zip(waves, mixed):
        assert len(m) == len(w)
        added = m - w
        assert 10 * np.log10(float((w ** 2).mean() / (added ** 2).mean())) == pytest.approx(10.0, abs=0.5)
    again = CutAugment([1.0], 0.0, noise, 1.0, (10.0, 10.0), 0.0, 16000)(waves)
    assert all(torch.equal(a, b) for a, b in zip(mixed, again))  # seeded by the batch: a resume sees the same
    reverb = CutAugment([1.0], 0.0, None, 0.0, (10, 20), 1.0, 16000)(waves)
    assert all(len(r) == len(w) and not torch.allclose(r, w, atol=1e-3) for (_, w), r in zip(waves, reverb))


def test_augment_settings_are_checked(small_cfg):
    from bljust.config import ConfigError, validate

    with pytest.raises(ConfigError, match="augment.noise_prob > 0 needs augment.noise"):
        validate(small_cfg(["augment.noise_prob=0.5"]))
    with pytest.raises(ConfigError, match="augment.speed_prob"):
        validate(small_cfg(["augment.speed_prob=1.5"]))


def test_max_steps_zero_needs_init_from(small_cfg):
    from bljust.config import ConfigError, validate

    with pytest.raises(ConfigError, match="0 only with method=supervised and init_from"):
        validate(small_cfg(["train.max_steps=0"]))


@pytest.fixture(scope="module")
def source_ckpt(small_cfg_module, tmp_path_factory) -> Path:
    from bljust.train import Trainer

    run = tmp_path_factory.mktemp("source")
    Trainer(small_cfg_module(["train.max_steps=3", "monitor.enabled=false", f"run_dir={run}",
                              "train.eval_every=3", "eval.max_dev_utts=2"]), run).run()
    return run / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def small_cfg_module(demo_root):
    from tests.conftest import compose

    return lambda overrides=(): compose(demo_root, list(overrides))


ROWS = {
    "supervised": [],
    "supervised_aug": ["augment.speed_prob=1.0", "augment.reverb_prob=0.5"],
    "ptft": ["method=ptft", "method.pretrain_steps=1"],
    "just": ["method=just"],
    "bljust": ["method=bljust", "method.explore=1", "method.explore_unit=steps", "method.joint_steps_per_epoch=1",
               "method.finetune=0"],
    "pseudo_label": ["method=pseudo_label", "method.start_step=0", "method.cache_size=1"],
    # the teacher: a checkpoint whose labels are not all blank (the 3-step source's are)
    "pseudo_label_offline": ["method=pseudo_label", "method.mode=offline", "method.teacher=TEACHER"],
}


@pytest.mark.train
@pytest.mark.parametrize("row", sorted(ROWS))
def test_every_method_starts_from_the_source_model(small_cfg_module, source_ckpt, small_checkpoint, tmp_path, row):
    from bljust.tracking.checkpoint import load_checkpoint
    from bljust.train import Trainer

    overrides = [o.replace("TEACHER", str(small_checkpoint)) for o in ROWS[row]]
    cfg = small_cfg_module([*overrides, f"init_from={source_ckpt}", "train.max_steps=2", "monitor.enabled=false",
                            f"run_dir={tmp_path}", "objective.bestrq.codebook_size=64", "train.eval_every=1000",
                            "eval.max_dev_utts=2", "eval.score_test=false"])
    tr = Trainer(cfg, tmp_path)
    source = load_checkpoint(source_ckpt)["model"]
    assert all(torch.equal(v, source[k]) for k, v in tr.model.state_dict().items())  # encoder and CTC head
    tr.run()
    trained = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    moved = [k for k in source if not torch.equal(trained[k], source[k])]
    assert moved  # it trained from there


@pytest.mark.train
def test_max_steps_zero_scores_the_source_model_as_it_is(small_cfg_module, source_ckpt, tmp_path):
    from bljust.tracking.checkpoint import load_checkpoint
    from bljust.train import Trainer

    cfg = small_cfg_module([f"init_from={source_ckpt}", "train.max_steps=0", "monitor.enabled=false",
                            f"run_dir={tmp_path}", "eval.max_dev_utts=2"])
    table = Trainer(cfg, tmp_path).run()
    assert table["step"] == 0 and {"dev", "test"} <= set(table)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]
    source = load_checkpoint(source_ckpt)["model"]
    assert all(torch.equal(best[k], source[k]) for k in source)
    # the same hypotheses as the source checkpoint decoded by bljust.evaluate on the same split
    from bljust.evaluate import main as evaluate

    evaluate([f"ckpt={source_ckpt}", "split=dev", f"out={tmp_path / 'eval'}"])
    ours = (tmp_path / "hyps" / "dev.txt").read_text()
    assert ours == (tmp_path / "eval" / "hyps" / "dev.txt").read_text()


@pytest.mark.train
def test_init_from_a_model_of_another_size_is_one_clear_error(small_cfg, source_ckpt, tmp_path):
    from bljust.errors import UserError
    from bljust.train import Trainer

    cfg = small_cfg([f"init_from={source_ckpt}", "model=small", f"run_dir={tmp_path}", "monitor.enabled=false"])
    with pytest.raises(UserError, match=r"the checkpoint is model=tiny but this run builds model=small .*add model=tiny"):
        Trainer(cfg, tmp_path)


def test_the_adapt_protocol_trains_the_source_first_and_starts_every_run_from_it(tmp_path, capsys):
    from bljust.protocol.__main__ import main
    from bljust.protocol.trials import load_trials

    plan = load_trials(CONF_DIR / "protocol" / "adapt.yaml", "adapt")
    assert plan.source == "source" and plan.fixed == ("none",) and plan.baselines == ("none", "supervised")
    assert set(plan.trials) == {"supervised", "supervised_aug", "ptft", "just", "bljust", "pseudo_label"}
    assert main(["--group", "adapt", "--root", str(tmp_path), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    source = tmp_path / "source" / "checkpoints" / "best.pt"
    assert "+experiment=adapt/source" in lines[0] and "init_from" not in lines[0]
    assert all(f"init_from={source}" in line for line in lines[1:])
    none = [line for line in lines if "adapt/none" in line]
    assert len(none) == 1 and "train.seed=0" in none[0] and "eval.score_test=true" in none[0]
    assert main(["--group", "adapt", "--root", str(tmp_path), "--dry-run", "init_from=x.pt"]) == 1
