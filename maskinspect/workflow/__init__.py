"""The pipeline as a graph of stages, declared once, and what turns it into each front end.

    stages.py     THE TABLE: every stage, its files by role, its params, its resources
    declare.py    what a declaration is, and the command line, files and arguments it implies
    layout.py     what params.yaml says about the data: which stages exist, which files they see
    codedeps.py   a stage's code: its script and the package modules it imports
    dvcfile.py    dvc.yaml, written from the table
    settings.py   per-stage settings files (command and params) that Snakemake times
    agreement.py  keeping Snakemake's file times and DVC's dvc.lock in agreement
    locks.py      one build at a time in a checkout
    runner.py     the stage runner every scripts/<stage>.py goes through: arguments from the table,
                  params validated, outputs changed together or not at all, one-line errors
    params.py     params.yaml and its one schema (params.schema.yaml)
    pinned.py     outside inputs, fetched by pin (pins/*.yaml)
    frontend.py   what the Snakefile needs to know of how it was called

The Snakefile and dvc.yaml both come from stages.py, so the two front ends run the very same
commands on the very same files; each script's argument parser comes from its declaration too
(runner.py). Nothing here imports the code that computes (torch, ffmpeg, TensorFlow):
reading the graph is cheap.
"""
