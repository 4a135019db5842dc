from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jubako.errors import InvalidTag
from jubako.tags import NAME_PATTERN, VERSION_PATTERN, Tag, new_version


def test_bare_name_means_latest() -> None:
    assert Tag.parse("mlp") == Tag("mlp", "latest")
    assert Tag.parse("mlp").is_latest


def test_name_and_version() -> None:
    tag = Tag.parse("mlp-torch:20261123-040842-9db4ba")
    assert (tag.name, tag.version) == ("mlp-torch", "20261123-040842-9db4ba")
    assert str(tag) == "mlp-torch:20261123-040842-9db4ba"


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "invalid name"),
        ("MLP", "invalid name"),
        ("-mlp", "invalid name"),
        ("mlp:", "empty version"),
        ("mlp:v1:extra", "invalid version"),
        ("mlp:.v1", "invalid version"),
        ("a" * 64, "invalid name"),
        ("mlp:" + "v" * 64, "invalid version"),
        ("ml p", "invalid name"),
    ],
)
def test_invalid_tags_say_why(text: str, words: str) -> None:
    with pytest.raises(InvalidTag, match=words):
        Tag.parse(text)


def test_generated_versions_sort_by_time_and_differ() -> None:
    early = new_version(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = new_version(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early < late
    assert early.startswith("20260102-030405-")
    assert len({new_version() for _ in range(100)}) == 100
    Tag("x", new_version()).validate()


@given(st.from_regex(NAME_PATTERN, fullmatch=True), st.from_regex(VERSION_PATTERN, fullmatch=True))
def test_parse_inverts_str(name: str, version: str) -> None:
    tag = Tag(name, version)
    assert Tag.parse(str(tag)) == tag
