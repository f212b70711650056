"""A long job you leave and come back to: start it, read a little, detach
(the function keeps counting), then attach again later, from this or
another process, and read the rest: nothing lost, nothing twice.

    python examples/python/detach.py start        # prints the token
    python examples/python/detach.py resume TOKEN # the rest, to the end
    python examples/python/detach.py              # both, one after the other
"""

import sys
from pathlib import Path

from bento_client import Client

EXAMPLES = Path(__file__).resolve().parent.parent


def start(n: int = 200, delay: float = 0.01) -> str:
    with Client() as client:
        client.submit_file(EXAMPLES / "counter.py", name="counter")
        with client.run("counter", n, delay) as session:
            for message in session:
                print("got", message.text.strip())
                if message.text == "4":
                    break
            # Leaving the block detaches: the function keeps counting, and
            # the controller keeps what was not read yet.
            return session.token


def resume(token: str) -> int:
    with Client() as client:
        with client.attach(token) as session:
            for message in session:
                print("got", message.text.strip())
            end = session.wait()
            print(end.message)
            return end.code


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"]:
        print(start())
    elif sys.argv[1:2] == ["resume"] and len(sys.argv) == 3:
        sys.exit(resume(sys.argv[2]))
    else:
        token = start()
        print(f"detached from {token[:12]}…; attaching again")
        sys.exit(resume(token))
