"""Run every benchmark and print their tables (Markdown), with the command and the date.

    python3 dev.py bench            # or: .venv/bin/python -m benchmarks.run_all

Takes a few minutes. Nothing leaves the machine: every server runs on 127.0.0.1.
"""

from __future__ import annotations

from datetime import UTC, datetime

from benchmarks import delivery, memory, outbox_throughput, sandbox_throughput, sender_cost


def main() -> None:
    print(f"# pdconnect benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    sections = [
        ("1. Sender cost", lambda: sender_cost.run()),
        ("2. Delivery under latency", lambda: delivery.latency(10_000, 100, 100, 100)),
        ("3. Delivery under faults", lambda: delivery.faults(100, 10, 10)),
        ("4. Outbox throughput", lambda: outbox_throughput.run()),
        ("5. Memory", lambda: memory.run()),
        ("6. The sandbox", lambda: sandbox_throughput.run()),
    ]
    for title, run in sections:
        print(f"## {title}\n\n{run()}\n", flush=True)


if __name__ == "__main__":
    main()
