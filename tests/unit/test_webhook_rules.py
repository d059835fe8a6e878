"""The rules of webhooks on their own: which addresses are public, what a notify URL may be,
the signature a receiver checks, the backoff schedule, and the settings that turn them on."""

from __future__ import annotations

import time
from ipaddress import ip_address

import pytest

from exporter.tasks.notify_url import AddressPolicy, check_notify_url, is_public
from exporter.tasks.webhooks import backoff_s, signature
from settings import Settings, SettingsError, load_settings
from tests.webhook_receivers import verify_signature

SECRET = "s" * 40


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "ff02::1",
    ],
)
def test_private_and_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(ip_address(address))
    assert not AddressPolicy().allows(ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ip_address(address))


def test_a_listed_network_or_host_is_allowed() -> None:
    policy = AddressPolicy(("10.0.0.0/8", "hooks.internal"))
    assert policy.allows(ip_address("10.1.2.3"))
    assert not policy.allows(ip_address("192.168.0.1"))
    assert policy.allows_host("HOOKS.internal.")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user@example.com/",
        "https://:pw@example.com/",
        "http://",
        "https://example.com/a#frag",
        "https://example.com:99999/",
        "https://exa mple.com/",
        "https://例子.com/",
    ],
)
def test_a_notify_url_must_be_plain_http_with_a_host_and_no_credentials(url: str) -> None:
    with pytest.raises(ValueError):
        check_notify_url(url)


def test_the_signature_verifies_as_the_readme_says_and_not_when_changed() -> None:
    body = b'{"id": "x"}'
    now = int(time.time())
    header = signature(SECRET, now, body)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body + b" ")
    assert not verify_signature("another secret", header, body)
    assert not verify_signature(SECRET, signature(SECRET, now - 3600, body), body)


def test_the_backoff_grows_four_times_and_stops_at_six_hours() -> None:
    assert [backoff_s(n, 30) for n in range(1, 7)] == [30, 120, 480, 1920, 7680, 21600]
    assert sum(backoff_s(n, 30) for n in range(1, 7)) / 3600 == pytest.approx(8.84, abs=0.01)


def test_a_webhook_url_needs_a_secret_and_the_secret_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTER_SECRET", "x" * 40)
    monkeypatch.setenv("EXPORTER_WEBHOOK_URL", "https://hooks.example.com/in")
    with pytest.raises(SettingsError, match=r"EXPORTER_WEBHOOK_URL=.*EXPORTER_WEBHOOK_SECRET"):
        load_settings(Settings)
    monkeypatch.setenv("EXPORTER_WEBHOOK_SECRET", "short-secret")
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    assert "short-secret" not in str(refused.value)
    assert "EXPORTER_WEBHOOK_SECRET=(hidden)" in str(refused.value)
    monkeypatch.setenv("EXPORTER_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("EXPORTER_WEBHOOK_ALLOW_HOSTS", " Hooks.Internal , 10.0.0.0/8 ")
    loaded = load_settings(Settings)
    assert loaded.webhook_allow_hosts == ("hooks.internal", "10.0.0.0/8")
