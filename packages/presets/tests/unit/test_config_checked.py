"""The catalog's record of which presets' geometry was checked against a published config:
the numbers each note cites are the numbers the estimator plans with."""

from __future__ import annotations

import re

from kaito_presets.presets import all_presets

_FIELDS = {
    "vocab_size": r"vocab (\d+)",
    "hidden_size": r"hidden (\d+)",
    "num_layers": r"(\d+) layers",
    "num_kv_heads": r"(\d+) KV heads",
    "head_dim": r"head_dim (\d+)",
    "kv_lora_rank": r"kv_lora_rank (\d+)",
}


def test_checked_notes_cite_the_catalogs_numbers() -> None:
    checked = [p for p in all_presets() if p.config_checked]
    assert len(checked) >= 10
    cited = 0
    for preset in checked:
        note = preset.config_checked or ""
        assert "config" in note or "https://" in note, preset.name  # names where it was checked
        for field, pattern in _FIELDS.items():
            match = re.search(pattern, note)
            if match:
                cited += 1
                assert int(match.group(1)) == getattr(preset, field), (preset.name, field)
    assert cited >= 30
