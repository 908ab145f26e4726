"""The VAD's fallback for quiet speech, level by level: what Silero hears, what the stage hands to ASR, what ASR gets.

pyannote.audio's sample (30 s, two speakers, reference transcript sample.stm;
fetched as bench/quality.py does) is turned down by each --levels dB with
FFmpeg's volume filter and run through `infra run --workflow transcribe --mode
native --model M --language en` (demux, vad, asr) in a fresh workspace. For
each level: the speech Silero finds at the usual threshold, the fallback the
stage took, the speech handed to ASR, the loudness it measured (the louder
parts' level and the sounding seconds), and the words ASR wrote with their WER
against sample.stm (infra/quality/scoring.py). One run per level: the stages
are deterministic on one machine.

Usage: .venv/bin/python bench/quiet_speech.py --model-cache DIR [--model tiny.en]
       [--levels 0 35 40 44 46 50 55 60] [--cache ~/.cache/infra/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from infra.quality.scoring import read_stm, word_errors  # noqa: E402
from quality import sample_files  # noqa: E402


def quieter(wav: Path, db: float, out: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(wav), "-af", f"volume=-{db}dB",
                    "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(out)], check=True)
    return out


def run_level(work: Path, wav: Path, model: str, env: dict[str, str]) -> Path:
    proc = subprocess.run([sys.executable, "-m", "infra", "run", str(wav), "--workflow", "transcribe", "--mode",
                           "native", "--model", model, "--language", "en", "--json"], cwd=work, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"infra run {wav.name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    (film,) = json.loads(proc.stdout)
    return Path(film["dir"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-cache", type=Path, required=True)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--levels", type=float, nargs="+", default=[0, 35, 40, 44, 46, 50, 55, 60])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench")
    parser.add_argument("--native-env", type=Path, default=REPO / ".venv-ml")
    args = parser.parse_args()
    files = sample_files(args.cache)
    reference = read_stm(files["stm"])
    env = {k: v for k, v in os.environ.items() if k != "INFRA_FILE"}
    env["INFRA_CACHE"] = str(args.model_cache.resolve())
    print(f"pyannote.audio sample.wav turned down, {args.model}, natively; speech in seconds, levels in dBFS")
    print("| down | speech at the threshold | fallback | speech to ASR | louder parts | sounding | words | WER |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / ".venv-ml").symlink_to(args.native_env.resolve())
        for db in args.levels:
            job = run_level(work, quieter(files["wav"], db, work / f"sample-{db:g}dB.wav"), args.model, env)
            vad = json.loads((job / "vad.json").read_text())
            asr = json.loads((job / "asr.json").read_text())
            heard = " ".join(w["word"] for seg in asr["segments"] for w in seg["words"])
            level = vad["loudness"]
            wer = f"{word_errors(reference, heard).wer:.1%}"
            print(f"| {db:g} dB | {vad['speech_s_at_threshold']:.1f} | {vad['fallback'] or '-'} | "
                  f"{vad['speech_s']:.1f} | {level['loud_dbfs']} | {level['sounding_s']} | "
                  f"{len(heard.split())} | {wer} |")


if __name__ == "__main__":
    main()
