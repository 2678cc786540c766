-- kpi: conversion
-- measures: Share of exposed users with a CONVERTED event recorded at or after their first exposure and less than 30 days after it.
-- unit: share
-- higher_is_better: true
-- window_days: 30
--
-- One row per exposed user (exposed at or before analysis_clock.now_s). value is 1.0
-- when a CONVERTED event has recorded_s in [exposed_s, exposed_s + 30 days) and at or
-- before now_s, else 0.0; a conversion before the exposure does not count. An erased
-- user's events are gone, so they count 0. window_closed: now_s >= exposed_s + 30 days.
SELECT
    x.experiment,
    x.arm,
    x.subject,
    CAST(CASE WHEN COUNT(e.event) > 0 THEN 1 ELSE 0 END AS DOUBLE) AS value,
    c.now_s >= x.exposed_s + 30 * 86400 AS window_closed
FROM exposures x
CROSS JOIN analysis_clock c
LEFT JOIN events e
    ON e.subject = x.subject
    AND e.type = 'CONVERTED'
    AND e.recorded_s >= x.exposed_s
    AND e.recorded_s < x.exposed_s + 30 * 86400
    AND e.recorded_s <= c.now_s
WHERE x.exposed_s <= c.now_s
GROUP BY x.experiment, x.arm, x.subject, x.exposed_s, c.now_s
