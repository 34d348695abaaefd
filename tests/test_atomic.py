"""The one atomic-write mechanism: all or nothing, never a partial file, refusal without force."""

import pytest

from codesign.atomic import atomic_path, write_text_atomic
from codesign.errors import OutputExistsError


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_success_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "r.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["r.txt"]


def test_refuses_existing_output_without_force(tmp_path):
    target = tmp_path / "r.txt"
    write_text_atomic(target, "keep")
    with pytest.raises(OutputExistsError, match="--force"):
        write_text_atomic(target, "lose", force=False)
    assert target.read_text() == "keep"
