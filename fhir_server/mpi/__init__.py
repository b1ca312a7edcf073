"""The master patient index's pure core: normalising, comparing and scoring Patients.

No I/O here (an import-linter contract keeps it so): ``features`` turns a Patient into the
values matching needs, ``names`` normalises Indonesian names, ``compare`` compares one field,
``scoring`` weighs the comparisons into a score, a grade and reasons, and ``blocking`` gives
the keys candidates are found by. The storage and the operations live elsewhere (docs/mpi.md).
"""
