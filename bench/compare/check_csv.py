#!/usr/bin/env python3
"""Checks a compare.csv: the header, one row per variant x concurrency, no empty cell.

  python3 bench/compare/check_csv.py CSV [--variants a,b] [--concurrencies 10,100] [--require-ok]

Numbers must parse (or be NA on a failed row); status is ok or failed:<reason>.
Prints every problem and exits 1 if there is any, so a rotten harness fails loudly.
"""
import argparse
import csv
import sys
from pathlib import Path

from compare import COLUMNS, NA, NUMERIC_COLUMNS, VARIANTS


def check(csv_path, variants, concurrencies, require_ok=False):
    """Returns a list of problems (empty when the file is complete)."""
    problems = []
    try:
        with open(csv_path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            body = list(reader)
    except OSError as e:
        return [f"cannot read {csv_path}: {e}"]
    if header != COLUMNS:
        return [f"header is {header}, expected {COLUMNS}"]
    seen = {}
    for line_no, values in enumerate(body, 2):
        where = f"line {line_no}"
        if len(values) != len(COLUMNS):
            problems.append(f"{where}: {len(values)} cells, expected {len(COLUMNS)}")
            continue
        row = dict(zip(COLUMNS, values))
        where = f"line {line_no} ({row['variant']} c={row['concurrency']})"
        for column, value in row.items():
            if value.strip() == "":
                problems.append(f"{where}: empty cell in column {column}")
        status = row["status"]
        if status != "ok" and not (status.startswith("failed:") and len(status) > len("failed:")):
            problems.append(f"{where}: status {status!r} is neither ok nor failed:<reason>")
        if require_ok and status != "ok":
            problems.append(f"{where}: status {status}")
        for column in NUMERIC_COLUMNS:
            value = row[column]
            if value == NA and status != "ok":
                continue  # a failed point records what it could
            try:
                float(value)
            except ValueError:
                problems.append(f"{where}: {column}={value!r} is not a number")
        try:
            key = (row["variant"], int(row["concurrency"]))
        except ValueError:
            problems.append(f"{where}: concurrency {row['concurrency']!r} is not an integer")
            continue
        if key in seen:
            problems.append(f"{where}: duplicate of line {seen[key]}")
        seen[key] = line_no
    for variant in variants:
        for conc in concurrencies:
            if (variant, conc) not in seen:
                problems.append(f"missing row: {variant} c={conc}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--concurrencies", default="10,100,1000,10000")
    ap.add_argument("--require-ok", action="store_true", help="every row must have status ok")
    args = ap.parse_args()
    problems = check(args.csv, [v for v in args.variants.split(",") if v],
                     [int(c) for c in args.concurrencies.split(",") if c], args.require_ok)
    for p in problems:
        print(f"CHECK FAILED: {p}", file=sys.stderr)
    if problems:
        print(f"{args.csv}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.csv}: complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
