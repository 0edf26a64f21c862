"""Print each chapter's execution time from nbval's JUnit report, slowest first.

    python tools/chapter_times.py _build/nbval.xml

Each notebook runs on one pytest-xdist worker with one thread, so a chapter's time is the sum
of its cells' times (wall clock, on a machine shared with the other worker).
"""

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict


def chapter_times(report: str) -> dict[str, float]:
    """Seconds per notebook: the sum over its test cases (cells) in the JUnit XML ``report``."""
    times: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        times[case.get("classname", "?").split("::")[0]] += float(case.get("time", 0.0))
    return dict(times)


if __name__ == "__main__":
    times = chapter_times(sys.argv[1])
    for name, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"{seconds:7.1f} s  {name}")
    print(f"{sum(times.values()):7.1f} s  in all, {len(times)} notebooks")
