"""The build report a person opens (dist/report.html) and its figures."""
