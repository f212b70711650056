# echo.py: each line you type is one input message; each send() is one output
# line. Type "stop" (or press Ctrl-D) to end.
#
#   bento submit examples/echo.py --name echo
#   bento run echo
#   printf 'one\ntwo\nstop\n' | bento run echo


def main():
    print("echoing; type stop to end")
    while True:
        line = recv()  # bytes, or None once the input has ended
        if line is None or line == b"stop":
            break
        send(line.decode("utf-8", "replace"))
    print("bye")
