"""Interactive echo: each line you type is one input message to the echo
function (examples/echo.py); what it sends back is printed as it comes.
Ctrl-D ends the input; the function then says bye and exits.

    pip install ./clients/python
    python examples/python/echo.py            # BENTO_URL, BENTO_API_KEY as for the CLI
"""

import sys
import threading
from pathlib import Path

from bento_client import Client

EXAMPLES = Path(__file__).resolve().parent.parent


def main() -> int:
    with Client() as client:
        client.submit_file(EXAMPLES / "echo.py", name="echo")
        with client.run("echo") as session:
            def type_lines() -> None:
                for line in sys.stdin:
                    session.send(line.rstrip("\n"))
                session.end_input()

            threading.Thread(target=type_lines, daemon=True).start()
            for message in session:  # data (send), stdout (print), stderr
                out = sys.stderr if message.stream == "stderr" else sys.stdout
                out.write(message.text + ("\n" if message.stream == "data" else ""))
                out.flush()
            end = session.wait()
            if not end.ok:
                print(f"function {end.message}", file=sys.stderr)
            return end.code


if __name__ == "__main__":
    sys.exit(main())
