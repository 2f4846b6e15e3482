"""Long recordings in bounded memory: overlapping windows in, CTC frames out, words with times.

A 30-minute call does not fit the model at once (attention is quadratic in length, and training
never saw more than features.max_utt_seconds), so `transcribe` reads it as windows of `chunk`
seconds plus `overlap` seconds of context on each side, straight from the file (soundfile reads
block by block, so the samples in memory are one window's). Each window's output keeps only the
frames of its centre `chunk` seconds: every kept frame saw at least `overlap` seconds of context
both ways, and the kept spans tile the file exactly, so the frame sequence is that of one long
utterance. Window starts are multiples of 40 ms (one encoder frame: 10 ms hop x 4 subsampling),
so a window's frames sit on the whole file's frame grid.

Greedy decoding runs on the frames as they come (the best path and the CTC alignment: each token
spans the frames from its first to its last non-blank frame), so only the words found so far are
kept. Beam search needs every frame's log-probabilities at once (kept as float16: 40 ms frames x
the vocabulary, 0.5 MB per minute for a character model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch

from bljust.data.audio import BadAudio, check_header, lowest_rate, select_channel
from bljust.data.features import Cmvn, fbank, resample

FRAME_SECONDS = 0.04  # one encoder frame: 10 ms fbank hop x 4 (conv subsampling)


@dataclass
class Word:
    """One recognised word: its text, start and end in seconds, and its confidence (the mean,
    over the word's non-blank frames, of the best token's posterior)."""

    text: str
    start: float
    end: float
    confidence: float


def windows(path: str | Path, sample_rate: int, chunk: float, overlap: float,
            channel: int | list[int] | None = None,
            min_rate: int = 0) -> Iterator[tuple[float, float, torch.Tensor, float]]:
    """(window start s, kept span start s, mono wave at `sample_rate`, kept span end s) for each
    window of a file; reads one window of samples at a time. `channel` as in audio.read_audio;
    files below `min_rate` Hz are refused (audio.lowest_rate)."""
    path = Path(path)
    if not path.is_file():
        raise BadAudio(f"{path}: file not found", "missing_audio")
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:
        raise BadAudio(f"{path}: not readable audio ({str(err).splitlines()[0]})", "unreadable_audio") from None
    with f:
        rate, total = f.samplerate, f.frames
        # the reader's header checks, but no length limit: windows are what makes any length fit
        check_header(path, total, rate, f.channels, min_rate, None, channel)
        step = round(FRAME_SECONDS * rate)  # samples per encoder frame at the file's rate
        stride, context = max(1, round(chunk / FRAME_SECONDS)) * step, round(overlap / FRAME_SECONDS) * step
        buf, buf_start = np.zeros((0, f.channels), np.float32), 0  # samples [buf_start, buf_start + len(buf))
        kept_start = 0
        while kept_start < total:
            lo, hi = max(0, kept_start - context), min(total, kept_start + stride + context)
            buf = buf[lo - buf_start:]
            buf_start = lo
            while buf_start + len(buf) < hi:
                try:
                    block = f.read(frames=hi - buf_start - len(buf), dtype="float32", always_2d=True)
                except Exception as err:
                    raise BadAudio(f"{path}: not readable audio ({str(err).splitlines()[0]})",
                                   "unreadable_audio") from None
                if len(block) == 0:
                    raise BadAudio(f"{path}: truncated ({buf_start + len(buf)} of {total} samples)", "truncated_audio")
                buf = np.concatenate([buf, block])
            piece = buf[:hi - lo]
            if not np.isfinite(piece).all():
                raise BadAudio(f"{path}: audio holds NaN or inf samples", "nonfinite_audio")
            wave = resample(torch.from_numpy(select_channel(piece, channel)), rate, sample_rate)
            kept_end = min(total, kept_start + stride)
            yield lo / rate, kept_start / rate, wave, kept_end / rate
            kept_start = kept_end


@torch.no_grad()
def frames(model, cmvn: Cmvn, feat: dict, path: str | Path, chunk: float, overlap: float,
           channel: int | list[int] | None, device: torch.device) -> Iterator[torch.Tensor]:
    """The file's encoder output as (n, V) float32 log-probabilities, window by window; the
    pieces put end to end are one frame per 40 ms of the file."""
    from bljust.data.dataset import pad_batch

    done = 0  # frames yielded so far: the next kept frame's index in the whole file
    min_rate = lowest_rate(feat["sample_rate"], feat.get("low_rate", "upsample"))
    for start, kept_start, wave, kept_end in windows(path, feat["sample_rate"], chunk, overlap, channel, min_rate):
        x, lens, _, _ = pad_batch([cmvn(fbank(wave, feat["num_mel_bins"], feat["sample_rate"]))], None)
        if lens[0] < 8:  # under ~80 ms: no encoder frame (only a file's last sliver can be this short)
            continue
        logits, out_lens = model(x.to(device), lens.to(device))
        out = torch.log_softmax(logits[0, :int(out_lens[0])].float(), dim=-1).cpu()
        first = round((kept_start - start) / FRAME_SECONDS)
        want = round(kept_end / FRAME_SECONDS) - done  # the kept span, on the whole file's grid
        piece = out[first:first + want]
        if 0 < len(piece) < want:  # the file's last few ms give no full frame of their own
            piece = torch.cat([piece, piece[-1:].expand(want - len(piece), -1)])
        done += len(piece)
        yield piece


class GreedyAligner:
    """The best path over a stream of frames, as tokens with the frames they span."""

    def __init__(self) -> None:
        self.tokens: list[tuple[int, int, int, float]] = []  # (id, first frame, last frame, summed posterior)
        self.frame, self.prev = 0, 0

    def push(self, log_probs: torch.Tensor) -> None:
        best, ids = log_probs.max(dim=-1)
        for i, (t, p) in enumerate(zip(ids.tolist(), best.exp().tolist())):
            at = self.frame + i
            if t != 0 and t == self.prev and self.tokens:  # the same token held: extend it
                tok, first, _, total = self.tokens[-1]
                self.tokens[-1] = (tok, first, at, total + p)
            elif t != 0:
                self.tokens.append((t, at, at, p))
            self.prev = t
        self.frame += len(ids)

    def words(self, tokenizer) -> list[Word]:
        return tokens_to_words(self.tokens, tokenizer)


def tokens_to_words(tokens: list[tuple[int, int, int, float]], tokenizer) -> list[Word]:
    """Group aligned tokens into words at SentencePiece's word-start marker (the '▁' piece or a
    piece that begins with it); a word spans its first token's first frame to its last token's
    last frame, inclusive."""
    groups: list[list[tuple[int, int, int, float]]] = []
    for tok in tokens:
        piece = tokenizer.sp.id_to_piece(tok[0])
        if piece.startswith("\u2581") or not groups:
            groups.append([])
        if piece != "\u2581":
            groups[-1].append(tok)
    out = []
    for g in groups:
        if not g:
            continue
        text = tokenizer.decode([t[0] for t in g]).strip()
        if text:
            frames_n = sum(t[2] - t[1] + 1 for t in g)
            out.append(Word(text, g[0][1] * FRAME_SECONDS, (g[-1][2] + 1) * FRAME_SECONDS,
                            sum(t[3] for t in g) / frames_n))
    return out


def srt(words: list[Word], max_seconds: float = 6.0, max_words: int = 12, pause: float = 0.8) -> str:
    """Subtitles: a cue ends at a pause longer than `pause` s or when it would pass `max_seconds`
    or `max_words`."""
    cues: list[list[Word]] = []
    for w in words:
        if not cues or w.start - cues[-1][-1].end > pause or w.end - cues[-1][0].start > max_seconds \
                or len(cues[-1]) >= max_words:
            cues.append([])
        cues[-1].append(w)

    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{i}\n{stamp(c[0].start)} --> {stamp(c[-1].end)}\n{' '.join(w.text for w in c)}\n\n"
                   for i, c in enumerate(cues, 1))


def ctm(words: list[Word], name: str, channel: int = 1) -> str:
    """NIST CTM: `name channel start duration word confidence`, one word per line (channel from 1)."""
    return "".join(f"{name} {channel} {w.start:.2f} {w.end - w.start:.2f} {w.text} {w.confidence:.3f}\n"
                   for w in words)
