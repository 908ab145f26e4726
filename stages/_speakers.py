"""The offline diarization backend: who speaks when, from a speaker-embedding model that a package ships.

1. Speech: WebRTC's VAD (the ``webrtcvad`` package, which resemblyzer needs
   anyway) marks 30 ms frames; pauses shorter than MIN_PAUSE_S are filled and
   bursts shorter than MIN_SPEECH_S dropped. The audio is read a block at a
   time (``scan_speech``); the smoothing runs on the whole film's mask, which is
   small (one bool per 10 ms).
2. Embeddings: resemblyzer's GE2E encoder embeds 1.6 s windows, one every
   0.25 s, that are mostly speech. The windows lie on the film's grid, and they
   are embedded in batches of BATCH_STEPS grid steps: each batch's mel
   spectrogram is made from that batch's own stretch of audio, with the volume
   normalised by one gain for the whole film (resemblyzer's normalize_volume).
   So every embedding is computed from the same numbers in the same order
   however the film is split into spans (``embed_windows``), and a caller can
   embed the film span by span, holding one span's audio at a time.
3. Clustering: spectral clustering of the windows' cosine affinity, refined as
   in Wang et al. (2018) for d-vectors: each row keeps its top ROW_KEEP share,
   then symmetrise, diffuse and row-normalise. The number of speakers is the
   largest eigengap among the eigenvalues that reach EIGEN_MIN_SHARE of the
   largest (at most the job's max_speakers); k-means on the eigenvectors gives
   the labels. Then clusters whose windows are on average at least
   MERGE_SIMILARITY alike are merged: the eigengap alone splits one voice whose
   delivery varies. Long films are sampled to at most MAX_CLUSTERED windows
   first (every n-th window) and every window then joins its nearest speaker.
   Averaging neighbouring windows instead makes two voices look more alike the
   longer the film (the average of noisy windows is nearer its voice's centre),
   until MERGE_SIMILARITY joins them: a two-hour film of two voices came out
   as one speaker.
4. Turns: every speech frame takes the label most of its windows carry.

The rule for the number of speakers favours fewer speakers: a speaker with
little speech may be merged into another. Overlapping speech gets one speaker.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SAMPLE_RATE = 16000
FRAME_S = 0.01                 # the label grid, and resemblyzer's mel frame step
HOP = 160                      # samples per 10 ms frame
MEL_MARGIN = 2                 # frames of audio read beyond a batch's windows on each side (the 25 ms FFT window)
VAD_FRAME_S = 0.03
VAD_AGGRESSIVENESS = 2         # webrtcvad 0 (lenient) .. 3 (strict)
MIN_PAUSE_S = 0.3
MIN_SPEECH_S = 0.2
TARGET_DBFS = -30              # resemblyzer's volume normalisation, raised only
WINDOW_FRAMES = 160            # 1.6 s, the encoder's partial-utterance length
STEP_FRAMES = 25               # 0.25 s
MIN_SPEECH_SHARE = 0.5         # a window is embedded when at least half of it is speech
BATCH_STEPS = 80               # window starts per batch: 20 s of the film's grid
ROW_KEEP = 0.3
EIGEN_MIN_SHARE = 0.4
MERGE_SIMILARITY = 0.75        # clusters this alike (mean cosine between their windows) are one speaker
MAX_CLUSTERED = 1500
KMEANS_SEED = 0
EMBEDDING_SIZE = 256
BATCH_S = BATCH_STEPS * STEP_FRAMES * FRAME_S


@dataclass(frozen=True)
class Speech:
    """What one pass over the audio learns: the speech mask, the audio's length and its volume gain."""

    mask: Any                  # one bool per 10 ms frame
    samples: int
    gain: float                # the factor that brings the whole film to TARGET_DBFS (1.0: already as loud)


def vad_decisions(pcm: Any, detector: Any) -> list[bool]:
    size = int(VAD_FRAME_S * SAMPLE_RATE)
    return [detector.is_speech(pcm[i:i + size].tobytes(), SAMPLE_RATE) for i in range(0, len(pcm) - size + 1, size)]


