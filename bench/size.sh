#!/usr/bin/env bash
# Size (issue 7): `bash bench/size.sh`. Each function's zip (the binary as `bootstrap`, deflated,
# as `cargo lambda build --output-format zip` packs it) against the same binary built with Cargo's
# default release settings (profile `default-release` in Cargo.toml: opt-level 3, no LTO, 16
# codegen units, unwinding, symbols kept), in the same run. Goals: each zip ≤ 5 MB and ≤ 0.6× the
# default. Both builds take ≈10 minutes each on 2 cores the first time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

functions=(create stop delete status sources poller)
bins=()
for function in "${functions[@]}"; do bins+=(--bin "$function"); done
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release "${bins[@]}"
cargo build --quiet --profile default-release "${bins[@]}"

python3 - "$target" "${functions[@]}" <<'PY'
import io, sys, zipfile

target, functions = sys.argv[1], sys.argv[2:]
LIMIT = 5_000_000

def zipped(path):
    """The bytes of a zip holding `path` as an executable `bootstrap`, deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        entry = zipfile.ZipInfo("bootstrap")
        entry.external_attr = 0o755 << 16
        entry.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as binary:
            archive.writestr(entry, binary.read())
    return len(out.getvalue())

rows, all_met = [], True
for function in functions:
    ours, default = zipped(f"{target}/release/{function}"), zipped(f"{target}/default-release/{function}")
    ratio = ours / default
    met = ours <= LIMIT and ratio <= 0.6
    all_met &= met
    rows.append((function, f"{default:,}", f"{ours:,}", f"{ratio:.2f}", "yes" if met else "no"))
header = ("function", "zip, default release profile (B)", "zip, release profile (B)", "ratio", "met (≤ 5 MB and ≤ 0.6)")
widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
print(line(header))
print("| " + " | ".join("-" * w for w in widths) + " |")
for row in rows:
    print(line(row))
print("every goal met" if all_met else "some goals not met")
PY
