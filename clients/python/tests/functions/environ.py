"""Sends each input's environment variable: its value, reversed (so that a
secret's value is never output as it is), or "-" when it is unset."""

import os


def main():
    while True:
        m = recv()
        if m is None:
            break
        value = os.environ.get(m.decode())
        send("-" if value is None else value[::-1])