def volume_gain(sum_squares: int, count: int) -> float:
    """resemblyzer's normalize_volume(TARGET_DBFS, increase_only=True) as one factor, from the exact sum of the
    squared 16-bit samples (so it does not depend on how the audio was read)."""
    if count == 0 or sum_squares == 0:
        return 1.0
    dbfs = 10 * math.log10(sum_squares / count) - 20 * math.log10(32768)
    change = TARGET_DBFS - dbfs
    return 1.0 if change < 0 else 10 ** (change / 20)


def scan_speech(blocks: Iterable[Any]) -> Speech:
    """The speech mask (after filling short pauses and dropping short bursts) and the volume gain of audio given
    as consecutive blocks of float32 samples; only one block is held at a time."""
    import numpy as np
    import webrtcvad

    detector = webrtcvad.Vad(VAD_AGGRESSIVENESS)
    size = int(VAD_FRAME_S * SAMPLE_RATE)
    decisions: list[bool] = []
    rest = np.zeros(0, dtype="<i2")
    samples = sum_squares = 0
    for block in blocks:
        samples += len(block)
        exact = np.rint(block * 32768.0).astype(np.int64)
        sum_squares += int((exact * exact).sum())
        pcm = np.concatenate((rest, (np.clip(block, -1, 1) * 32767).astype("<i2")))
        whole = len(pcm) - len(pcm) % size
        decisions += vad_decisions(pcm[:whole], detector)
        rest = pcm[whole:]
    mask = np.repeat(np.array(decisions, dtype=bool), round(VAD_FRAME_S / FRAME_S))
    mask = np.pad(mask, (0, max(0, int(samples / SAMPLE_RATE / FRAME_S) - len(mask))))
    mask = smooth_mask(mask, round(MIN_PAUSE_S / FRAME_S), round(MIN_SPEECH_S / FRAME_S))
    return Speech(mask, samples, volume_gain(sum_squares, samples))


def runs_of(mask: Any) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    import numpy as np

    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def smooth_mask(mask: Any, min_gap: int, min_run: int) -> Any:
    out = mask.copy()
    runs = runs_of(out)
    for (_, end), (start, _) in itertools.pairwise(runs):
        if start - end < min_gap:
            out[end:start] = True
    for start, end in runs_of(out):
        if end - start < min_run:
            out[start:end] = False
    return out


def window_starts(speech: Speech) -> list[int]:
    """Start frames of the windows on the film's grid (every STEP_FRAMES) that are mostly speech."""
    import numpy as np

    frames = min(1 + speech.samples // HOP, len(speech.mask))       # mel frames (librosa centres them) and mask
    counts = np.concatenate(([0], np.cumsum(speech.mask, dtype=np.int64)))
    grid = np.arange(0, max(0, frames - WINDOW_FRAMES + 1), STEP_FRAMES)
    voiced = counts[grid + WINDOW_FRAMES] - counts[grid]
    return grid[voiced >= MIN_SPEECH_SHARE * WINDOW_FRAMES].tolist()


def batch_of(start: int) -> int:
    return start // (BATCH_STEPS * STEP_FRAMES)


def batch_audio(batch: int, samples: int) -> tuple[int, int]:
    """The samples [first, last) a batch's mel spectrogram is made from: its windows' frames, MEL_MARGIN more
    on each side (so no window frame's FFT reaches the chunk's padding), clipped to the film."""
    first_frame = batch * BATCH_STEPS * STEP_FRAMES
    last_frame = first_frame + (BATCH_STEPS - 1) * STEP_FRAMES + WINDOW_FRAMES
    return max(0, (first_frame - MEL_MARGIN) * HOP), min(samples, (last_frame + MEL_MARGIN) * HOP)


def span_audio(starts: list[int], samples: int) -> tuple[int, int]:
    """The samples [first, last) that embedding the windows ``starts`` (in order, not empty) reads."""
    return batch_audio(batch_of(starts[0]), samples)[0], batch_audio(batch_of(starts[-1]), samples)[1]


def load_encoder(device: Any) -> Any:
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device, verbose=False)


