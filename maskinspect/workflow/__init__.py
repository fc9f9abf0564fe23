"""The pipeline as a graph of stages, declared once, and what turns it into each front end.

    stages.py     THE TABLE: every stage, its files by role, its params, its resources
    declare.py    what a declaration is, and the command line, files and arguments it implies
    layout.py     what params.yaml says about the data: which stages exist, which files they see
    codedeps.py   a stage's code: its script and the package modules it imports
    dvcfile.py    dvc.yaml, written from the table
    settings.py   per-stage settings files (command and params) that Snakemake times
    agreement.py  keeping Snakemake's file times and DVC's dvc.lock in agreement
    locks.py      one build at a time in a checkout

The Snakefile and dvc.yaml both come from stages.py, so the two front ends run the very same
commands on the very same files; each script's argument parser comes from its declaration too
(maskinspect.cli). Nothing here imports the code that computes (torch, ffmpeg, TensorFlow):
reading the graph is cheap.
"""
