"""The offline diarization backend: who speaks when, from a speaker-embedding model that a package ships.

1. Speech: WebRTC's VAD (the ``webrtcvad`` package, which resemblyzer needs
   anyway) marks 30 ms frames, or pyannote's segmentation model gives a speech
   probability per 10 ms (stages/_segmentation.py, when the model is cached);
   pauses shorter than min_pause_s are filled and bursts shorter than
   min_speech_s dropped. The audio is read a block at a time (``vad_scan``);
   the smoothing runs on the whole film's mask, which is small (one bool per
   10 ms).
2. Embeddings: resemblyzer's GE2E encoder embeds 1.6 s windows, one every
   0.25 s, that are mostly speech (min_speech_share). The windows lie on the
   film's grid, and they are embedded in batches of BATCH_STEPS grid steps:
   each batch's mel spectrogram is made from that batch's own stretch of
   audio, with the volume normalised by one gain for the whole film
   (resemblyzer's normalize_volume). So every embedding is computed from the
   same numbers in the same order however the film is split into spans
   (``embed_windows``), and a caller can embed the film span by span, holding
   one span's audio at a time.
3. Clustering (stages/_clustering.py). With linkage_similarity set:
   average-linkage clustering of the windows by cosine, cut where clusters are
   less alike than linkage_similarity; clusters holding less than
   min_cluster_share of the windows are not speakers, and every window joins
   the speaker whose centre it is nearest to. With linkage_when_more (the
   stage's TUNED), those clusters are taken only where they are more than the
   spectral clustering's. Spectral clustering of the windows' refined cosine affinity
   (row_keep); the number of speakers is the largest
   eigengap among the eigenvalues that reach eigen_min_share of the largest (at
   most the job's max_speakers); k-means on the eigenvectors gives the labels;
   then clusters whose windows are on average at least merge_similarity alike
   are merged (agglomeration with a stopping threshold): the eigengap alone
   splits one voice whose delivery varies. Clusters of fewer than
   min_cluster_windows windows may join their nearest speaker. Long films are
   sampled to at most MAX_CLUSTERED windows first (every n-th window) and every
   window then joins its nearest speaker. Averaging neighbouring windows
   instead makes two voices look more alike the longer the film, until the
   merge joins them: a two-hour film of two voices came out as one speaker.
4. Resegmentation (switch_penalty > 0): Viterbi over the windows in time order,
   each scored by its cosine to each speaker's centre, a change of speaker
   costing switch_penalty.
5. Turns: every speech frame takes the label most of its windows carry. With
   the segmentation model, runs of overlapped speech (its probability at least
   overlap_threshold) also go to the nearest other speaker.

The thresholds are a ``Settings``. bench/diarization.py searches them on the
sets that bench/speechsets.py builds, and ``TODAY`` keeps the settings before
that work. TUNED (speech from WebRTC) won its second round: tuned on two of the
three sets whose figures had been seen and scored on the third, it had the
lowest DER. Its speakers are the eigengap's, or average linkage's where that
counts more, which bench/speaker_count.py chose the same way on four sets
(LINKAGE, linkage alone, hears one speaker in two-speaker samples). So the stage takes speech
from WebRTC unless a job asks for the segmentation model (SPEECH_SOURCES);
TUNED_MODEL is that path's thresholds from the first round (docs/BENCHMARKS.md).
The rule for the number of speakers favours fewer speakers: a speaker with
little speech may be merged into another.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from stages._clustering import (absorb_small, count_speakers, kmeans, linkage_clusters, merge_alike, refined_affinity,
                               resegment)

__all__ = ["absorb_small", "count_speakers", "kmeans", "merge_alike", "refined_affinity", "resegment"]

SAMPLE_RATE = 16000
FRAME_S = 0.01                 # the label grid, and resemblyzer's mel frame step
HOP = 160                      # samples per 10 ms frame
MEL_MARGIN = 2                 # frames of audio read beyond a batch's windows on each side (the 25 ms FFT window)
VAD_FRAME_S = 0.03
TARGET_DBFS = -30              # resemblyzer's volume normalisation, raised only
WINDOW_FRAMES = 160            # 1.6 s, the encoder's partial-utterance length
STEP_FRAMES = 25               # 0.25 s
BATCH_STEPS = 80               # window starts per batch: 20 s of the film's grid
MAX_CLUSTERED = 1500
EMBEDDING_SIZE = 256
BATCH_S = BATCH_STEPS * STEP_FRAMES * FRAME_S


@dataclass(frozen=True)
class Settings:
    """The diarizer's thresholds."""

    vad_aggressiveness: int    # webrtcvad 0 (lenient) .. 3 (strict)
    min_pause_s: float         # pauses shorter than this are filled
    min_speech_s: float        # bursts shorter than this are dropped
    min_speech_share: float    # a window is embedded when at least this share of it is speech
    row_keep: float            # the share of each affinity row kept by the refinement
    eigen_min_share: float     # eigenvalues counted for the eigengap: at least this share of the largest
    merge_similarity: float    # clusters this alike (mean cosine between their windows) are one speaker
    min_cluster_windows: int   # clusters with fewer windows join their nearest speaker (0: none)
    switch_penalty: float      # the Viterbi resegmentation's cost of a change of speaker (0: no resegmentation)
    use_segmentation: bool = False   # speech (and overlap) from pyannote's segmentation model instead of WebRTC
    speech_threshold: float = 0.5    # with pyannote's segmentation model: speech where its probability reaches this
    overlap_threshold: float = 1.01  # with it: a second speaker where overlap's probability reaches this (> 1: never)
    linkage_similarity: float = 0.0  # > 0: the count from average linkage cut at this cosine, not the eigengap
    min_cluster_share: float = 0.0   # with linkage: clusters with less of the windows join the nearest speaker
    linkage_when_more: bool = False  # with linkage: its clusters only where it counts more than the eigengap