def embed_windows(audio: Any, offset: int, starts: list[int], speech: Speech, encoder: Any, device: Any,
                  on_batch: Callable[[int], None] | None = None) -> Any:
    """Unit-length GE2E embeddings of the windows ``starts``, one row each. ``audio`` is the film's samples from
    sample ``offset`` on and must hold ``span_audio(starts)``. ``on_batch`` gets the last start of each batch."""
    import numpy as np
    import torch
    from resemblyzer.audio import wav_to_mel_spectrogram

    parts = []
    for batch, group in itertools.groupby(starts, key=batch_of):
        group = list(group)
        first, last = batch_audio(batch, speech.samples)
        chunk = audio[first - offset:last - offset]
        if speech.gain != 1.0:
            chunk = chunk * np.float32(speech.gain)
        mel = wav_to_mel_spectrogram(chunk)
        base = first // HOP
        windows = np.stack([mel[s - base:s - base + WINDOW_FRAMES] for s in group])
        with torch.no_grad():
            parts.append(encoder(torch.from_numpy(windows).to(device)).cpu().numpy())
        if on_batch is not None:
            on_batch(group[-1])
    if not parts:
        return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
    emb = np.concatenate(parts)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)


def refined_affinity(emb: Any) -> Any:
    import numpy as np

    affinity = emb @ emb.T
    np.fill_diagonal(affinity, 1.0)
    keep = max(1, int(np.ceil(ROW_KEEP * len(affinity))))
    floor = np.sort(affinity, axis=1)[:, -keep][:, None]
    affinity = np.where(affinity >= floor, affinity, affinity * 0.01)
    affinity = np.maximum(affinity, affinity.T)
    affinity = affinity @ affinity.T
    affinity = affinity / affinity.max(axis=1, keepdims=True)
    return (affinity + affinity.T) / 2


def count_speakers(eigenvalues: Any, max_speakers: int) -> int:
    """The largest eigengap (ratio of neighbours) among eigenvalues that reach EIGEN_MIN_SHARE of the first."""
    values = [float(v) for v in eigenvalues]
    top = values[0] if values else 0.0
    candidates = [k for k in range(1, min(max_speakers, len(values) - 1) + 1) if values[k - 1] >= EIGEN_MIN_SHARE * top]
    if not candidates or top <= 0:
        return 1
    return max(candidates, key=lambda k: values[k - 1] / max(values[k], 1e-9))


