# big.py: sends one large message of SIZE bytes (default 10 MiB). Bento
# passes messages of any size; the client writes it as it streams in.
#
#   bento submit examples/big.py --name big
#   bento run --raw big 100000000 | wc -c    # 100000000
#
# --raw writes the message exactly, without the newline added after each
# message otherwise.


def main(size=10 << 20):
    pattern = b"0123456789abcdef"
    send((pattern * (size // len(pattern) + 1))[:size])
