"""Timer-triggered functions: housekeeping that must happen even when no request arrives.

``quota_housekeeping`` deletes quota counters of ended windows and reconciles counters with the ledger.
``roll_up_daily_usage`` keeps finance's daily usage table current (docs/finance.md): every 5 minutes it
re-derives today's current hour from the ledger (the previous one too early in an hour) and today's rows, and
twice after midnight (00:10 and 06:00 UTC) all of yesterday, and every hour a writer or a replay marked as having
received rows late (any day), so late rows are counted without a manual rebuild; then it emits the month's budget
alerts (once per threshold across instances) and resumes rebuild jobs an instance left. Re-deriving is idempotent,
so overlapping runs are harmless.

``settle_batches`` reads every batch not yet settled from the backend that holds it, records its output files as
its owner's, and settles those that ended from their output file's usage, at the batch rate (docs/quotas.md).

``replay_usage_journal`` writes usage rows that a stopped or crashed instance left in the shared ledger
journal (docs/durability.md). Any instance may run it: replays are idempotent (rows are keyed by request
id). The local dev host runs timer functions too, on their NCRONTAB schedule (``shared.local.devhost``).

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' annotations.
"""

import logging
from datetime import UTC, datetime, timedelta

import azure.functions as func

from shared.finance.usage_report import ledger_rows
from shared.runtime import Runtime

log = logging.getLogger(__name__)

# Every 5 minutes, on the minute. An orphaned journal file is one whose process on the same machine is gone,
# or one untouched for 2 minutes (another instance's), so a crashed instance's rows are in the ledger within
# about 7 minutes even if no instance restarts; a restarted instance replays at once.
REPLAY_SCHEDULE = "0 */5 * * * *"
# Every 10 minutes: delete quota counters of ended windows (rows must not grow without end), and correct counters
# that counted a dead instance's lease as spent, from the ledger (shared/quotas/reconcile.py).
QUOTA_SCHEDULE = "0 3-59/10 * * * *"
ROLLUP_SCHEDULE = "30 */5 * * * *"  # half a minute after the replay, so replayed rows are counted in this run
# Every 5 minutes: read each unsettled batch from its backend; settle those that ended (shared/stateful/batches.py).
# A batch is settled once whichever instance or request sees it end first (its record is claimed with its ETag).
BATCH_SCHEDULE = "45 */5 * * * *"
# Every minute: poll unsettled background responses on their backends and settle the finished ones (a retrieve through
# the gateway settles one sooner); the ledger row is written once whoever sees it first (shared/stateful).
BACKGROUND_SCHEDULE = "15 * * * * *"
# Hourly: delete ownership records of stored objects Azure no longer keeps (a filtered scan of gatewayObjects).
OBJECTS_SCHEDULE = "0 40 * * * *"


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.timer_trigger(arg_name="timer", schedule=REPLAY_SCHEDULE, run_on_startup=False, use_monitor=False)
    async def replay_usage_journal(timer: func.TimerRequest) -> None:
        report = await runtime.recover_usage()
        log.info("ledger journal replay: %s", report.to_json())

    @bp.timer_trigger(arg_name="timer", schedule=QUOTA_SCHEDULE, run_on_startup=False, use_monitor=False)
    async def quota_housekeeping(timer: func.TimerRequest) -> None:
        services = await runtime.services()
        deleted = await services.quotas.delete_expired_counters()

        async def ledger_tokens(caller_id: str, deployment: str | None, start: datetime, end: datetime) -> int:
            last_day = (end - timedelta(microseconds=1)).date()
            rows = await ledger_rows(services.usage_table, start.date(), last_day, caller_id=caller_id)
            return sum(
                row["PromptTokens"] + row["CompletionTokens"]
                for row in rows
                if deployment is None or row["Deployment"] == deployment
            )

        corrected = await services.quotas.reconcile(ledger_tokens)
        log.info("quota housekeeping: %d expired counters deleted, %d corrected from the ledger", deleted, corrected)

    @bp.timer_trigger(arg_name="timer", schedule=BATCH_SCHEDULE, run_on_startup=False, use_monitor=False)
    async def settle_batches(timer: func.TimerRequest) -> None:
        services = await runtime.services()
        settled = await services.files_batches.settle_on_timer()
        log.info("batch settlement: %d batches settled", settled)

    @bp.timer_trigger(arg_name="timer", schedule=ROLLUP_SCHEDULE, run_on_startup=False, use_monitor=False)
    async def roll_up_daily_usage(timer: func.TimerRequest) -> None:
        for report in await runtime.roll_up_usage_on_timer(datetime.now(UTC)):
            log.info("daily usage rollup: %s", report.to_json())

    @bp.timer_trigger(arg_name="timer", schedule=BACKGROUND_SCHEDULE, run_on_startup=False, use_monitor=False)
    async def settle_background_responses(timer: func.TimerRequest) -> None:
        report = await runtime.settle_background_responses()
        if report["checked"]:
            log.info("background responses: %s", report)

    @bp.timer_trigger(arg_name="timer", schedule=OBJECTS_SCHEDULE, run_on_startup=False, use_monitor=False)
    async def stored_objects_housekeeping(timer: func.TimerRequest) -> None:
        deleted = await (await runtime.services()).objects.delete_expired()
        log.info("stored objects housekeeping: %d expired ownership records deleted", deleted)

    return bp
