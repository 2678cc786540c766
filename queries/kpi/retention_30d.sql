-- kpi: retention_30d
-- measures: Share of exposed users with a SESSION_STARTED event recorded from 30 days after signup to less than 60 days after it.
-- unit: share
-- higher_is_better: true
-- window_days: 60
--
-- One row per exposed user (exposed at or before analysis_clock.now_s). value is 1.0
-- when a SESSION_STARTED event has recorded_s in [registered_s + 30 days,
-- registered_s + 60 days) and at or before now_s, else 0.0; NULL (the user does not
-- count) when there is no subjects row (erased). The window runs from signup, not from
-- exposure. window_closed: now_s >= registered_s + 60 days (false when the
-- registration is unknown).
SELECT
    x.experiment,
    x.arm,
    x.subject,
    CAST(CASE WHEN s.subject IS NULL THEN NULL WHEN COUNT(e.event) > 0 THEN 1 ELSE 0 END AS DOUBLE) AS value,
    COALESCE(c.now_s >= s.registered_s + 60 * 86400, FALSE) AS window_closed
FROM exposures x
CROSS JOIN analysis_clock c
LEFT JOIN subjects s
    ON s.subject = x.subject
LEFT JOIN events e
    ON e.subject = x.subject
    AND e.type = 'SESSION_STARTED'
    AND e.recorded_s >= s.registered_s + 30 * 86400
    AND e.recorded_s < s.registered_s + 60 * 86400
    AND e.recorded_s <= c.now_s
WHERE x.exposed_s <= c.now_s
GROUP BY x.experiment, x.arm, x.subject, s.subject, s.registered_s, c.now_s
