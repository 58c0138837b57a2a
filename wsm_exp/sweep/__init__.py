"""The runner: one Hydra job per merge variant, laid out by the flow of a job, one way.

    spec/      what a job is, as data: config schemas, ConfigError, Variant (no I/O)
    record/    what every step writes through: result rows, folder identity, freshness, W&B, console
    planning/  from config alone: jobs composed by Hydra, plan_job -> JobPlan, series sources
    check/     before any work: the pre-flight of every job, plan=true, the gate (exit 2 or claim)
    stage/     ahead of the jobs: every merge they need, in one pass
    run/       one job: merge if needed, evaluate, write its rows (the SFT job is the other kind)
    callbacks  Hydra glue on top (with wsm_exp/__main__.py)

A step imports only the steps listed above it (check and stage not each other); tests/test_house.py
checks it.
"""
