"""`maskinspect`, the command a person runs: check, emulate, label, status, checkout, push, pull."""
