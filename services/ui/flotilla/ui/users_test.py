from __future__ import annotations

import json

import pytest

from flotilla.ui.users import (
    BadUsersConfig,
    TooManyAttempts,
    User,
    UserDirectory,
    hash_password,
    parse_users,
    verify_password,
)


def test_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("s3creT", first)
    assert not verify_password("s3cret", "scrypt$broken")


def test_directory_maps_usernames_to_identities() -> None:
    users = parse_users(
        json.dumps(
            [
                {"username": "ada", "identity": "ada@example", "password_hash": hash_password("pw-ada")},
                {"username": "bob", "password": "pw-bob"},
            ]
        )
    )
    ada = users.authenticate("ada", "pw-ada")
    assert ada is not None and ada.identity == "ada@example"
    bob = users.authenticate(" bob ", "pw-bob")
    assert bob is not None and bob.identity == "bob"
    assert users.authenticate("ada", "pw-bob") is None
    assert users.authenticate("nobody", "pw-ada") is None
    assert len(parse_users("")) == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"username": "a"}', "JSON list"),
        ('[{"password": "x"}]', "needs a username"),
        ('[{"username": "a"}]', "exactly one of"),
        ('[{"username": "a", "password": "x", "password_hash": "y"}]', "exactly one of"),
        ('[{"username": "a", "password_hash": "plain"}]', "not a scrypt"),
        ('[{"username": "a", "password": "x"}, {"username": "a", "password": "y"}]', "appears twice"),
    ],
)
def test_bad_configuration_is_named(config: str, message: str) -> None:
    with pytest.raises(BadUsersConfig, match=message):
        parse_users(config)


def test_guessing_a_password_locks_the_username_out_for_a_while() -> None:
    now = [1000.0]
    users = UserDirectory(
        {"ada": User(username="ada", identity="ada", password_hash=hash_password("right"))},
        max_failures=3,
        window_s=60.0,
        clock=lambda: now[0],
    )
    for _ in range(3):
        assert users.authenticate("ada", "wrong") is None
    with pytest.raises(TooManyAttempts) as locked:
        users.authenticate("ada", "right")  # refused unchecked, even with the right password
    assert 0 < locked.value.retry_after_s <= 60
    assert users.authenticate("grace", "anything") is None  # other usernames are not affected
    now[0] += 61
    user = users.authenticate("ada", "right")
    assert user is not None and user.identity == "ada"
    assert users.authenticate("ada", "wrong") is None  # a success cleared the count


def test_concurrent_guesses_cannot_slip_past_the_limit() -> None:
    """32 guesses at once (gunicorn's 32 threads): only `max_failures` are ever checked."""
    import threading

    checked: list[str] = []
    started = threading.Barrier(32)

    class Slow(User):
        def check(self, password: str) -> bool:
            checked.append(password)
            return False

    users = UserDirectory({"ada": Slow(username="ada", identity="ada", password="right")}, max_failures=5)
    outcomes: list[str] = []

    def guess(i: int) -> None:
        started.wait()
        try:
            users.authenticate("ada", f"guess-{i}")
            outcomes.append("checked")
        except TooManyAttempts:
            outcomes.append("locked")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) == 5 and outcomes.count("checked") == 5 and outcomes.count("locked") == 27


def test_new_hashes_use_current_scrypt_cost_and_old_ones_still_verify() -> None:
    from flotilla.ui.users import _scrypt, _b64

    assert hash_password("pw").split("$")[1:4] == [str(2**17), "8", "1"]
    salt = b"0123456789abcdef"
    old = f"scrypt${2**14}$8$1${_b64(salt)}${_b64(_scrypt('pw', salt, 2**14, 8, 1))}"
    assert verify_password("pw", old) and not verify_password("px", old)
