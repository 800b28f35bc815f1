"""Password hashes for ``YTMP3_USERS``, and the helper that makes them.

    python -m ui.passwords NAME          asks for the password twice, prints NAME:HASH
    python -m ui.passwords '*'           the same for a shared password (any name signs in)
    python -m ui.passwords NAME --stdin  reads the password from the first line of stdin

A hash is ``scrypt.<log2 N>.<r>.<p>.<salt>.<key>`` (salt and key in unpadded base64url):
hashlib's scrypt with a random 16-byte salt, compared in constant time. It holds no ``$``,
``:`` or ``,``, so it can stand in a ``.env`` file or compose's environment as it is.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys

from flows.settings import PASSWORD_HASH_RE, USER_NAME_RE

LOG2_N, R, P = 15, 8, 1
"""scrypt's cost: 32 MiB of memory and ~0.1 s per check on the machines ytmp3 was tried on."""
KEY_BYTES = 32
MAX_PASSWORD_BYTES = 1024


def hash_password(password: str, *, log2_n: int = LOG2_N) -> str:
    """A new salted scrypt hash of ``password`` (never stored or printed in clear)."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, log2_n, R, P)
    return f"scrypt.{log2_n}.{R}.{P}.{_b64(salt)}.{_b64(key)}"


def is_hash(text: str) -> bool:
    return PASSWORD_HASH_RE.match(text) is not None


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (constant-time; False for a malformed hash)."""
    match = PASSWORD_HASH_RE.match(encoded)
    if match is None or len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    log2_n, r, p = (int(match[i]) for i in (1, 2, 3))
    if not (10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    expected = _unb64(match[5])
    actual = _scrypt(password, _unb64(match[4]), log2_n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)


def _scrypt(
    password: str, salt: bytes, log2_n: int, r: int, p: int, length: int = KEY_BYTES
) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * n * r + 2**20
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ui.passwords", description=__doc__.split("\n")[0]
    )
    parser.add_argument("name", help="the user's name, or '*' for a shared password")
    parser.add_argument("--stdin", action="store_true", help="read the password from stdin")
    args = parser.parse_args(argv)
    if not USER_NAME_RE.match(args.name):
        parser.error(
            "a name is 1-64 letters, digits and . _ @ + - (starting with a letter or digit), or '*'"
        )
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("The two passwords differ; nothing was made.", file=sys.stderr)
            return 1
    if len(password) < 8 or len(password.encode()) > MAX_PASSWORD_BYTES:
        print("A password has 8 to 1024 bytes; nothing was made.", file=sys.stderr)
        return 1
    print(f"{args.name}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
