-- Every step completion in the analytics log, for the rewards of offline evaluation
-- (service/governance/evaluation.py): who (pseudonym), which step (its ID) and when the
-- service recorded it (epoch seconds; the record time, never the client's).
SELECT subject, step, recorded_s
FROM events
WHERE type = 'STEP_COMPLETED' AND step IS NOT NULL
