"""Reads a stub audit log the way administrators' scripts do (uclobby's
Get-CsPhoneReportFromUpdateLogs): line 1 must start with "Logging DateTime,", then
csv.DictReader by column name. Prints the columns those scripts use as JSON, one row per line.

Usage: python3 audit_csv.py FILE
"""
import csv
import json
import sys

COLUMNS = ["Logging DateTime", "User Host Address", "Mac Address", "Vendor", "Model", "Revision",
           "Request Modules", "Response Modules", "User ID"]

with open(sys.argv[1], newline="", encoding="utf-8") as f:
    first = f.readline()
    if not first.startswith("Logging DateTime,"):
        sys.exit("line 1 does not start with 'Logging DateTime,': %r" % first)
    f.seek(0)
    for row in csv.DictReader(f):
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            sys.exit("missing columns %r" % missing)
        if None in row:
            sys.exit("row has more fields than the header: %r" % row)
        print(json.dumps({c: row[c] for c in COLUMNS}))