TODAY = Settings(vad_aggressiveness=2, min_pause_s=0.3, min_speech_s=0.2, min_speech_share=0.5, row_keep=0.3,
                 eigen_min_share=0.4, merge_similarity=0.75, min_cluster_windows=0, switch_penalty=0.0)
# What bench/diarization.py --second-round chose: WebRTC with its speech thresholds tuned on the development,
# validation and final sets; the clustering keeps TODAY's thresholds (docs/BENCHMARKS.md, "Diarization on real
# speech"). TUNED_MODEL: the segmentation model's speech and overlap thresholds from the first round.
# The speakers: the eigengap's clusters, or average linkage's (cut at 0.6, clusters under 10% of the windows
# joined) where linkage counts more, as bench/speaker_count.py's second rule chose on the four spent sets.
TUNED = Settings(vad_aggressiveness=3, min_pause_s=0.2, min_speech_s=0.1, min_speech_share=0.4, row_keep=0.3,
                 eigen_min_share=0.4, merge_similarity=0.75, min_cluster_windows=0, switch_penalty=0.0,
                 linkage_similarity=0.6, min_cluster_share=0.1, linkage_when_more=True)
# Linkage alone, which the first rule chose: two-speaker samples come out as one speaker with it.
LINKAGE = replace(TUNED, linkage_when_more=False)
TUNED_MODEL = Settings(vad_aggressiveness=2, min_pause_s=0.1, min_speech_s=0.2, min_speech_share=0.3, row_keep=0.3,
                       eigen_min_share=0.4, merge_similarity=0.75, min_cluster_windows=0, switch_penalty=0.0,
                       use_segmentation=True, speech_threshold=0.6, overlap_threshold=0.7)
