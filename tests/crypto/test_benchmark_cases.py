"""The benchmark hook: every case exists, is named uniquely, and runs."""

from __future__ import annotations

from benchmarks import crypto_cases


def test_cases_are_the_requested_operations_and_run() -> None:
    """The runner gets one callable per requested operation, each of which succeeds."""
    cases = crypto_cases.cases()
    names = [name for name, _ in cases]
    assert len(names) == len(set(names))
    assert set(names) == {
        "sign",
        "verify",
        "seal",
        "open",
        "x25519_exchange",
        "hmac_sha256_1400",
        "hop_tag_1400",
        "aes256gcm_encrypt_1400",
        "aes256gcm_decrypt_1400",
        "chacha20poly1305_encrypt_1400",
        "chacha20poly1305_decrypt_1400",
    }
    results = {name: operation() for name, operation in cases}
    assert results["verify"] is None
    sizes = {name: len(value) for name, value in results.items() if isinstance(value, bytes)}
    assert sizes["sign"] == 64
    assert sizes["seal"] == 100 + 56
    assert sizes["open"] == 100
    assert sizes["x25519_exchange"] == 32
    assert sizes["hmac_sha256_1400"] == 32
    assert sizes["hop_tag_1400"] == 16
    assert sizes["aes256gcm_encrypt_1400"] == sizes["chacha20poly1305_encrypt_1400"] == 1416
    assert sizes["aes256gcm_decrypt_1400"] == sizes["chacha20poly1305_decrypt_1400"] == 1400
