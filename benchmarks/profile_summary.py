"""Summarise py-spy's collapsed stacks: where a server's time went.

``python -m benchmarks.profile_summary FILE [--top N] [--match TEXT]`` reads
a ``py-spy record --format=raw`` file (``--profile`` of the suite writes
them) and prints the functions with the most samples on top of the stack
(self) and anywhere in it (inclusive), as shares of all samples.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def summarise(path: Path, top: int, match: str | None) -> str:
    """Return the report of one collapsed-stacks file."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if match and not any(match in frame for frame in frames):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    lines = [f"{path.name}: {total} samples" + (f" with {match!r}" if match else "")]
    for title, counter in (("self", own), ("inclusive", anywhere)):
        lines.append(f"-- {title}")
        for frame, count in counter.most_common(top):
            lines.append(f"{count / max(1, total):7.1%}  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=None, help="only stacks with this text")
    args = parser.parse_args()
    for path in args.files:
        print(summarise(path, args.top, args.match))
        print()


if __name__ == "__main__":
    main()
