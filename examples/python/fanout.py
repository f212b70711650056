"""A fan-out with asyncio: 20 sessions at once, each fed its own input,
read concurrently, their results gathered.

    python examples/python/fanout.py
"""

import asyncio
import sys
from pathlib import Path
from typing import List

from bento_client import AsyncClient

EXAMPLES = Path(__file__).resolve().parent.parent


async def count_words(client: AsyncClient, text: str) -> str:
    async with await client.run("wordcount") as session:
        for line in text.splitlines():
            await session.send(line)
        await session.end_input()
        words = [m.text async for m in session if m.stream == "data"]
        end = await session.wait()
        return f"{end.message}: {' '.join(words)}"


async def main() -> int:
    async with AsyncClient() as client:
        await client.submit_file(EXAMPLES / "wordcount.py", name="wordcount")
        texts = [f"session {i}\n" + " ".join(["word"] * (i + 1)) for i in range(20)]
        results: List[str] = await asyncio.gather(*(count_words(client, t) for t in texts))
        for i, r in enumerate(results):
            print(i, r)
        return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