def kmeans(points: Any, k: int, rounds: int = 100) -> Any:
    """Lloyd's k-means with k-means++ seeding from a fixed seed: labels, 0..k-1."""
    import numpy as np

    rng = np.random.default_rng(KMEANS_SEED)
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        dist = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(points[rng.choice(len(points), p=dist / dist.sum())] if dist.sum() > 0 else points[0])
    centres = np.stack(centres)
    labels = None
    for _ in range(rounds):
        new = ((points[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)
        if labels is not None and (new == labels).all():
            break
        labels = new
        centres = np.stack([points[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
    return labels


def merge_alike(emb: Any, labels: Any) -> Any:
    """Merge the two most alike clusters while the mean cosine between their members reaches MERGE_SIMILARITY;
    labels renumbered 0..k-1."""
    import numpy as np

    labels = labels.copy()
    while True:
        names = sorted(set(labels.tolist()))
        sums = {n: emb[labels == n].sum(0) for n in names}
        sizes = {n: int((labels == n).sum()) for n in names}
        pairs = [(float(sums[a] @ sums[b]) / (sizes[a] * sizes[b]), a, b) for i, a in enumerate(names)
                 for b in names[i + 1:]]
        if not pairs or max(pairs)[0] < MERGE_SIMILARITY:
            break
        _, a, b = max(pairs)
        labels[labels == b] = a
    return np.unique(labels, return_inverse=True)[1]


def cluster(emb: Any, max_speakers: int) -> Any:
    """A speaker label per embedding (0 is the first to speak)."""
    import numpy as np

    if len(emb) < 2:
        return np.zeros(len(emb), dtype=int)
    group = int(np.ceil(len(emb) / MAX_CLUSTERED))
    pooled = emb[::group]      # every group-th window: real windows, whose likeness does not change with length
    values, vectors = np.linalg.eigh(refined_affinity(pooled))
    values, vectors = values[::-1], vectors[:, ::-1]
    k = count_speakers(values, max_speakers)
    if k == 1:
        return np.zeros(len(emb), dtype=int)
    rows = vectors[:, :k] / np.maximum(np.linalg.norm(vectors[:, :k], axis=1, keepdims=True), 1e-9)
    pooled_labels = merge_alike(pooled, kmeans(rows, k))
    k = int(pooled_labels.max()) + 1
    centres = np.stack([pooled[pooled_labels == j].mean(0) for j in range(k) if (pooled_labels == j).any()])
    labels = (emb @ centres.T).argmax(1) if group > 1 else pooled_labels
    order = {old: new for new, old in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[v] for v in labels.tolist()], dtype=int)


def frame_labels(mask: Any, starts: list[int], labels: Any, speakers: int) -> Any:
    """A label per 10 ms frame (-1: no speech): the majority of the windows over it, else the nearest window's
    (the earlier one on a tie)."""
    import numpy as np

    votes = np.zeros((len(mask), max(1, speakers)), dtype=np.int16)
    for start, label in zip(starts, labels):
        votes[start:start + WINDOW_FRAMES, label] += 1
    voted = votes.sum(1) > 0
    out = np.where(mask & voted, votes.argmax(1), -1)
    lonely = np.flatnonzero(mask & ~voted)
    if starts and len(lonely):
        centres = np.array(starts) + WINDOW_FRAMES // 2
        after = np.clip(np.searchsorted(centres, lonely), 1, len(centres) - 1) if len(centres) > 1 else 0
        before = np.maximum(after - 1, 0)
        nearest = np.where(np.abs(centres[before] - lonely) <= np.abs(centres[after] - lonely), before, after)
        out[lonely] = np.asarray(labels)[nearest]
    return out


def turns_of(frames: Any) -> list[dict[str, Any]]:
    """Runs of one label as turns: start and end in seconds, speaker SPEAKER_NN."""
    turns: list[dict[str, Any]] = []
    for start, end in runs_of(frames >= 0):
        segment = frames[start:end]
        cuts = [0, *(i + 1 for i in range(len(segment) - 1) if segment[i] != segment[i + 1]), len(segment)]
        for a, b in itertools.pairwise(cuts):
            turns.append({"start": round((start + a) * FRAME_S, 3), "end": round((start + b) * FRAME_S, 3),
                          "speaker": f"SPEAKER_{int(segment[a]):02d}"})
    return turns


def speaker_turns(speech: Speech, starts: list[int], emb: Any, max_speakers: int
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Speaker turns from the windows' embeddings, and what the backend did (speech seconds, windows, speakers)."""
    import numpy as np

    labels = cluster(emb, max_speakers)
    if len(labels):
        speakers = int(labels.max()) + 1
        turns = turns_of(frame_labels(speech.mask, starts, labels, speakers))
    else:                      # speech too short for one window: one speaker, if any
        speakers = int(speech.mask.any())
        turns = turns_of(np.where(speech.mask, 0, -1))
    return turns, {"speech_s": round(float(speech.mask.sum()) * FRAME_S, 2), "windows": len(starts),
                   "speakers": speakers, "window_s": WINDOW_FRAMES * FRAME_S, "step_s": STEP_FRAMES * FRAME_S}


def diarize_offline(samples: Any, max_speakers: int, device: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Speaker turns of in-memory ``samples``: the same steps and numbers as a film embedded span by span."""
    speech = scan_speech([samples])
    starts = window_starts(speech)
    emb = embed_windows(samples, 0, starts, speech, load_encoder(device) if starts else None, device)
    return speaker_turns(speech, starts, emb, max_speakers)
