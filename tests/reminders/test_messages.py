"""The MIME parts of reminder emails, built without the ``email`` package's slow paths, are
byte for byte the parts its ``MIMEText`` builds."""

from __future__ import annotations

import email
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP, compat32

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveillance.reminders import messages

# Any text a template can give (a lone surrogate cannot be encoded at all, by either).
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=3000) | st.text(
    alphabet=st.sampled_from(list("ab =.\r\n\t-é€😀\u2028\x00\x85From ")), max_size=3000
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, subtype=st.sampled_from(["plain", "html"]))
def test_text_parts_are_mimetexts_bytes(text: str, subtype: str) -> None:
    ours = messages.text_part(text, subtype)
    reference = MIMEText(text, subtype, messages._UTF8)
    for policy in (compat32, SMTP):
        assert ours.as_bytes(policy=policy) == reference.as_bytes(policy=policy)
    assert ours.as_string() == reference.as_string()
    parsed = email.message_from_bytes(ours.as_bytes())
    assert parsed.get_content_charset() == "utf-8"
    if "\r" not in text:  # line ends are the transport's: CR alone does not come back
        assert parsed.get_payload(decode=True) == text.encode("utf-8")


@pytest.mark.parametrize("text", ["", "Hello Robin,\n", "x" * 200 + "\n" + "é" * 100])
def test_the_same_inside_the_multipart_message(text: str) -> None:
    ours, reference = messages.text_part(text, "plain"), MIMEText(text, "plain", messages._UTF8)
    outer = [MIMEMultipart("alternative", boundary="b") for _ in "xy"]
    outer[0].attach(ours)
    outer[1].attach(reference)
    assert outer[0].as_bytes() == outer[1].as_bytes()
