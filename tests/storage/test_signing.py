"""Signed download links: a link opens one file of one run until it expires; anything
changed, expired or signed with a key no longer accepted is refused (403)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spindle.config import Settings
from spindle.errors import Forbidden, InvalidRequest
from spindle.storage.signing import LinkSigner

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def signer(key: str = "current", old: tuple[str, ...] = (), at: datetime = NOW) -> LinkSigner:
    return LinkSigner(key, old, default_seconds=600, max_seconds=3600, clock=lambda: at)


def test_a_link_opens_its_file_until_it_expires() -> None:
    link, sig = signer().sign("run-a", "outputs/x.txt")
    assert link.expires == int(NOW.timestamp()) + 600
    assert link.expires_at == NOW + timedelta(seconds=600)
    assert signer().verify("run-a", "outputs/x.txt", str(link.expires), sig) == link
    just_before = NOW + timedelta(seconds=599)
    assert signer(at=just_before).verify("run-a", "outputs/x.txt", str(link.expires), sig)
    with pytest.raises(Forbidden):
        signer(at=NOW + timedelta(seconds=600)).verify(
            "run-a", "outputs/x.txt", str(link.expires), sig
        )


@pytest.mark.parametrize(
    ("run_id", "path", "shift", "change_sig"),
    [
        ("run-b", "outputs/x.txt", 0, False),  # another run's path
        ("run-a", "outputs/y.txt", 0, False),  # another file of the run
        ("run-a", "outputs/x.txt", 3600, False),  # a later expiry
        ("run-a", "outputs/x.txt", 0, True),  # the signature changed
    ],
)
def test_a_changed_link_is_refused(run_id: str, path: str, shift: int, change_sig: bool) -> None:
    link, sig = signer().sign("run-a", "outputs/x.txt")
    if change_sig:
        sig = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    with pytest.raises(Forbidden):
        signer().verify(run_id, path, str(link.expires + shift), sig)


@pytest.mark.parametrize("expires", ["", "soon", "-5", "1e9", "9" * 13])
def test_a_malformed_expiry_is_refused(expires: str) -> None:
    _, sig = signer().sign("run-a", "x")
    with pytest.raises(Forbidden):
        signer().verify("run-a", "x", expires, sig)


def test_keys_rotate() -> None:
    link, old_sig = signer("first").sign("run-a", "x")
    expires = str(link.expires)
    rotated = signer("second", old=("first",))
    assert rotated.verify("run-a", "x", expires, old_sig)  # old links still work
    new_link, new_sig = rotated.sign("run-a", "x")
    assert new_sig != old_sig  # new links are signed with the new key
    assert signer("second").verify("run-a", "x", str(new_link.expires), new_sig)
    with pytest.raises(Forbidden):  # the old key dropped: its links end
        signer("second").verify("run-a", "x", expires, old_sig)
    with pytest.raises(Forbidden):  # another deployment's key
        signer("elsewhere").verify("run-a", "x", str(new_link.expires), new_sig)


@pytest.mark.parametrize("seconds", [0, -1, 3601])
def test_a_lifetime_out_of_bounds_is_refused(seconds: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        signer().sign("run-a", "x", seconds)
    assert caught.value.field == "expires_in"


def test_from_settings_uses_the_secret_key_and_the_old_keys(tmp_path: object) -> None:
    first = LinkSigner.from_settings(Settings(secret_key="k1"))
    link, sig = first.sign("r", "p")
    later = LinkSigner.from_settings(Settings(secret_key="k2", link_old_secret_keys=["k1"]))
    assert later.verify("r", "p", str(link.expires), sig)
    unset = LinkSigner.from_settings(Settings())  # a random key of its own
    with pytest.raises(Forbidden):
        unset.verify("r", "p", str(link.expires), sig)
