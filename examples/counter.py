# counter.py: counts slowly, so there is time to detach and reattach.
#
#   bento submit examples/counter.py --name counter
#   bento run counter 100          # Ctrl-C detaches; the count goes on
#   bento attach TOKEN --no-stdin  # TOKEN as printed on Ctrl-C: picks up
#                                  # where you left off, nothing lost
#
# Or start it in the background straight away:
#
#   TOKEN=$(bento run -d counter 100 0.1)
#   bento attach "$TOKEN" --no-stdin

import time


def main(n=10, delay=0.5):
    for i in range(n):
        send(f"{i}")
        time.sleep(delay)
    print(f"counted to {n}")
