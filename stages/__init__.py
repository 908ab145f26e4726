"""The pipeline's stage programs, run natively or in the stage images.

Each stage is a module run as ``python3 -m stages.<name>`` (its ``command`` in
infra.yaml). In containers the package sits at /opt/infra/stages, and the
compose services run ``python3 -m stages.worker <stage>``, which serves one
stage and answers ``python3 -m stages.worker --health <stage>``.

The contract every stage keeps:

- it runs in the job directory and reads its inputs there, with ``job.json``
  describing the job (the stage's ``inputs`` in infra.yaml);
- it writes its outputs into the same directory (the stage's ``outputs``) and a
  small result record: status, timings, versions of what it used;
- on failure it exits non-zero with a one-line message on stderr that says
  what went wrong, and leaves the job directory consistent so a rerun resumes.

``_jobio.py`` keeps the contract (job.json, result records in ``results/``,
locked updates of the stage's entry, exit codes 2 for bad input and 1 for a
failed run); ``_audio.py``, ``_ffmpeg.py``, ``_models.py`` and ``_speakers.py``
are helpers the stages share. Stage programs import only the standard library,
numpy and their own ML libraries, never infra: in their images infra is not
installed.
"""
