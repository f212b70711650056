# Sends n numbers, one data message each, `delay` seconds apart.
import time


def main(n=10, delay=0.0):
    for i in range(n):
        send(str(i))
        if delay:
            time.sleep(delay)
    print(f"counted to {n}")
