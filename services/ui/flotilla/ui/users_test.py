from __future__ import annotations

import json

import pytest

from flotilla.ui.users import BadUsersConfig, hash_password, parse_users, verify_password


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
