"""Glue crawls that finish: moto's crawl stays RUNNING for ever.

moto's Glue crawler records a crawl and creates nothing; its crawl never leaves RUNNING, so every
later ``StartCrawler`` (each batch run ends with one) fails with ``CrawlerRunningException``. A crawl
on AWS finishes in minutes; locally it finishes at once (it has nothing to do), so the next batch
run starts a new one, as on AWS after the crawl is over.
"""

from __future__ import annotations

from typing import Any

GAP = "Glue: a crawl finishes at once (moto's stays RUNNING, so the next StartCrawler failed)"


def install() -> tuple[str, ...]:
    from moto.glue.models import GlueBackend  # noqa: PLC0415 - the emulator is only loaded by the local stage

    original = GlueBackend.start_crawler
    if getattr(original, "_local_stage", False):
        return (GAP,)

    def start_crawler(self: Any, name: str) -> None:
        original(self, name)
        self.get_crawler(name).crawls[-1].status = "COMPLETED"

    start_crawler._local_stage = True  # type: ignore[attr-defined]
    GlueBackend.start_crawler = start_crawler  # type: ignore[method-assign]
    return (GAP,)
