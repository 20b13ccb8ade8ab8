#!/usr/bin/env python3
"""Checks what `launcher search` printed against what registry_gen.py says it should list.

    registry_check.py EXPECTED.json KEY OUTPUT {text|json}

KEY is `listed` (no query: every plugin, at the version a bare install would pick), or a
`word:W` / `task:T` key the generator filled in. OUTPUT is the file search wrote, as text (one
plugin a line: name, version, ...) or as the `--json` array. Both the names and the versions
must agree. Prints the number of plugins listed; on a mismatch says what differs and exits 1.
"""

import json
import sys


def listed_by_launcher(path, form):
    """name -> version, from either output form."""
    with open(path) as f:
        if form == "json":
            return {item["name"]: item["version"] for item in json.load(f)}
        found = {}
        for line in f:
            fields = line.split()
            if fields:
                found[fields[0]] = fields[1]
        return found


def main():
    if len(sys.argv) != 5 or sys.argv[4] not in ("text", "json"):
        sys.exit(__doc__)
    expected_path, key, output, form = sys.argv[1:]
    with open(expected_path) as f:
        expected = json.load(f)
    versions = expected["listed"]
    wanted = {name: versions[name] for name in expected[key]} if key != "listed" else versions
    got = listed_by_launcher(output, form)

    missing = sorted(set(wanted) - set(got))
    extra = sorted(set(got) - set(wanted))
    wrong = sorted(n for n in set(wanted) & set(got) if wanted[n] != got[n])
    if missing or extra or wrong:
        # A few of each is enough to see what went wrong.
        sys.stderr.write(
            f"search `{key}` listed {len(got)} plugins, expected {len(wanted)}: "
            f"missing {missing[:5]} ({len(missing)}), unexpected {extra[:5]} ({len(extra)}), "
            f"other version {[(n, got[n], wanted[n]) for n in wrong[:5]]} ({len(wrong)})\n")
        sys.exit(1)
    print(len(got))


if __name__ == "__main__":
    main()