SPEECH_SOURCES = ("webrtc", "model")     # job.json config diarize_speech; the first is the default
VAD_AGGRESSIVENESS = TUNED.vad_aggressiveness
MIN_PAUSE_S = TUNED.min_pause_s
MIN_SPEECH_S = TUNED.min_speech_s
MIN_SPEECH_SHARE = TUNED.min_speech_share
ROW_KEEP = TUNED.row_keep
EIGEN_MIN_SHARE = TUNED.eigen_min_share
MERGE_SIMILARITY = TUNED.merge_similarity
MIN_CLUSTER_WINDOWS = TUNED.min_cluster_windows
SWITCH_PENALTY = TUNED.switch_penalty


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


def scan_speech(blocks: Iterable[Any], settings: Settings = TUNED) -> Speech:
    """The speech mask (after filling short pauses and dropping short bursts) and the volume gain of audio given
    as consecutive blocks of float32 samples; only one block is held at a time."""
    decisions, samples, gain = vad_scan(blocks, settings.vad_aggressiveness)
    return speech_of(decisions, samples, gain, settings)


def vad_scan(blocks: Iterable[Any], aggressiveness: int) -> tuple[Any, int, float]:
    """WebRTC's decision per 30 ms frame, the number of samples, and the volume gain, one block at a time."""
    import numpy as np
    import webrtcvad

    detector = webrtcvad.Vad(aggressiveness)
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
    return np.array(decisions, dtype=bool), samples, volume_gain(sum_squares, samples)


def speech_of(decisions: Any, samples: int, gain: float, settings: Settings = TUNED) -> Speech:
    """The speech mask on the 10 ms grid from WebRTC's 30 ms decisions, short pauses filled, short bursts dropped."""
    import numpy as np

    mask = np.repeat(decisions, round(VAD_FRAME_S / FRAME_S))
    mask = np.pad(mask, (0, max(0, int(samples / SAMPLE_RATE / FRAME_S) - len(mask))))
    mask = smooth_mask(mask, round(settings.min_pause_s / FRAME_S), round(settings.min_speech_s / FRAME_S))
    return Speech(mask, samples, gain)


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


def speech_of_model(probability: Any, samples: int, gain: float, settings: Settings = TUNED) -> Speech:
    """The speech mask from the segmentation model's speech probability per 10 ms frame, smoothed likewise."""
    mask = smooth_mask(probability >= settings.speech_threshold, round(settings.min_pause_s / FRAME_S),
                       round(settings.min_speech_s / FRAME_S))
    return Speech(mask, samples, gain)


def overlap_turns(frames: Any, overlap: Any, reach: int = 200) -> list[dict[str, Any]]:
    """Second speakers: each run of overlapped speech (a bool per 10 ms frame) also goes to the speaker nearest
    to it (within ``reach`` frames either side) who is not the run's own (its most frequent label)."""
    import numpy as np

    out = []
    for start, end in runs_of(overlap & (frames >= 0)):
        own = int(np.bincount(frames[start:end]).argmax())
        best = None
        for distance, label in ((d, frames[start - 1 - d]) for d in range(min(reach, start))):
            if label >= 0 and label != own:
                best = (distance, int(label))
                break
        for distance, label in ((d, frames[end + d]) for d in range(min(reach, len(frames) - end))):
            if label >= 0 and label != own:
                best = min(best, (distance, int(label))) if best else (distance, int(label))
                break
        if best:
            out.append({"start": round(start * FRAME_S, 3), "end": round(end * FRAME_S, 3),
                        "speaker": f"SPEAKER_{best[1]:02d}"})
    return out


