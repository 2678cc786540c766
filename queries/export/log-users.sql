-- The users a training export holds, read from the analytics log: every subject (pseudonym) whose current
-- consent record for the purpose (the parameter: its local ID, e.g. Analytics) gives consent, with the
-- covariates of their profile (local IDs) and that record.
-- The current record is the one consent-current.rq picks: the latest by the service's record time; at the
-- same time a withdrawal before a grant; then the greatest record IRI.
WITH ranked AS (
  SELECT subject, record, granted,
         ROW_NUMBER() OVER (PARTITION BY subject ORDER BY recorded_s DESC, granted ASC, record DESC) AS place
  FROM consents
  WHERE purpose = ?
)
SELECT s.subject, s.role, s.industry, s.plan, r.record
FROM ranked r
JOIN subjects s ON s.subject = r.subject
WHERE r.place = 1 AND r.granted
ORDER BY s.subject
