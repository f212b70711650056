# For each input message: echoes it, then sends `filler` bytes that name
# it. Input and output are interleaved, so input is resent and output
# resumed across every cut of the connection.
def main(filler=4300):
    pad = b"#" * filler
    while True:
        m = recv()
        if m is None:
            break
        send(m)
        send((b"fill:" + m + b":" + pad)[:filler])
