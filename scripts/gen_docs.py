"""Generate the README option table and the man page docs/spambridge.8 from the option table.

    python scripts/gen_docs.py          rewrite both files
    python scripts/gen_docs.py --check  exit 1 (and say which) when a committed file differs

The README table goes between `<!-- options:start -->` and `<!-- options:end -->`; the rest of
README.md is left alone. Both texts come from spambridge.options.render, so they are stable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spambridge.options.render import man_page, readme_table  # noqa: E402

README = ROOT / "README.md"
MAN_PAGE = ROOT / "docs" / "spambridge.8"
START = "<!-- options:start -->"
END = "<!-- options:end -->"


# ------------------------------------------------------------------ README


def render_readme(text: str) -> str:
    """README.md with the option table replaced; markers are appended when missing."""
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{readme_table()}{END}{tail}"


# ------------------------------------------------------------------ main


def expected() -> dict[Path, str]:
    readme = README.read_text(encoding="utf-8") if README.exists() else ""
    return {README: render_readme(readme), MAN_PAGE: man_page()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "differs from the option table" if args.check else "rewritten"
        print(f"{path.relative_to(ROOT)}: {verb}", file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
