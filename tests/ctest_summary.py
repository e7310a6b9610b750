#!/usr/bin/env python3
"""Counts what one ctest run did, from its JUnit report (ctest --output-junit).

    ctest_summary.py REPORT.xml [--gtest-list LISTING.txt [--gtest-filter FILTER]]

Prints one line "counts PASSED FAILED SKIPPED", then the end of each failed test's
output, then a line per test that failed or was skipped. A test counts as skipped only when ctest skipped it on purpose
(GTEST_SKIP, which gtest_discover_tests maps to SKIP_REGULAR_EXPRESSION, a
SKIP_RETURN_CODE, or the DISABLED property); any other test that did not run (its
executable missing, say) failed.

With --gtest-list (the output of `fiberloop_tests --gtest_list_tests`): every test
the binary registers must have been run by ctest, except those a negative
--gtest-filter ("-Suite.A:Suite.B", the documented TSan filter) names; each one
missing counts as failed, and so does a filter entry that names no test (a stale
filter hides nothing, or hides a renamed test by accident).
"""

import argparse
import sys
import xml.etree.ElementTree as ET

SKIPPED_ON_PURPOSE = ("SKIP_REGULAR_EXPRESSION_MATCHED", "SKIP_RETURN_CODE")
OUTPUT_LINES = 60  # of a failed test's output, shown under the counts


def gtest_names(listing: str) -> list:
    """The full names ("Suite.Test") in the output of --gtest_list_tests."""
    names, suite = [], ""
    for line in listing.splitlines():
        text = line.split("#", 1)[0].rstrip()  # "  Name  # GetParam() = ..."
        if not text:
            continue
        if line.startswith(" "):
            names.append(suite + text.strip())
        else:
            suite = text.strip()
    return names


def skip_reason(case) -> str:
    """The message GTEST_SKIP() printed: the line after "file:line: Skipped"."""
    lines = (case.findtext("system-out") or "").splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith(": Skipped") and i + 1 < len(lines) and lines[i + 1].strip():
            return lines[i + 1].strip()
    return "skipped"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("--gtest-list", help="file holding the output of --gtest_list_tests")
    parser.add_argument("--gtest-filter", default="", help="the negative filter the suite runs with, if any")
    args = parser.parse_args()

    passed, failed, skipped = [], [], []
    failed_output = []  # (name, its last lines of output)
    ran = set()
    for case in ET.parse(args.report).getroot().iter("testcase"):
        name, status = case.get("name"), case.get("status")
        ran.add(name)
        skip = case.find("skipped")
        reason = skip.get("message", "") if skip is not None else ""
        if status == "run":
            passed.append(name)
        elif status == "disabled":
            skipped.append((name, "disabled"))
        elif status == "notrun" and reason.startswith(SKIPPED_ON_PURPOSE):
            skipped.append((name, skip_reason(case)))
        else:
            failed.append((name, reason or status))
            output = (case.findtext("system-out") or "").rstrip().splitlines()
            failed_output.append((name, output[-OUTPUT_LINES:]))

    if args.gtest_list:
        with open(args.gtest_list, encoding="utf-8") as listing:
            registered = gtest_names(listing.read())
        if args.gtest_filter and not args.gtest_filter.startswith("-"):
            failed.append((args.gtest_filter, "only a negative filter (-A:B) is understood here"))
        excluded = [name for name in args.gtest_filter.lstrip("-").split(":") if name]
        for name in excluded:
            if name not in registered:
                failed.append((name, "named by the filter, but no such test is registered"))
        for name in registered:
            if name not in ran and name not in excluded:
                failed.append((name, "registered in the test binary, but ctest did not run it"))

    print(f"counts {len(passed)} {len(failed)} {len(skipped)}")
    for name, output in failed_output:
        print(f"---- output of {name} (last {OUTPUT_LINES} lines) ----")
        for line in output:
            print(f"   {line}")
    for name, why in failed:
        print(f"   failed:  {name} ({why})")
    for name, why in skipped:
        print(f"   skipped: {name} ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
