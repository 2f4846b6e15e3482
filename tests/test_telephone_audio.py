"""Telephone audio: real espeak-ng speech resampled down to 8 kHz and written as FLAC is upsampled
to the model's 16 kHz by default and counted per split; features.low_rate=refuse skips it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch

from bljust.data.audio import BadAudio, read_audio
from bljust.data.dataset import AsrDataset
from bljust.data.demo_corpus import synthesise
from bljust.data.features import Cmvn, fbank, resample
from bljust.data.manifests import load_cuts
from bljust.data.tokenizer import Tokenizer

SENTENCE = "the quick brown fox jumps over the lazy dog"


def to_8k(src: Path, dst: Path) -> None:
    wave, rate = sf.read(str(src), dtype="float32")
    sf.write(str(dst), resample(torch.from_numpy(wave), rate, 8000).numpy(), 8000, format="FLAC", subtype="PCM_16")


def mel_centres(num_bins: int = 80, low: float = 20.0, high: float = 8000.0) -> torch.Tensor:
    """Centre frequencies (Hz) of Kaldi's mel bins (low_freq 20 Hz, high_freq = Nyquist)."""
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    lo, hi = mel(low), mel(high)
    centres = torch.tensor([lo + (i + 1) * (hi - lo) / (num_bins + 1) for i in range(num_bins)])
    return 700.0 * (torch.exp(centres / 1127.0) - 1.0)


def test_8khz_speech_is_upsampled_with_its_speech_band_intact(tmp_path):
    wide = tmp_path / "wide.flac"
    synthesise((SENTENCE, "en-us+m3", 160, 50, str(wide)))
    to_8k(wide, tmp_path / "phone.flac")
    assert sf.info(str(tmp_path / "phone.flac")).samplerate == 8000

    ref, up = read_audio(wide), read_audio(tmp_path / "phone.flac")
    assert abs(up.numel() - ref.numel()) <= 2
    f_ref, f_up = fbank(ref), fbank(up)
    n = min(len(f_ref), len(f_up))
    f_ref, f_up = f_ref[:n], f_up[:n]
    centres = mel_centres()
    speech_band, upper_band = centres < 3400, centres > 4300
    # below the telephone cut-off the two feature tracks move together, frame by frame
    corr = [torch.corrcoef(torch.stack([f_ref[:, d], f_up[:, d]]))[0, 1] for d in torch.nonzero(speech_band)[:, 0]]
    assert min(corr) > 0.98
    # above 4 kHz the telephone copy has nothing left: far below the wideband energy (log scale)
    assert (f_ref[:, upper_band].mean() - f_up[:, upper_band].mean()) > 4.0
    with pytest.raises(BadAudio, match="8000 Hz is below the model's 16000 Hz") as err:
        read_audio(tmp_path / "phone.flac", low_rate="refuse")
    assert err.value.reason == "low_sample_rate"


def _tables(demo_root: Path, folder: Path) -> dict[str, list[str]]:
    """train.csv (6 utterances, 2 of them at 8 kHz) and dev.csv (3, 1 at 8 kHz) of real demo speech."""
    corpus = demo_root / "corpus"
    texts = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for t in corpus.rglob("*.trans.txt")
             for line in t.read_text().splitlines()}
    phone = {}
    for split, n, n_phone in (("train", 6, 2), ("dev", 3, 1)):
        flacs = sorted((corpus / split).rglob("*.flac"))[:n]
        rows = ["audio,text\n"]
        for i, flac in enumerate(flacs):
            name = f"{split}_{flac.name}"
            if i < n_phone:
                to_8k(flac, folder / name)
                phone.setdefault(split, []).append(flac.stem)
            else:
                (folder / name).write_bytes(flac.read_bytes())
            rows.append(f"{name},{texts[flac.stem]}\n")
        (folder / f"{split}.csv").write_text("".join(rows))
    return {"labelled": phone["train"], "dev": phone["dev"]}


def _custom(folder: Path, data_dir: Path, low_rate: str) -> list[str]:
    return ["recipe=custom", f"recipe.corpus_dir={folder}", "recipe.labelled=[train.csv]", "recipe.dev=[dev.csv]",
            f"recipe.data_dir={data_dir}", f"features.low_rate={low_rate}", "train.max_bad_fraction=0.5"]


def test_prepare_upsamples_and_counts_8khz_files_per_split(demo_root, small_cfg, tmp_path, capsys):
    from bljust.prepare import prepare

    phone = _tables(demo_root, tmp_path)
    out = prepare(small_cfg(_custom(tmp_path, tmp_path / "up", "upsample")))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "upsampled" in ln]
    assert lines == ["prepare: 3 utterances recorded below 16000 Hz (8000 Hz) are upsampled (labelled 2, dev 1); "
                     "features.low_rate=refuse skips them"]
    assert json.loads((tmp_path / "up" / "prepare.json").read_text())["upsampled"] == {"labelled": 2, "dev": 1}
    labelled = load_cuts(out.labelled)
    assert len(labelled) == 6 and sorted(c.id for c in labelled if c.recording.sampling_rate == 8000) == [
        f"train_{s}" for s in phone["labelled"]]
    # training reads them: the batch keeps the 8 kHz utterances, at 16 kHz frame counts
    ds = AsrDataset(Cmvn.load(out.cmvn), Tokenizer.load(out.tokenizer))
    batch = ds[labelled]
    assert len(batch) == 6 and not batch.skips.total
    phone_cut = next(c for c in labelled if c.recording.sampling_rate == 8000)
    assert abs(int(batch.feat_lens[batch.ids.index(phone_cut.id)]) - phone_cut.duration * 100) <= 3


def test_low_rate_refuse_skips_8khz_files_when_manifests_are_built(demo_root, small_cfg, tmp_path):
    from bljust.prepare import prepare

    _tables(demo_root, tmp_path)
    out = prepare(small_cfg(_custom(tmp_path, tmp_path / "refuse", "refuse")), verbose=False)
    assert len(load_cuts(out.labelled)) == 4 and len(load_cuts(out.eval_splits["dev"])) == 2
    skipped = json.loads((tmp_path / "refuse" / "prepare.json").read_text())["skipped"]
    assert skipped["labelled"] == {"low_sample_rate": 2} and skipped["dev"] == {"low_sample_rate": 1}


def test_a_wrong_low_rate_value_is_one_line(demo_root, small_cfg, tmp_path):
    from bljust.config import ConfigError
    from bljust.prepare import prepare

    _tables(demo_root, tmp_path)
    with pytest.raises(ConfigError, match="features.low_rate='resample': expected one of upsample, refuse"):
        prepare(small_cfg(_custom(tmp_path, tmp_path / "bad", "resample")), verbose=False)
