"""Passwords never reach a message; a malformed URL is refused in our words."""

from __future__ import annotations

import pytest

from cli_support.database_urls import mask_text, mask_url, mask_url_in, url_password, url_problem


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://owner:s3cret@db:5432/makapix", "postgresql://owner:***@db:5432/makapix"),
        (
            "postgresql://owner@db/makapix?password=s3cret&sslmode=require",
            "postgresql://owner@db/makapix?password=***&sslmode=require",
        ),
        ("host=db password='s3 cret' dbname=makapix", "host=db password=*** dbname=makapix"),
        ("host=db password=s3cret dbname=makapix", "host=db password=*** dbname=makapix"),
        ("postgresql://owner@db/makapix", "postgresql://owner@db/makapix"),
    ],
)
def test_mask_url_hides_the_password_wherever_the_url_carries_it(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_hides_urls_in_a_message_and_the_given_secrets() -> None:
    message = 'connection to postgresql://u:pw1@h/db failed; role reader password "pw2"'
    assert (
        mask_text(message, "pw2")
        == 'connection to postgresql://u:***@h/db failed; role reader password "***"'
    )
    assert url_password("postgresql://u:pw1@h/db") == "pw1" and url_password("postgresql://u@h/db") == ""


def test_a_message_loses_the_url_and_its_password_as_written_and_as_decoded() -> None:
    url = "postgresql://sampler:p%40ss-w0rd@db.internal:5433/dev"
    message = f"cannot reach {url}; the server said: password p@ss-w0rd rejected"
    masked = mask_url_in(message, url)
    assert "p%40ss-w0rd" not in masked and "p@ss-w0rd" not in masked
    assert masked == "cannot reach postgresql://sampler:***@db.internal:5433/dev; the server said: password *** rejected"
    assert url_password(url) == "p@ss-w0rd"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://sampler:s3cretpw@db/dev",
        "postgresql://sampler@db/dev?password=s3cretpw",
        "host=db user=sampler password=s3cretpw dbname=dev",
    ],
)
def test_the_password_echoed_alone_is_masked_whichever_form_the_url_has(url: str) -> None:
    assert url_password(url) == "s3cretpw"
    assert mask_url_in("the server said: password s3cretpw rejected", url) == (
        "the server said: password *** rejected"
    )


def test_url_problem_names_the_fix_and_not_the_password() -> None:
    assert url_problem("postgresql://u:pw@h:5432/db") is None
    bad_port = url_problem("postgresql://u:s3cret@h:99999/db")
    assert bad_port is not None and "port '99999' is not a number from 1 to 65535" in bad_port
    not_a_url = url_problem("s3cret not a url")
    assert not_a_url is not None and "it is not a PostgreSQL URL" in not_a_url
    assert "s3cret" not in bad_port + not_a_url
