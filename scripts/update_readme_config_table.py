"""Regenerate the README's table of configuration keys from the dataclasses.

    python scripts/update_readme_config_table.py
"""

import re
from pathlib import Path

from hf_deit.config import config_keys_markdown

START, END = "<!-- config-keys:start -->", "<!-- config-keys:end -->"


def main() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {START} ... {END} block")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{config_keys_markdown()}\n{END}", text))


if __name__ == "__main__":
    main()
