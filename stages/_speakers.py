"""The offline diarization backend: who speaks when, from a speaker-embedding model that a package ships.

1. Speech: WebRTC's VAD (the ``webrtcvad`` package, which resemblyzer needs
   anyway) marks 30 ms frames; pauses shorter than MIN_PAUSE_S are filled and
   bursts shorter than MIN_SPEECH_S dropped.
2. Embeddings: resemblyzer's GE2E encoder embeds 1.6 s windows, one every
   0.25 s, that are mostly speech.
3. Clustering: spectral clustering of the windows' cosine affinity, refined as
   in Wang et al. (2018) for d-vectors: each row keeps its top ROW_KEEP share,
   then symmetrise, diffuse and row-normalise. The number of speakers is the
   largest eigengap among the eigenvalues that reach EIGEN_MIN_SHARE of the
   largest (at most the job's max_speakers); k-means on the eigenvectors gives
   the labels. Then clusters whose windows are on average at least
   MERGE_SIMILARITY alike are merged: the eigengap alone splits one voice whose
   delivery varies. Long films are pooled to at most MAX_CLUSTERED windows first
   and every window then joins its nearest speaker.
4. Turns: every speech frame takes the label most of its windows carry.

The rule for the number of speakers favours fewer speakers: a speaker with
little speech may be merged into another. Overlapping speech gets one speaker.
"""

from __future__ import annotations

from typing import Any

SAMPLE_RATE = 16000
FRAME_S = 0.01                 # the label grid, and resemblyzer's mel frame step
VAD_FRAME_S = 0.03
VAD_AGGRESSIVENESS = 2         # webrtcvad 0 (lenient) .. 3 (strict)
MIN_PAUSE_S = 0.3
MIN_SPEECH_S = 0.2
WINDOW_FRAMES = 160            # 1.6 s, the encoder's partial-utterance length
STEP_FRAMES = 25               # 0.25 s
MIN_SPEECH_SHARE = 0.5         # a window is embedded when at least half of it is speech
ROW_KEEP = 0.3
EIGEN_MIN_SHARE = 0.4
MERGE_SIMILARITY = 0.75        # clusters this alike (mean cosine between their windows) are one speaker
MAX_CLUSTERED = 1500
KMEANS_SEED = 0
BATCH = 256


def speech_mask(samples: Any) -> Any:
    """One bool per 10 ms frame: speech, after filling short pauses and dropping short bursts."""
    import numpy as np
    import webrtcvad

    detector = webrtcvad.Vad(VAD_AGGRESSIVENESS)
    size = int(VAD_FRAME_S * SAMPLE_RATE)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    decisions = [detector.is_speech(pcm[i:i + size].tobytes(), SAMPLE_RATE)
                 for i in range(0, len(pcm) - size + 1, size)]
    mask = np.repeat(np.array(decisions, dtype=bool), round(VAD_FRAME_S / FRAME_S))
    mask = np.pad(mask, (0, max(0, int(len(samples) / SAMPLE_RATE / FRAME_S) - len(mask))))
    return smooth_mask(mask, round(MIN_PAUSE_S / FRAME_S), round(MIN_SPEECH_S / FRAME_S))


def runs_of(mask: Any) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    import numpy as np

    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def smooth_mask(mask: Any, min_gap: int, min_run: int) -> Any:
    out = mask.copy()
    runs = runs_of(out)
    for (_, end), (start, _) in zip(runs, runs[1:]):
        if start - end < min_gap:
            out[end:start] = True
    for start, end in runs_of(out):
        if end - start < min_run:
            out[start:end] = False
    return out


def embed_windows(samples: Any, mask: Any, device: Any) -> tuple[list[int], Any]:
    """Start frames of the windows that are mostly speech, and their unit-length GE2E embeddings."""
    import numpy as np
    import torch
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    mel = wav_to_mel_spectrogram(normalize_volume(samples, -30, increase_only=True))
    frames = min(len(mel), len(mask))
    starts = [s for s in range(0, max(1, frames - WINDOW_FRAMES + 1), STEP_FRAMES)
              if mask[s:s + WINDOW_FRAMES].mean() >= MIN_SPEECH_SHARE and s + WINDOW_FRAMES <= len(mel)]
    if not starts:
        return [], np.zeros((0, 256), dtype=np.float32)
    encoder = VoiceEncoder(device, verbose=False)
    parts = []
    with torch.no_grad():
        for i in range(0, len(starts), BATCH):
            batch = np.stack([mel[s:s + WINDOW_FRAMES] for s in starts[i:i + BATCH]])
            parts.append(encoder(torch.from_numpy(batch).to(device)).cpu().numpy())
    emb = np.concatenate(parts)
    return starts, emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)


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
    pooled = np.stack([emb[i:i + group].mean(0) for i in range(0, len(emb), group)])
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
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
    """A label per 10 ms frame (-1: no speech): the majority of the windows over it, else the nearest window's."""
    import numpy as np

    votes = np.zeros((len(mask), max(1, speakers)))
    for start, label in zip(starts, labels):
        votes[start:start + WINDOW_FRAMES, label] += 1
    voted = votes.sum(1) > 0
    out = np.where(mask & voted, votes.argmax(1), -1)
    if starts:
        centres = np.array(starts) + WINDOW_FRAMES // 2
        for frame in np.flatnonzero(mask & ~voted):
            out[frame] = labels[int(np.abs(centres - frame).argmin())]
    return out


def turns_of(frames: Any) -> list[dict[str, Any]]:
    """Runs of one label as turns: start and end in seconds, speaker SPEAKER_NN."""
    turns: list[dict[str, Any]] = []
    for start, end in runs_of(frames >= 0):
        segment = frames[start:end]
        cuts = [0, *(i + 1 for i in range(len(segment) - 1) if segment[i] != segment[i + 1]), len(segment)]
        for a, b in zip(cuts, cuts[1:]):
            turns.append({"start": round((start + a) * FRAME_S, 3), "end": round((start + b) * FRAME_S, 3),
                          "speaker": f"SPEAKER_{int(segment[a]):02d}"})
    return turns


def diarize_offline(samples: Any, max_speakers: int, device: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Speaker turns of ``samples`` and what the backend did (speech seconds, windows, speakers)."""
    import numpy as np

    mask = speech_mask(samples)
    starts, emb = embed_windows(samples, mask, device)
    labels = cluster(emb, max_speakers)
    if len(labels):
        speakers = int(labels.max()) + 1
        turns = turns_of(frame_labels(mask, starts, labels, speakers))
    else:                      # speech too short for one window: one speaker, if any
        speakers = int(mask.any())
        turns = turns_of(np.where(mask, 0, -1))
    return turns, {"speech_s": round(float(mask.sum()) * FRAME_S, 2), "windows": len(starts),
                   "speakers": speakers, "window_s": WINDOW_FRAMES * FRAME_S, "step_s": STEP_FRAMES * FRAME_S}
