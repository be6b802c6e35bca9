"""The README's configuration table is generated from the dataclasses: keep it in sync."""

import re
from pathlib import Path

from hf_deit.config import config_keys_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_table_is_current():
    block = re.search(r"<!-- config-keys:start -->\n(.*?)\n<!-- config-keys:end -->", README.read_text(), re.S)
    assert block, "README.md lost its configuration-keys block"
    assert block.group(1) == config_keys_markdown(), "run: python scripts/update_readme_config_table.py"
