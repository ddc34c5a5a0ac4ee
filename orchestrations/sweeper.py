"""The sweeper timer: stale deadlines, lost-job recovery and site settings refresh, every 5 minutes."""

from __future__ import annotations

import azure.functions as func

from shared.bootstrap import get_services
from shared.services.sweeper import sweep

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated


@bp.function_name("sweeper")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False, use_monitor=True)
def sweeper(timer: func.TimerRequest) -> None:
    sweep(get_services())
