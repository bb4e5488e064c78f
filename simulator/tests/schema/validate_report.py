#!/usr/bin/env python3
"""validate_report.py SCHEMA REPORT...: validate ucupdate-sim JSON reports against the JSON
Schema in docs/report.schema.json with Python's `jsonschema` (an implementation independent of
the simulator's serde code). Prints every violation; exit 0 when all reports are valid, 1 when
one is not, 2 when the validator cannot run."""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("validate_report.py: python3 -m pip install jsonschema", file=sys.stderr)
    sys.exit(2)

schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
bad = 0
for path in sys.argv[2:]:
    report = json.load(open(path))
    for error in sorted(validator.iter_errors(report), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path) or "(top)"
        print(f"{path}: {where}: {error.message}")
        bad += 1
    if bad == 0:
        print(f"{path}: valid")
sys.exit(1 if bad else 0)
