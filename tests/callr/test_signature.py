from __future__ import annotations

import pytest

from receiver.callr.signature import SignatureCheck, sign

VECTOR_BODY = b'{"data":{"from":"sender","to":"receiver","text":"a message"}}'


def test_the_documented_test_vector() -> None:
    assert sign(VECTOR_BODY, "password") == "sHMMGdzGhfW2urhzjUwY578gZct/lVFlAP3qrHTaUig="
    assert SignatureCheck(["password"]).verify(
        VECTOR_BODY, "sHMMGdzGhfW2urhzjUwY578gZct/lVFlAP3qrHTaUig="
    )


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "md5"])
def test_each_algorithm_verifies_its_own_signature_only(algorithm: str) -> None:
    check = SignatureCheck(["s3cret"], algorithm)
    assert check.verify(VECTOR_BODY, sign(VECTOR_BODY, "s3cret", algorithm))
    other = "md5" if algorithm != "md5" else "sha256"
    assert not check.verify(VECTOR_BODY, sign(VECTOR_BODY, "s3cret", other))


def test_any_secret_of_a_rotation_is_accepted() -> None:
    check = SignatureCheck(["old-secret", "new-secret"])
    assert check.verify(VECTOR_BODY, sign(VECTOR_BODY, "old-secret"))
    assert check.verify(VECTOR_BODY, sign(VECTOR_BODY, "new-secret"))
    assert not check.verify(VECTOR_BODY, sign(VECTOR_BODY, "retired-secret"))


@pytest.mark.parametrize(
    "presented",
    [None, "", "sHMMGdzGhfW2urhzjUwY578gZct", "not base64 at all ✓", "x" * 10_000],
)
def test_missing_truncated_or_garbage_signatures_fail(presented: str | None) -> None:
    assert not SignatureCheck(["password"]).verify(VECTOR_BODY, presented)


def test_the_signature_covers_the_exact_bytes() -> None:
    reserialised = b'{"data": {"from": "sender", "to": "receiver", "text": "a message"}}'
    assert not SignatureCheck(["password"]).verify(reserialised, sign(VECTOR_BODY, "password"))
