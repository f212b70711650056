# `total` bytes as fast as possible, for the benchmark: data messages of 256 KiB.
def main(total=1 << 30):
    chunk = b"x" * (256 << 10)
    left = total
    while left > 0:
        n = min(left, len(chunk))
        send(chunk if n == len(chunk) else chunk[:n])
        left -= n
