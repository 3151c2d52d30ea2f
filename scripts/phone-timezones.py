#!/usr/bin/env python3
"""Writes crates/core/src/data/timezones.tsv: the time zones of phone numbers by prefix, for the
countries we send SMS to, from libphonenumber's own table (the Python port, at the metadata
version the `phonenumber` crate carries):

    python3 -m venv /tmp/pnv && /tmp/pnv/bin/pip install phonenumbers==9.0.42
    /tmp/pnv/bin/python scripts/phone-timezones.py

One line per prefix (country calling code and the digits after it): the prefix, then its IANA
zones separated by spaces. sms-core reads a number's zones from the longest prefix that
matches (crates/core/src/quiet.rs).
"""

import os

import phonenumbers
import phonenumbers.tzdata as tzdata

assert phonenumbers.__version__ == "9.0.42", phonenumbers.__version__

# Calling codes of the supported countries (+1 covers US, CA and PR).
CODES = ["1", "44", "49", "61", "33", "32", "45", "972", "27", "43", "41", "358", "31", "48", "46"]

out = os.path.join(os.path.dirname(__file__), "..", "crates", "core", "src", "data", "timezones.tsv")
rows = sorted(
    (prefix, zones)
    for prefix, zones in tzdata.TIMEZONE_DATA.items()
    if any(prefix.startswith(code) for code in CODES)
)
with open(out, "w") as f:
    f.write("# Time zones of phone numbers by prefix, from libphonenumber %s "
            "(scripts/phone-timezones.py)\n" % phonenumbers.__version__)
    for prefix, zones in rows:
        f.write("%s\t%s\n" % (prefix, " ".join(zones)))
print(len(rows), "prefixes")
