-- kpi: time_to_first_value
-- measures: Hours from signup to the user's first use of a value-moment feature, counting uses recorded less than 30 days after signup.
-- unit: hours
-- higher_is_better: false
-- window_days: 30
--
-- One row per exposed user (exposed at or before analysis_clock.now_s). value is
-- (first recorded_s - registered_s) / 3600 over the FEATURE_USED events of a feature in
-- value_features with recorded_s in [registered_s, registered_s + 30 days) and at or
-- before now_s, whether before or after the exposure: the measure is of the user's
-- journey from signup, and randomisation balances earlier uses across arms. value is
-- NULL (the user does not count) while there is no such use, and for a user with no
-- subjects row (erased). Users who never reach value within 30 days are therefore left
-- out, not counted as slow: read it beside a share KPI. window_closed:
-- now_s >= registered_s + 30 days (false when the registration is unknown).
SELECT
    x.experiment,
    x.arm,
    x.subject,
    CAST((MIN(u.recorded_s) - s.registered_s) / 3600.0 AS DOUBLE) AS value,
    COALESCE(c.now_s >= s.registered_s + 30 * 86400, FALSE) AS window_closed
FROM exposures x
CROSS JOIN analysis_clock c
LEFT JOIN subjects s
    ON s.subject = x.subject
LEFT JOIN (
    SELECT e.subject, e.recorded_s
    FROM events e
    JOIN value_features v
        ON v.feature = e.feature
    WHERE e.type = 'FEATURE_USED'
) u
    ON u.subject = x.subject
    AND u.recorded_s >= s.registered_s
    AND u.recorded_s < s.registered_s + 30 * 86400
    AND u.recorded_s <= c.now_s
WHERE x.exposed_s <= c.now_s
GROUP BY x.experiment, x.arm, x.subject, s.registered_s, c.now_s
