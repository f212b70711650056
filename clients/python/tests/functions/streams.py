# One message on each stream, then exits with `code`.
import sys


def main(code=0):
    send(b"\x00data\xff")
    print("to stdout", flush=True)
    sys.stderr.write("to stderr\n")
    sys.stderr.flush()
    sys.exit(code)
