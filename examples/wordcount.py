# wordcount.py: reads all its input (until end of input: EOF on the client's
# stdin), then sends the line, word and character counts.
#
#   bento submit examples/wordcount.py --name wordcount
#   bento run wordcount < examples/README.md
#
# The counts go out as one JSON message: {"lines": ..., "words": ..., "chars": ...}
# (each line is one input message, without its newline, so newlines are not
# counted as characters).

import json


def main():
    lines = words = chars = 0
    while (line := recv()) is not None:
        text = line.decode("utf-8", "replace")
        lines += 1
        words += len(text.split())
        chars += len(text)
    send(json.dumps({"lines": lines, "words": words, "chars": chars}))
