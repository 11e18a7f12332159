"""Properties over arbitrary input: untrusted text, button values, action sequences."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.bootstrap import load_config
from bot.codec import decode, encode
from bot.domain import TRANSITIONS, DomainError, IllegalTransition, Status, next_status
from bot.ingest import html_to_text, make_incoming
from bot.routing import Router
from bot.views import Button
from tests.conftest import ROOT

ROUTER = Router(load_config(ROOT / "unsilo.example.toml").rules, default_department="triage")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@given(st.text(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_any_customer_text_is_stored_clean_and_routed_somewhere(text: str) -> None:
    item = make_incoming(source="s", external_id="x", text=text, title=text[:50], author_name=text[:20])
    assert not CONTROL.search(item.text + item.title + item.author_name)
    (item.text + item.title).encode("utf-8")  # storable: no lone surrogates
    assert len(item.author_name) <= 255
    routed = ROUTER.route(text=item.text, source="s", author=item.author_name)
    assert routed.departments and routed.priority in ("low", "normal", "high", "urgent")


@given(st.text(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_html_to_text_never_leaves_tags_or_scripts(fragment: str) -> None:
    text = html_to_text(f"<p>{fragment}</p><script>steal()</script>")
    assert "steal()" not in text or "steal()" in fragment


@given(st.sampled_from(list(TRANSITIONS)), st.integers(min_value=1, max_value=10**9))
def test_button_values_round_trip_and_fit_slack(verb: str, conversation_id: int) -> None:
    value = encode(Button("x", verb, conversation_id))
    assert len(value) <= 2000
    assert decode(value) == (verb, conversation_id)


@given(st.one_of(st.text(max_size=100), st.binary(max_size=50).map(lambda b: b.decode("latin-1"))))
def test_damaged_button_values_are_refused_clearly(value: str) -> None:
    try:
        verb, cid = decode(value)
    except DomainError as exc:
        assert "out of date or damaged" in exc.message
    else:
        assert isinstance(verb, str) and cid > 0


@given(st.lists(st.sampled_from(list(TRANSITIONS)), max_size=30))
def test_any_sequence_of_actions_only_visits_known_states(actions: list[str]) -> None:
    status = Status.OPEN
    for action in actions:
        try:
            status = next_status(action, status, conversation_id=1, owner="alice")
        except IllegalTransition:
            assert status not in TRANSITIONS[action]
        assert status in Status
    if status in (Status.RESOLVED, Status.DISMISSED):
        for action in ("claim", "release", "reply", "resolve", "dismiss"):
            with pytest.raises(IllegalTransition):
                next_status(action, status, conversation_id=1)


def test_a_flood_of_the_same_log_line_is_one_line_and_a_count() -> None:
    """1,100 slow-loris connections wrote 150,585 "Too many open files" lines in 60 s."""
    import logging

    from bot.logs import RepeatFilter

    now = [0.0]
    flood = RepeatFilter(window=10, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    passed = [flood.filter(record("socket.accept() out of system resource")) for _ in range(5000)]
    assert passed.count(True) == 1
    assert flood.filter(record("another message"))
    now[0] = 11
    later = record("socket.accept() out of system resource")
    assert flood.filter(later) and "4999 more like it" in later.getMessage()
