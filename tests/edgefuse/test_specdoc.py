"""docs/spec.md is generated from the pydantic models; it must match them and document every key."""

from __future__ import annotations

import json
from pathlib import Path

from edgefuse.cli import main
from edgefuse.specdoc import field_comments, markdown, sections

DOC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"


def test_docs_spec_md_is_the_generated_text():
    assert DOC.read_text().rstrip("\n") == markdown().rstrip("\n"), (
        "regenerate: edgefuse spec --markdown > docs/spec.md"
    )


def test_every_key_has_a_row_and_every_row_a_meaning_where_the_source_has_one():
    text = markdown()
    for _, cls in sections():
        for name in cls.model_fields:
            assert f"| `{name}` |" in text, (cls.__name__, name)
    from edgefuse.spec import TrainSpec

    assert field_comments(TrainSpec)["epochs"].startswith("upper bound on epochs")


def test_spec_schema_is_json_schema_of_the_spec(capsys):
    assert main(["spec", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "ScenarioSpec"
    assert set(schema["required"]) == {"name", "modalities"}  # labels is optional: other head kinds may stand alone
