"""`payctl trace` in a terminal: a payment's timeline (chalicelib/observability/timeline.py) as a step
table or a stage tree, with its PSP attempts and webhooks."""
from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.tree import Tree


def render(console: Any, r: dict[str, Any], tree: bool = False) -> None:
    """A terminal view: a step table (or a stage tree), attempts and webhooks."""
    title = f"{r['payment_id']} ({r['status']})  correlation {r['correlation_id']}  trace {r['trace_id'] or '-'}"
    if tree:
        root = Tree(title)
        for st in r["stages"]:
            node = root.add(f"[bold]{st['stage']}[/]  queued {st['queued_ms']:.1f} ms · in stage "
                            f"{st['in_stage_ms']:.1f} ms")
            for row in (x for x in r["steps"] if x["stage"] == st["stage"]):
                cause = f" ← {row['caused_by']}" if row["caused_by"] else ""
                node.add(f"{row['at'][11:23]} {row['action']}: {row['from']} → {row['to']}{cause}")
        console.print(root)
    else:
        table = Table("#", "at", "stage", "action", "from → to", "caused by", "queued ms", "in stage ms", title=title)
        for row in r["steps"]:
            table.add_row(str(row["seq"]), row["at"][11:26], row["stage"], row["action"],
                          f"{row['from']} → {row['to']}", row["caused_by"] or "", f"{row['queued_ms']:.1f}",
                          f"{row['in_stage_ms']:.1f}")
        console.print(table)
    for a in r["attempts"]:
        console.print(f"attempt {a['number']} @ {a['psp']}: {a['status']} (key {a['idempotency_key']}"
                      f"{', ' + a['code'] if a['code'] else ''})")
    for w in r["webhooks"]:
        console.print(f"webhook {w['webhook_id'] or ''} {w['event']}: "
                      + (f"delivered, HTTP {w['status_code']}" if w["delivered"] else f"not sent ({w['why']})"))
    console.print(f"accepted → {r['status']}: {r['total_ms']:.1f} ms")
