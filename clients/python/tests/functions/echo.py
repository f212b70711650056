# Echoes each input message back as one data message; at the end of input
# says so on stdout and stderr.
import sys


def main():
    n = 0
    while True:
        m = recv()
        if m is None:
            break
        send(m)
        n += 1
    print(f"echoed {n}")
    sys.stderr.write("input ended\n")
