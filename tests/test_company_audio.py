"""Company audio as it comes: MP3/OGG/FLAC/G.711 files, stereo calls (mix, pick, split, a table's
channel column), and long recordings transcribed window by window with word times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bljust.config import parse_channels
from bljust.data.audio import BadAudio, read_audio
from bljust.data.dataset import AsrDataset
from bljust.data.features import Cmvn, fbank
from bljust.data.manifests import load_table_manifest, scan_librispeech
from bljust.data.skips import SkipLog
from bljust.config import ConfigError
from bljust.decoding import chunked

# (format, subtype) as libsndfile writes them; the lossy ones are what call recorders and
# phones produce
FORMATS = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "ogg": ("OGG", "VORBIS"),
           "opus": ("OGG", "OPUS"), "ulaw.wav": ("WAV", "ULAW"), "alaw.wav": ("WAV", "ALAW")}


def utterances(demo_root: Path, n: int) -> list[tuple[np.ndarray, str]]:
    """(16 kHz samples, transcript) of the first `n` real espeak-ng utterances of the small demo corpus's dev split."""
    out = []
    for trans in sorted((demo_root / "corpus" / "dev").rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            uid, text = line.split(" ", 1)
            out.append((sf.read(str(trans.parent / f"{uid}.flac"), dtype="float32")[0], text))
            if len(out) == n:
                return out
    return out


def feature_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two log-mel matrices over their common frames."""
    n = min(len(a), len(b))
    x, y = a[:n].flatten().double(), b[:n].flatten().double()
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_reads_as_the_same_speech(demo_root, tmp_path, name):
    speech = utterances(demo_root, 1)[0][0]
    fmt, subtype = FORMATS[name]
    rate = 8000 if "law" in name else 16000  # G.711 is telephone audio
    src = speech if rate == 16000 else read_audio_from(speech, rate)
    path = tmp_path / f"u.{name}"
    sf.write(str(path), src, rate, format=fmt, subtype=subtype)
    assert sf.info(str(path)).subtype == subtype
    wave = read_audio(path)
    # the length is the original's (MP3 and Opus decoders add at most a frame of padding)
    assert abs(len(wave) - len(speech)) <= 0.07 * 16000, (len(wave), len(speech))
    reference = fbank(torch.from_numpy(speech))
    assert feature_correlation(fbank(wave), reference) > (0.9 if rate == 16000 else 0.8)


def read_audio_from(speech: np.ndarray, rate: int) -> np.ndarray:
    from bljust.data.features import resample

    return resample(torch.from_numpy(speech), 16000, rate).numpy()


def test_an_unreadable_file_is_one_line_naming_it_and_the_table_goes_on(demo_root, tmp_path):
    speech = utterances(demo_root, 1)[0][0]
    sf.write(str(tmp_path / "good.mp3"), speech, 16000, format="MP3")
    (tmp_path / "bad.mp3").write_bytes(b"ID3" + bytes(range(256)) * 20)  # a tag and no frames
    (tmp_path / "t.csv").write_text("audio,text\ngood.mp3,HELLO\nbad.mp3,HELLO\n")
    with pytest.raises(BadAudio) as err:
        read_audio(tmp_path / "bad.mp3")
    assert str(tmp_path / "bad.mp3") in str(err.value) and "\n" not in str(err.value)
    skips = SkipLog()
    cuts = load_table_manifest(tmp_path / "t.csv", skips)
    assert [c.id for c in cuts] == ["good"] and skips.as_dict() == {"unreadable_audio": 1}


@pytest.fixture
def call(demo_root, tmp_path) -> tuple[Path, np.ndarray, list[str]]:
    """A stereo 'call': one utterance on the left channel, another on the right, as FLAC."""
    (a, ta), (b, tb) = utterances(demo_root, 2)
    n = max(len(a), len(b))
    stereo = np.zeros((n, 2), np.float32)
    stereo[:len(a), 0], stereo[:len(b), 1] = a, b
    folder = tmp_path / "calls" / "7" / "1"
    folder.mkdir(parents=True)
    path = folder / "7-1-0001.flac"
    sf.write(str(path), stereo, 16000, subtype="PCM_24")
    return path, stereo, [ta, tb]


def test_channels_mix_pick_and_split_when_read(call):
    path, stereo, _ = call
    np.testing.assert_allclose(read_audio(path).numpy(), stereo.mean(1), atol=1e-6)  # the default downmix
    np.testing.assert_allclose(read_audio(path, channel=1).numpy(), stereo[:, 1], atol=1e-6)
    with pytest.raises(BadAudio, match=r"7-1-0001.flac: has 2 channels, channel 2 asked"):
        read_audio(path, channel=2)
    assert parse_channels("split") == "split" and parse_channels("1") == 1
    with pytest.raises(ConfigError, match="features.channels='left'"):
        parse_channels("left")


def test_split_makes_each_channel_its_own_utterance_and_the_dataset_reads_it(call, demo_root):
    path, stereo, _ = call
    folder = path.parents[2]
    cuts = scan_librispeech(folder, labelled=False, channels="split")
    assert [(c.id, c.channel) for c in cuts] == [("7-1-0001-ch0", 0), ("7-1-0001-ch1", 1)]
    prepared = demo_root / "prepared"
    ds = AsrDataset(Cmvn.load(prepared / "cmvn.pt"), None, 16000, 80, 30.0)
    batch = ds[cuts]
    cmvn = Cmvn.load(prepared / "cmvn.pt")
    for i, k in enumerate((0, 1)):
        expected = cmvn(fbank(torch.from_numpy(stereo[:, k].copy())))
        torch.testing.assert_close(batch.feats[i, :len(expected)], expected, atol=1e-4, rtol=1e-4)
    mixed = scan_librispeech(folder, labelled=False)  # default: one utterance, the average
    assert len(mixed) == 1 and mixed[0].channel == [0, 1]
    torch.testing.assert_close(ds[mixed].feats[0, :len(expected)],
                               cmvn(fbank(torch.from_numpy(stereo.mean(1)))), atol=1e-4, rtol=1e-4)
    # labelled audio cannot be split: one transcript is not both sides of a call
    (path.parent / "7-1.trans.txt").write_text("7-1-0001 HELLO\n")
    skips = SkipLog()
    with pytest.raises(Exception, match="multichannel_labelled"):
        scan_librispeech(folder, labelled=True, skips=skips, channels="split")


def test_a_table_channel_column_gives_each_side_its_own_text(call):
    path, _, (ta, tb) = call
    table = path.parent / "calls.csv"
    table.write_text(f"audio,text,channel\n{path.name},{ta},0\n{path.name},{tb},1\n{path.name},{ta},5\n")
    skips = SkipLog()
    cuts = load_table_manifest(table, skips)
    assert [(c.id, c.channel, c.supervisions[0].text) for c in cuts] == \
        [("7-1-0001-ch0", 0, ta.upper()), ("7-1-0001-ch1", 1, tb.upper())]
    assert skips.as_dict() == {"missing_channel": 1}
    table.write_text(f"audio,text,channel\n{path.name},{ta},left\n")
    with pytest.raises(Exception, match=r"calls.csv:1: channel='left'"):
        load_table_manifest(table)


def test_prepare_says_how_multichannel_files_were_read(call, tmp_path, capsys):
    from bljust.cli import compose_config
    from bljust.prepare import prepare

    path, _, (ta, _) = call
    (path.parent / "7-1.trans.txt").write_text(f"7-1-0001 {ta}\n")
    root = path.parents[2]
    cfg = compose_config(["recipe.source=librispeech", f"recipe.corpus_dir={root.parent}", f"recipe.labelled=[{root.name}]",
                          "recipe.unlabelled=[]", f"recipe.dev=[{root.name}]", "recipe.test=[]",
                          f"recipe.data_dir={tmp_path}/prepared"])
    prepare(cfg)
    assert "prepare: 2 files with several channels are downmixed (the channels averaged) (labelled 1, calls 1)" \
        in capsys.readouterr().out
    assert json.loads((tmp_path / "prepared" / "prepare.json").read_text())["multichannel"] == {"labelled": 1, "calls": 1}


def long_recording(demo_root: Path, path: Path, n: int, gap: float = 0.3) -> list[tuple[float, float, str]]:
    """`n` real utterances end to end with `gap` s of silence between, written to `path`;
    returns each utterance's (start s, end s, text)."""
    pieces, spans, t = [], [], 0.0
    for speech, text in utterances(demo_root, n):
        pieces += [speech, np.zeros(int(gap * 16000), np.float32)]
        spans.append((t, t + len(speech) / 16000, text))
        t += len(speech) / 16000 + gap
    sf.write(str(path), np.concatenate(pieces), 16000)
    return spans


def test_windows_tile_the_file_on_the_frame_grid(demo_root, tmp_path):
    long_recording(demo_root, tmp_path / "long.wav", 4)
    total = sf.info(str(tmp_path / "long.wav")).frames
    wins = list(chunked.windows(tmp_path / "long.wav", 16000, chunk=2.0, overlap=0.4))
    assert wins[0][1] == 0.0 and wins[-1][3] == total / 16000
    for (start, kept, wave, end), nxt in zip(wins, wins[1:] + [None]):
        assert round(start / 0.04, 6).is_integer() and round(kept / 0.04, 6).is_integer()
        assert abs(kept - start - min(0.4, kept)) < 1e-9  # the left context, clipped at the file's start
        if nxt is not None:
            assert nxt[1] == end and end - kept == 2.0
            assert len(wave) == min(round((end + 0.4 - start) * 16000), total - round(start * 16000))
    # the windows' samples are the file's
    data = sf.read(str(tmp_path / "long.wav"), dtype="float32")[0]
    start, _, wave, _ = wins[2]
    np.testing.assert_array_equal(wave.numpy(), data[round(start * 16000):round(start * 16000) + len(wave)])


def test_one_window_is_whole_file_decoding_and_windows_agree_with_it(small_checkpoint, demo_root, tmp_path):
    from bljust.data.dataset import pad_batch
    from bljust.evaluate import load_for_inference
    from bljust.objectives.ctc import greedy_decode
    from bljust.scoring import error_rates
    from bljust.transcribe import transcribe_files

    long_recording(demo_root, tmp_path / "long.wav", 4)
    model, tok, cmvn, _ = load_for_inference(small_checkpoint, torch.device("cpu"))
    x, lens, _, _ = pad_batch([cmvn(fbank(read_audio(tmp_path / "long.wav")))], None)
    with torch.no_grad():
        logits, out_lens = model(x, lens)
    whole = tok.decode(greedy_decode(logits.float(), out_lens)[0])  # decoded as evaluate decodes
    dev = torch.device("cpu")
    [result] = transcribe_files(str(small_checkpoint), [str(tmp_path / "long.wav")], dev, chunk=60)
    one = result.text
    assert one == whole
    [result] = transcribe_files(str(small_checkpoint), [str(tmp_path / "long.wav")], dev, chunk=3.0, overlap=1.0)
    windowed = result.text
    agreement = error_rates([whole], [windowed])["cer"]
    print(f"windowed vs whole-file greedy text: {agreement:.1f} % CER")
    assert agreement < 5


def test_transcribe_writes_json_srt_ctm_and_splits_a_call(small_checkpoint, call, tmp_path):
    path, _, _ = call
    out = subprocess.run([sys.executable, "-m", "bljust.transcribe", f"ckpt={small_checkpoint}", "channels=split",
                          "timestamps=json,srt,ctm", f"out={tmp_path / 'ts'}", "chunk=2", "overlap=0.5", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"{path}:ch0", f"{path}:ch1"]
    for k in (0, 1):
        doc = json.loads((tmp_path / "ts" / f"{path.stem}.ch{k}.json").read_text())
        assert doc["channel"] == k and " ".join(w["word"] for w in doc["words"]) == lines[k].split("\t")[1]
        assert all(0 <= w["start"] < w["end"] <= 60 for w in doc["words"])
        ctm = (tmp_path / "ts" / f"{path.stem}.ch{k}.ctm").read_text().splitlines()
        assert len(ctm) == len(doc["words"]) and all(row.split()[1] == str(k + 1) for row in ctm)
        assert "-->" in (tmp_path / "ts" / f"{path.stem}.ch{k}.srt").read_text() or not doc["words"]
    bad = subprocess.run([sys.executable, "-m", "bljust.transcribe", f"ckpt={small_checkpoint}", "timestamps=vtt",
                          str(path)], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "timestamps=vtt" in bad.stderr


def test_srt_and_ctm_formats():
    words = [chunked.Word("HELLO", 0.12, 0.5, 0.9), chunked.Word("THERE", 0.56, 0.9, 0.8),
             chunked.Word("AGAIN", 3661.0, 3661.48, 0.5)]
    assert chunked.srt(words) == ("1\n00:00:00,120 --> 00:00:00,900\nHELLO THERE\n\n"
                                  "2\n01:01:01,000 --> 01:01:01,480\nAGAIN\n\n")
    assert chunked.ctm(words, "call", 2).splitlines()[1] == "call 2 0.56 0.34 THERE 0.800"


def test_the_aligner_spans_tokens_and_words(demo_root):
    from bljust.data.tokenizer import Tokenizer

    tok = Tokenizer.load(demo_root / "prepared" / "tokenizer.model")
    ids = tok.encode("AB CD")
    space = tok.sp.piece_to_id("\u2581")
    a, b, c, d = (i for i in ids if i != space)
    # frames: blank, A A, blank, B, space, blank, C, C, D, blank
    path = [0, a, a, 0, b, space, 0, c, c, d, 0]
    log_probs = torch.full((len(path), tok.vocab_size), -20.0)
    log_probs[torch.arange(len(path)), torch.tensor(path)] = 0.0
    al = chunked.GreedyAligner()
    al.push(log_probs[:4])  # in two pieces: a token may continue across them
    al.push(log_probs[4:])
    words = al.words(tok)
    assert [(w.text, round(w.start, 2), round(w.end, 2)) for w in words] == [("AB", 0.04, 0.2), ("CD", 0.28, 0.4)]


def test_bench_long_audio_reports_every_length(small_checkpoint, demo_root):
    tool = Path(__file__).parents[1] / "tools" / "bench_long_audio.py"
    out = subprocess.run([sys.executable, str(tool), "--ckpt", str(small_checkpoint), "--speech",
                          str(demo_root / "corpus" / "dev"), "--minutes", "0.1,0.3", "--chunk", "4", "--threads", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| 0.")]
    assert [r[0].strip() for r in rows] == ["0.1 min", "0.3 min"]
    assert all(float(r[2]) > 0 and float(r[4].split()[0]) >= float(r[3].split()[0]) for r in rows)


def test_timestamp_files_are_named_from_the_result_not_from_its_printed_name(tmp_path):
    from bljust.transcribe import Transcript, write_timestamps

    words = [chunked.Word("hello", 0.4, 0.8, 0.9)]
    # a file whose own name contains ":ch": not mistaken for channel 1 of "odd"
    mono = Transcript("/x/odd:ch1.wav", None, split=False, text="hello", words=words)
    assert mono.name == "/x/odd:ch1.wav"
    [j, c] = write_timestamps(mono, ["json", "ctm"], tmp_path)
    assert j.name == "odd:ch1.json" and json.loads(j.read_text())["channel"] is None
    assert c.read_text().split()[:2] == ["odd:ch1", "1"]
    side = Transcript("/x/call.wav", 1, split=True, text="hello", words=words)
    assert side.name == "/x/call.wav:ch1"
    [j, c] = write_timestamps(side, ["json", "ctm"], tmp_path)
    assert j.name == "call.ch1.json" and json.loads(j.read_text())["channel"] == 1
    assert c.read_text().split()[:2] == ["call", "2"]
