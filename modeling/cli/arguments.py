"""Argument types that refuse, at the argument, a number that would only fail later (or silently do the wrong
thing: `search -k -1` printed all but one document)."""

import argparse


def _whole(text, least):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text} must be at least {least}")
    return value


def positive_int(text):
    """An integer >= 1 (a length, a count, a batch size)."""
    return _whole(text, 1)


def non_negative_int(text):
    """An integer >= 0 (0 meaning none)."""
    return _whole(text, 0)


def non_negative_float(text):
    """A number >= 0 (a wait, a share of a device)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # (NaN too)
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def count_or_fraction(text):
    """A count >= 1, or a fraction in (0, 1) meaning max(10, ceil(n * k))."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < 1 or (value >= 1 and value == int(value))):
        raise argparse.ArgumentTypeError(f"{text} must be a whole count >= 1 or a fraction between 0 and 1")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, off) or the help already says it."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """The parser of every command and sub-step: defaults shown in --help."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)