def window_starts(speech: Speech, settings: Settings = TUNED) -> list[int]:
    """Start frames of the windows on the film's grid (every STEP_FRAMES) that are mostly speech."""
    import numpy as np

    frames = min(1 + speech.samples // HOP, len(speech.mask))       # mel frames (librosa centres them) and mask
    counts = np.concatenate(([0], np.cumsum(speech.mask, dtype=np.int64)))
    grid = np.arange(0, max(0, frames - WINDOW_FRAMES + 1), STEP_FRAMES)
    voiced = counts[grid + WINDOW_FRAMES] - counts[grid]
    return grid[voiced >= settings.min_speech_share * WINDOW_FRAMES].tolist()


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


def cluster(emb: Any, max_speakers: int, settings: Settings = TUNED) -> Any:
    """A speaker label per embedding (0 is the first to speak); ``emb`` in time order."""
    import numpy as np

    if len(emb) < 2:
        return np.zeros(len(emb), dtype=int)
    group = int(np.ceil(len(emb) / MAX_CLUSTERED))
    pooled = emb[::group]      # every group-th window: real windows, whose likeness does not change with length

    def spread(pooled_labels: Any, penalty: float = 0.0) -> Any:
        """Every window to the nearest centre of the pooled clusters, then in order of first speech."""
        k = int(pooled_labels.max()) + 1
        centres = np.stack([pooled[pooled_labels == j].mean(0) for j in range(k) if (pooled_labels == j).any()])
        labels = resegment(emb, (emb @ centres.T).argmax(1) if group > 1 else pooled_labels, penalty)
        order = {old: new for new, old in enumerate(dict.fromkeys(labels.tolist()))}
        return np.array([order[v] for v in labels.tolist()], dtype=int)

    linked = None
    if settings.linkage_similarity > 0:
        linked = linkage_clusters(pooled, settings.linkage_similarity, settings.min_cluster_share, max_speakers)
        if not settings.linkage_when_more:
            return spread(linked)
    spectral = spectral_clusters(pooled, max_speakers, settings)
    if linked is not None and linked.max() > spectral.max():
        return spread(linked)
    return spread(spectral, settings.switch_penalty)


def spectral_clusters(pooled: Any, max_speakers: int, settings: Settings) -> Any:
    """Labels 0..k-1 of the pooled windows: the eigengap's count, k-means on the eigenvectors, then the merge
    of alike clusters and the small-cluster rule."""
    import numpy as np

    values, vectors = np.linalg.eigh(refined_affinity(pooled, settings.row_keep))
    values, vectors = values[::-1], vectors[:, ::-1]
    k = count_speakers(values, max_speakers, settings.eigen_min_share)
    if k == 1:
        return np.zeros(len(pooled), dtype=int)
    rows = vectors[:, :k] / np.maximum(np.linalg.norm(vectors[:, :k], axis=1, keepdims=True), 1e-9)
    labels = merge_alike(pooled, kmeans(rows, k), settings.merge_similarity)
    return absorb_small(pooled, labels, settings.min_cluster_windows)


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


def speaker_turns(speech: Speech, starts: list[int], emb: Any, max_speakers: int, settings: Settings = TUNED,
                  overlap: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Speaker turns from the windows' embeddings, and what the backend did (speech seconds, windows, speakers).
    ``overlap``: the segmentation model's probability of overlapped speech per 10 ms frame, when it ran."""
    import numpy as np

    labels = cluster(emb, max_speakers, settings)
    if len(labels):
        speakers = int(labels.max()) + 1
        frames = frame_labels(speech.mask, starts, labels, speakers)
        turns = turns_of(frames)
        if overlap is not None and speakers > 1:
            n = min(len(frames), len(overlap))
            turns += overlap_turns(frames[:n], overlap[:n] >= settings.overlap_threshold)
    else:                      # speech too short for one window: one speaker, if any
        speakers = int(speech.mask.any())
        turns = turns_of(np.where(speech.mask, 0, -1))
    return turns, {"speech_s": round(float(speech.mask.sum()) * FRAME_S, 2), "windows": len(starts),
                   "speakers": speakers, "window_s": WINDOW_FRAMES * FRAME_S, "step_s": STEP_FRAMES * FRAME_S}


def diarize_offline(samples: Any, max_speakers: int, device: Any, settings: Settings = TUNED
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Speaker turns of in-memory ``samples``: the same steps and numbers as a film embedded span by span."""
    speech = scan_speech([samples], settings)
    starts = window_starts(speech, settings)
    emb = embed_windows(samples, 0, starts, speech, load_encoder(device) if starts else None, device)
    return speaker_turns(speech, starts, emb, max_speakers, settings)
