"""Survey many checkpoints into one Parquet table (``rankscope survey``).

``discover`` finds the checkpoints under the given paths, ``worker.survey_one`` inspects one
checkpoint (the same code path as ``rankscope inspect --json``) into rows of ``schema.SCHEMA``,
``local`` (a process pool) or ``ray_backend`` (Ray tasks) run it over all of them, ``parts`` writes
the results as atomic part files and merges them, ``runner.run_survey`` ties these together with
resume, and ``summary`` reads a finished table back.
"""
