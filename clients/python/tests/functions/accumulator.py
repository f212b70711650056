# Answers each input (an integer) with the running total; deterministic,
# so it can be forked (docs/fork.md).


def main():
    total = 0
    while True:
        m = recv()
        if m is None:
            break
        total += int(m)
        send(str(total))
