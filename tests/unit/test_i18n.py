"""The web UI's languages: a complete Korean catalog, up to date with the sources,
language negotiation, and localized dates, numbers and durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from hpcportal.web import i18n

WEB = i18n.WEB_DIR
POT = i18n.LOCALE_DIR / "messages.pot"
KO_PO = i18n.LOCALE_DIR / "ko" / "LC_MESSAGES" / "messages.po"
KO_MO = i18n.LOCALE_DIR / "ko" / "LC_MESSAGES" / "messages.mo"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _read(path: Path, locale: str | None = None):  # type: ignore[no-untyped-def]
    with path.open("rb") as f:
        return read_po(f, locale=locale)


def _source_messages() -> set[str]:
    """What ``pybabel extract -F web/babel.cfg`` finds in the sources right now."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options_map = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(WEB), method_map, options_map
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_catalog_string_has_a_korean_translation() -> None:
    template = _read(POT)
    korean = _read(KO_PO, "ko")
    missing = []
    for message in template:
        if not message.id:
            continue
        translated = korean.get(message.id)
        if translated is None or not translated.string or translated.fuzzy:
            missing.append(message.id)
    assert missing == [], f"no Korean translation for: {missing}"


def test_the_catalog_template_is_up_to_date_with_the_sources() -> None:
    """A new or changed UI string must be extracted (and then translated)."""
    in_pot = {str(m.id) for m in _read(POT) if m.id}
    in_sources = _source_messages()
    assert in_sources - in_pot == set(), "run the extraction in docs/ui.md"
    assert in_pot - in_sources == set(), "the .pot has strings no source uses any more"


def test_translations_keep_their_placeholders() -> None:
    for message in _read(KO_PO, "ko"):
        if message.id and message.string:
            assert set(PLACEHOLDER.findall(str(message.id))) == set(
                PLACEHOLDER.findall(str(message.string))
            ), message.id


def test_the_compiled_catalog_matches_the_po_file() -> None:
    po = {str(m.id): str(m.string) for m in _read(KO_PO, "ko") if m.id}
    mo = {str(m.id): str(m.string) for m in read_mo(BytesIO(KO_MO.read_bytes())) if m.id}
    assert mo == po, "compile the catalog: pybabel compile -d src/hpcportal/web/locale"


def test_templates_never_mark_data_safe() -> None:
    for template in (WEB / "templates").glob("*.html"):
        assert "|safe" not in template.read_text().replace(" ", ""), template.name


def test_scripts_never_use_inner_html() -> None:
    """Server data reaches the page as text; only htmx swaps server-rendered HTML."""
    for script in (WEB / "static" / "js").glob("*.js"):
        text = script.read_text()
        assert not re.search(r"\.(inner|outer)HTML\s*\+?=", text), script.name
        assert "insertAdjacentHTML" not in text and "document.write" not in text, script.name
        assert "createContextualFragment" not in text, script.name


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "en"),
        (None, "ko-KR,ko;q=0.9,en-US;q=0.8", "ko"),
        (None, "en-US,en;q=0.9,ko;q=0.8", "en"),
        (None, "fr-FR,fr;q=0.9,ko;q=0.5", "ko"),
        (None, "ko;q=0,en;q=0.5", "en"),
        (None, "de, *;q=0.1", "en"),
        (None, "garbage;;,,", "en"),
        ("ko", "en-US", "ko"),
        ("en", "ko-KR", "en"),
        ("xx", "ko-KR", "ko"),
    ],
)
def test_language_negotiation(cookie: str | None, header: str | None, expected: str) -> None:
    assert i18n.negotiate(cookie, header) == expected


def test_accept_language_is_ranked_by_quality() -> None:
    assert i18n.parse_accept_language("en;q=0.5, ko, fr;q=0.8") == ["ko", "fr", "en"]


def test_korean_formatting() -> None:
    ko = i18n.Formatter("ko", i18n.timezone_from("Asia/Seoul"))
    en = i18n.Formatter("en")
    moment = datetime(2026, 11, 21, 3, 4, 5, tzinfo=UTC)
    assert "12:04" in ko.dt(moment) and "2026" in ko.dt(moment)  # 12:04 in Seoul
    assert ko.dt(moment).startswith("2026. 11. 21.")
    assert "3:04" in en.dt(moment)
    assert ko.number(1234567) == "1,234,567"
    assert ko.duration(timedelta(minutes=3)) == "3분"
    assert en.duration(180) == "3 min"
    assert ko.minutes(120) == "2시간"
    assert ko.minutes(None) == "—"
    assert "전" in ko.ago(moment - timedelta(minutes=5), now=moment)


def test_bad_time_zone_cookies_fall_back_to_utc() -> None:
    for value in (None, "", "Not/AZone", "../../etc/passwd", "x" * 100):
        assert i18n.timezone_from(value) is UTC


def test_the_script_catalog_is_complete_in_both_languages() -> None:
    english = i18n.js_catalog("en")
    korean = i18n.js_catalog("ko")
    assert english.keys() == korean.keys()
    assert korean["job_status.running"] == "실행 중"
    assert korean["node_status.idle"] == "유휴"
    differing = [k for k in korean if korean[k] == english[k] and re.search("[a-z]{3}", english[k])]
    assert differing == []
