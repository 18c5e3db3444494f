"""Rebuilds of the daily usage table as jobs that never hit an HTTP time limit (Azure's front end ends a request
after 230 s; docs/finance.md, "Rebuilds").

``POST /api/manage/usage/rebuild`` stores a job (an entity in the rollup's internal hourly table, partition
``rebuild-jobs``) and runs it in the background in steps of whole UTC hours of the ledger: a whole day per step
while days are quick, halving down to one hour per step when a step takes longer than 30 s (an hour at 100
requests/s is 360,000 rows), writing a day's rows of the daily table after its last hour. Each step records its
progress with an If-Match update, so two runners never both advance a job: the one whose update fails stops. The
POST waits a few seconds: a short rebuild answers 200 with its reports as before; a long one answers 202 with a
status URL. An instance recycled mid-job leaves the job ``running`` with an old ``Updated``: the rollup timer
resumes it from its last step (steps are idempotent, so a repeated step changes nothing).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.finance.daily import DailyRollup, RollupReport

log = logging.getLogger(__name__)

JOB_PARTITION = "rebuild-jobs"
STALE_SECONDS = 600.0  # a running job not updated for this long lost its runner: the timer resumes it
MAX_FAILURES = 5
STEP_TARGET_SECONDS = 30.0  # a step that took longer halves the hours of the next (at least one hour)
RUNNING, DONE, FAILED = "running", "done", "failed"


def _step_text(day: date, hour: int) -> str:
    return f"{day.isoformat()}T{hour:02d}"


@dataclass
class RebuildJob:
    id: str
    first: date
    last: date
    status: str = RUNNING
    next: str | None = None  # the next step, "2026-11-01T05"; None when done
    days: list[dict[str, Any]] = field(default_factory=list)  # one report per finished day
    ledger_rows: int = 0
    failures: int = 0
    error: str | None = None
    created_by: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    etag: str | None = None

    @property
    def total_days(self) -> int:
        return (self.last - self.first).days + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "status": self.status,
            "next_step": self.next,
            "days_done": len(self.days),
            "days": self.total_days,
            "ledger_rows": self.ledger_rows,
            "failures": self.failures,
            "error": self.error,
            "created_by": self.created_by,
            "created": self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated": self.updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": self.days,
        }

    def entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": JOB_PARTITION,
            "RowKey": self.id,
            "From": self.first.isoformat(),
            "To": self.last.isoformat(),
            "Status": self.status,
            "Next": self.next or "",
            "Days": json.dumps(self.days),
            "LedgerRows": float(self.ledger_rows),
            "Failures": self.failures,
            "Error": self.error or "",
            "CreatedBy": self.created_by,
            "Created": self.created,
            "Updated": self.updated,
        }

    @classmethod
    def from_entity(cls, entity: Any) -> RebuildJob:
        return cls(
            id=str(entity["RowKey"]),
            first=date.fromisoformat(str(entity["From"])),
            last=date.fromisoformat(str(entity["To"])),
            status=str(entity.get("Status") or RUNNING),
            next=str(entity.get("Next") or "") or None,
            days=json.loads(entity.get("Days") or "[]"),
            ledger_rows=int(entity.get("LedgerRows") or 0),
            failures=int(entity.get("Failures") or 0),
            error=str(entity.get("Error") or "") or None,
            created_by=str(entity.get("CreatedBy") or ""),
            created=entity.get("Created") or datetime.now(UTC),
            updated=entity.get("Updated") or datetime.now(UTC),
            etag=entity.metadata.get("etag") if hasattr(entity, "metadata") else None,
        )


class RebuildJobs:
    def __init__(self, table: TableClient, rollup: DailyRollup) -> None:
        self._table, self._rollup = table, rollup

    async def create(self, first: date, last: date, created_by: str) -> RebuildJob:
        job = RebuildJob(uuid.uuid4().hex, first, last, next=_step_text(first, 0), created_by=created_by)
        await self._table.create_entity(job.entity())
        return job

    async def get(self, job_id: str) -> RebuildJob | None:
        try:
            return RebuildJob.from_entity(await self._table.get_entity(JOB_PARTITION, job_id))
        except ResourceNotFoundError:
            return None

    async def run(
        self, job_id: str, budget_seconds: float | None = None, hours_per_step: int = 24
    ) -> RebuildJob | None:
        """Advance the job step by step until it is done, another runner took it, or the budget is spent."""
        started = time.monotonic()
        job = await self.get(job_id)
        chunk = hours_per_step  # a whole day per step while days are quick, down to one hour when they are not
        while job is not None and job.status == RUNNING and job.next is not None:
            day, hour = date.fromisoformat(job.next[:10]), int(job.next[11:13])
            hours = frozenset(range(hour, min(24, hour + chunk)))
            last = max(hours)
            step_started = time.monotonic()
            try:
                report = await self._rollup.day(day, hours, unsharded=last == 23, write_daily=last == 23)
            except Exception as exc:  # storage trouble: count it, retry from the same step (now or on resume)
                job.failures += 1
                job.error = type(exc).__name__
                job.status = FAILED if job.failures >= MAX_FAILURES else RUNNING
                log.warning("usage rebuild %s: step %s failed (%s)", job.id, job.next, job.error)
                if not await self._save(job) or job.status == FAILED:
                    return job
                continue
            if time.monotonic() - step_started > STEP_TARGET_SECONDS:
                chunk = max(1, chunk // 2)
            self._advance(job, day, last, report)
            if not await self._save(job):
                return None  # another runner advanced it: it carries on
            if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                break
        return job

    async def resume_stale(self, now: datetime, budget_seconds: float) -> list[str]:
        """Resume jobs whose runner went away (the rollup timer calls this); returns their ids."""
        query = "PartitionKey eq @p and Status eq @s"
        stale = [
            RebuildJob.from_entity(e)
            async for e in self._table.query_entities(query, parameters={"p": JOB_PARTITION, "s": RUNNING})
        ]
        resumed = []
        for job in stale:
            if (now - job.updated).total_seconds() < STALE_SECONDS:
                continue
            if await self._save(job):  # claims it: a second timer's save of the same version fails
                resumed.append(job.id)
                await self.run(job.id, budget_seconds)
        return resumed

    @staticmethod
    def _advance(job: RebuildJob, day: date, hour: int, report: RollupReport) -> None:
        job.ledger_rows += report.ledger_rows
        job.error = None
        if hour < 23:
            job.next = _step_text(day, hour + 1)
            return
        day_report = report.to_json()  # the day's daily rows (its ledger rows are counted in the job's total)
        job.days.append({k: v for k, v in day_report.items() if k not in ("ledger_rows", "hours")})
        following = day + timedelta(days=1)
        job.next = _step_text(following, 0) if following <= job.last else None
        job.status = RUNNING if job.next else DONE

    async def _save(self, job: RebuildJob) -> bool:
        job.updated = datetime.now(UTC)
        try:
            metadata = await self._table.update_entity(
                job.entity(), mode=UpdateMode.REPLACE, etag=job.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        job.etag = metadata.get("etag")
        return True
