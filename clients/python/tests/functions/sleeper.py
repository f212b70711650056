# Waits for input, forever: for kill, close and takeover tests.
def main():
    while recv() is not None:
        pass
