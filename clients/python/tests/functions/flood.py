# `total` bytes as data messages of `size` bytes, each starting with its
# number (8 digits), so the receiver can check order and completeness.
def main(total=1 << 20, size=65536):
    filler = b"." * size
    i = 0
    sent = 0
    while sent < total:
        head = b"%08d" % i
        n = min(size, total - sent)
        send((head + filler)[:n])
        sent += n
        i += 1
