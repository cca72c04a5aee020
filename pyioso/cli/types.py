"""argparse types that refuse a bad number while the command line is parsed, before any work:
argparse names the flag, the message says the valid range."""

from __future__ import annotations

import argparse


def _integer(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} is out of range: use {what}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "1 or more")


def nonnegative_int(text: str) -> int:
    return _integer(text, 0, "0 or more")

