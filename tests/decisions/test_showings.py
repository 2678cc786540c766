"""The in-memory log of showings answers what the decision records answer, as decisions go on."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from service.clock import SimulatedClock, use_clock
from service.decisions import decide, showings, users
from service.decisions.candidates import graph_of
from service.decisions.holdback import history_of
from service.decisions.subjects import require_user
from tests.decisions.test_pacing import PACED

START = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def order(found):
    return sorted(found, key=lambda shown: (shown.at, shown.decision, shown.step))


def test_the_log_and_the_records_agree_on_what_was_shown_and_when(runtime, tmp_path):
    path = tmp_path / "paced.ttl"
    path.write_text(PACED)
    runtime.load([path])
    draw = random.Random(7)
    with use_clock(SimulatedClock(START)) as clock:
        users.register(runtime, users.Registration(id="u", role="analyst", industry="retail", plan="team"))
        pseudonym = users.profile(runtime, "u").pseudonym
        user = require_user(runtime, "u")
        pacings = [v.pacing for v in runtime.knowledge.policies.values() if v.pacing is not None]
        log = showings.log_of(runtime)
        assert log is not None
        for _ in range(40):
            channel = draw.choice(["WEB", "MOBILE", "EMAIL"])
            decide.next_steps(runtime, "u", channel=channel, limit=draw.randint(1, 4), policy_id="default")
            clock.advance(hours=draw.choice([1, 5, 13, 30]))
            for pacing in pacings:
                for channel_iri in runtime.knowledge.codes.channels.values():
                    kwargs = dict(
                        pseudonym=pseudonym,
                        pacing=pacing,
                        channel=channel_iri,
                        at=clock(),
                        time_zone_name=None,
                        registered_at=START,
                    )
                    from_log = history_of(runtime, user, graph_of(user), shown_log=log, **kwargs)
                    from_records = history_of(runtime, user, graph_of(user), **kwargs)

                    assert order(from_log.shown) == order(from_records.shown)
                    assert [x.at for x in from_log.shown] == sorted(x.at for x in from_log.shown)
                    assert from_log.session_steps == from_records.session_steps
        assert clock() - START > timedelta(days=7)  # past the longest look-back, so old showings fell out of both
