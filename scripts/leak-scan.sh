#!/usr/bin/env bash
# Searches every file under the given directories for leaked secrets and fails on any hit.
#
#   scripts/leak-scan.sh [--patterns FILE] [--exclude GLOB]... DIR...
#
# It looks, in text and binary files alike (logs, audit logs, stdout/stderr captures, SQLite
# databases and their -wal files, metrics output), for:
#
#   - canary secret values: any string starting with `kw-canary-`, which the end-to-end tests
#     use only as secret values;
#   - Keyward tokens: `kwt.` followed by 43 base64url characters;
#   - every literal line of FILE, if --patterns is given (blank lines and lines starting with
#     `#` are skipped).
#
# --exclude skips files whose path relative to its DIR matches GLOB (fnmatch, where `*` also
# matches `/`), for files a test wrote itself as client input.
#
# One exception: the banner a dev server prints on standard output (from "Keyward is running
# in development mode" to its `export VAULT_ADDR=` line) shows the root token on purpose,
# as `vault server -dev` does, so tokens in it are not counted.
#
# A hit prints the file, the kind of pattern and the byte offset, never the matched value.
# Exit status: 0 when nothing is found, 1 on a hit, 2 on a usage error.
set -euo pipefail

patterns_file=""
excludes=()
dirs=()
while (($# > 0)); do
    case "$1" in
        --patterns)
            patterns_file=${2:?"--patterns needs a file"}
            shift 2
            ;;
        --exclude)
            excludes+=("${2:?"--exclude needs a glob"}")
            shift 2
            ;;
        -h | --help)
            sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            dirs+=("$1")
            shift
            ;;
    esac
done
if ((${#dirs[@]} == 0)); then
    echo "usage: scripts/leak-scan.sh [--patterns FILE] [--exclude GLOB]... DIR..." >&2
    exit 2
fi

# The exclude globs reach Python as one newline-separated argument.
exec python3 - "$patterns_file" "$(printf '%s\n' "${excludes[@]+"${excludes[@]}"}")" "${dirs[@]}" <<'PY'
import fnmatch
import os
import re
import sys

patterns_file, dirs = sys.argv[1], sys.argv[3:]
excludes = [glob for glob in sys.argv[2].splitlines() if glob]

# Each pattern has a name that is printed instead of the value it matched.
patterns = [
    ("canary value", re.compile(rb"kw-canary-[A-Za-z0-9_-]+")),
    ("Keyward token", re.compile(rb"kwt\.[A-Za-z0-9_-]{43}")),
]
if patterns_file:
    with open(patterns_file, "rb") as file:
        for number, line in enumerate(file.read().splitlines(), start=1):
            literal = line.strip()
            if literal and not literal.startswith(b"#"):
                patterns.append((f"pattern on line {number} of {patterns_file}",
                                 re.compile(re.escape(literal))))

BANNER_START = b"Keyward is running in development mode"
BANNER_END = re.compile(rb"^export VAULT_ADDR=.*$", re.MULTILINE)


def banner_span(data):
    """Returns the byte range of a dev server's banner, or None."""
    if not data.startswith(BANNER_START):
        return None
    end = BANNER_END.search(data)
    return (0, end.end()) if end else None


missing = [d for d in dirs if not os.path.isdir(d)]
if missing:
    print(f"leak scan: not a directory: {', '.join(missing)}", file=sys.stderr)
    sys.exit(2)

files = 0
skipped = 0
scanned_bytes = 0
hits = []
for top in dirs:
    for root, _, names in os.walk(top):
        for name in names:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            relative = os.path.relpath(path, top)
            if any(fnmatch.fnmatch(relative, glob) for glob in excludes):
                skipped += 1
                continue
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except OSError as error:
                print(f"leak scan: cannot read {path}: {error.strerror}", file=sys.stderr)
                sys.exit(2)
            files += 1
            scanned_bytes += len(data)
            banner = banner_span(data)
            for kind, pattern in patterns:
                for match in pattern.finditer(data):
                    if (kind == "Keyward token" and banner
                            and banner[0] <= match.start() < banner[1]):
                        continue
                    hits.append((path, kind, match.start()))

for path, kind, offset in hits:
    print(f"LEAK  {path}: {kind} at byte {offset}")
summary = f"{files} files, {scanned_bytes / 1e6:.1f} MB under {', '.join(dirs)}"
if skipped:
    summary += f", {skipped} excluded"
if hits:
    print(f"leak scan failed: {len(hits)} hits in "
          f"{len({path for path, _, _ in hits})} files ({summary})")
    sys.exit(1)
print(f"leak scan passed: no canary value or token in {summary}")
PY
